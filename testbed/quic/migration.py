"""Client-side active migration (RFC 9000 §9.2) on an aioquic connection: the only module that
touches aioquic's private state. Checked against aioquic 1.7.2, which has no public migration
call; the names used here (``QuicNetworkPath``, ``_network_paths``, ``_add_network_path``,
``_peer_cid_available``, ``_handshake_confirmed``, ``_loss.get_probe_timeout``) are that
release's and may change in another.

aioquic keys a network path by the address it is given for the peer, and treats that address as
opaque. The lab's client gives it ``PathAddress(host, port, local)``: the server's address and
the client's own, the 4-tuple that RFC 9000 §1.2 calls a path. A new local address is then a new
path, and aioquic's own path machinery does the rest, as it does for a server's preferred address
(§9.6): the path is probed with a PATH_CHALLENGE (§8.2.1) on a connection ID of the peer's that
was never used (reserved for that path, §9.5); the PATH_RESPONSE validates it (§8.2.3); the
client then makes it the active path, switches to the reserved connection ID and retires the
previous one with RETIRE_CONNECTION_ID (§5.1.2). Non-probing frames go to the new path only
once it is validated, so a probe that fails leaves the connection on the old path.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from aioquic.quic.connection import QuicConnection, QuicNetworkPath


class PathAddress(NamedTuple):
    """A path as the lab's client names it to aioquic: ``host``/``port`` are the server's (so
    ``addr[0]`` is the peer's address, as aioquic expects), ``local`` the client's own address."""

    host: str
    port: int
    local: str


def handshake_confirmed(conn: QuicConnection) -> bool:
    """Migration needs a confirmed handshake (RFC 9000 §9: not before HANDSHAKE_DONE, §4.1.2 of
    RFC 9001); aioquic ignores a probe before it."""
    return bool(conn._handshake_confirmed)


def spare_peer_cids(conn: QuicConnection) -> int:
    """Connection IDs the peer issued (NEW_CONNECTION_ID) that were never used."""
    return len(conn._peer_cid_available)


def peer_cid(conn: QuicConnection) -> str:
    """The destination connection ID in use now, hex."""
    return conn._peer_cid.cid.hex()


def probe(conn: QuicConnection, addr: PathAddress) -> bool:
    """Start validating ``addr`` as a new path, on a peer connection ID reserved for it.
    False when the peer left no unused connection ID (§9.5: migrating would link the paths)
    or the handshake is not confirmed. aioquic migrates to the path once it is validated."""
    if not handshake_confirmed(conn) or not conn._peer_cid_available:
        return False
    path = QuicNetworkPath(addr)
    path.peer_cid = conn._peer_cid_available.pop(0)
    conn._add_network_path(path)
    return True


def probe_again(conn: QuicConnection, addr: PathAddress) -> bool:
    """Send another PATH_CHALLENGE on a path still being probed (aioquic sends one per probed
    path and repeats it only on the active path; §8.2.1 lets an endpoint send more). False
    when ``addr`` is not a path being probed."""
    path = _path(conn, addr)
    if path is None or path.is_validated or path is conn._network_paths[0]:
        return False
    path.local_challenge_sent = False
    return True


def forget(conn: QuicConnection, addr: PathAddress) -> bool:
    """Drop a path that is not the active one (its local address went away): nothing is sent
    on it any more. Its connection ID, if one was reserved for it and never used, is retired
    too (§5.1.2)."""
    path = _path(conn, addr)
    if path is None or path is conn._network_paths[0]:
        return False
    conn._network_paths.remove(path)
    if path.peer_cid is not None:
        conn._retire_peer_cid(path.peer_cid)
    return True


def probe_timeout(conn: QuicConnection) -> float:
    """The connection's current PTO (RFC 9002 §6.2.1), seconds."""
    return float(conn._loss.get_probe_timeout())


def paths(conn: QuicConnection) -> list[dict[str, Any]]:
    """Every path the connection knows, the active one first."""
    return [{"addr": list(p.addr), "validated": p.is_validated} for p in conn._network_paths]


def _path(conn: QuicConnection, addr: PathAddress) -> QuicNetworkPath | None:
    return next((p for p in conn._network_paths if p.addr == addr), None)
