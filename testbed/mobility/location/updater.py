"""The mobile node's location updater: one signed RFC 2136 UPDATE per move (§4 of the spec).

Each update replaces the name's A and AAAA RRsets in a single message (delete RRset, then add
the new records; an empty set just deletes), signed with SIG(0) (default) or TSIG hmac-sha256.
It is sent over UDP with TCP fallback on TC, retried with exponential backoff when no answer
comes, and reported as an ``UpdateResult``. The transport uses dnspython's asyncio helpers with
pre-built wire bytes, because a SIG(0)-signed message only exists as bytes (see ``sig0``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.tsig
import dns.update

from testbed.errors import ConfigError
from testbed.mobility.location import sig0
from testbed.mobility.location.sig0 import Sig0Key, Validity


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt n waits ``min(timeout * backoff**(n-1), max_timeout)`` s for an answer."""

    attempts: int = 4
    timeout: float = 0.5
    backoff: float = 2.0
    max_timeout: float = 4.0

    def wait(self, attempt: int) -> float:
        return min(self.timeout * self.backoff ** (attempt - 1), self.max_timeout)


@dataclass(frozen=True)
class AddressSet:
    """Addresses a name should resolve to; empty tuples mean "no records of that type"."""

    a: tuple[str, ...] = ()
    aaaa: tuple[str, ...] = ()

    @classmethod
    def of(cls, a: Iterable[str] = (), aaaa: Iterable[str] = ()) -> AddressSet:
        return cls(tuple(_checked(x, 4) for x in a), tuple(_checked(x, 6) for x in aaaa))


@dataclass
class UpdateResult:
    """Outcome of one update: the server's rcode (None when it never answered)."""

    rcode: str | None
    attempts: int
    rtt: float | None  # seconds, send → answer of the attempt that got one
    error: str | None = None
    transport: str | None = None  # "udp" or "tcp"
    addresses: AddressSet = field(default_factory=AddressSet)

    @property
    def ok(self) -> bool:
        return self.rcode == "NOERROR"

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class LocationUpdater:
    """Keeps ``name`` in ``zone`` pointing at the MN's current addresses via ``server``."""

    def __init__(
        self,
        server: str,
        zone: str,
        name: str,
        *,
        key: Sig0Key | None = None,
        tsig: dns.tsig.Key | None = None,
        port: int = 53,
        ttl: int = 30,  # short: §4's stale-record concern
        validity: Validity | None = None,
        retry: RetryPolicy | None = None,
        cooperating: AddressSet | None = None,
        clock: Callable[[], float] = time.time,
        on_attempt: Callable[[int], None] | None = None,
        alternates: tuple[str, ...] = (),
    ) -> None:
        """``alternates``: the server's other addresses, used in order when the MN has no
        route to the one before (an IPv6-only access network and an IPv4 server address)."""
        if key is None and tsig is None:
            raise ConfigError("LocationUpdater", "key", "no key given", "pass a SIG(0) key or tsig")
        for addr in (server, *alternates):
            try:
                dns.inet.af_for_address(addr)
            except ValueError as e:
                raise ConfigError("LocationUpdater", "server", f"{addr!r} is not an IP address") from e
        self.server, self.port = server, port
        self.alternates = alternates
        self.zone = dns.name.from_text(zone)
        self.name = dns.name.from_text(name)
        if not self.name.is_subdomain(self.zone):
            raise ConfigError("LocationUpdater", "name", f"{self.name} is not in zone {self.zone}")
        self.key, self.tsig, self.ttl = key, tsig, ttl
        self.validity = validity or Validity()
        self.retry = retry or RetryPolicy()
        self.cooperating = cooperating
        self.clock = clock
        self.on_attempt = on_attempt

    # --- message building (no I/O) -------------------------------------------------------

    def message(self, addresses: AddressSet, name: dns.name.Name | None = None) -> dns.update.UpdateMessage:
        """The UPDATE replacing ``name``'s A and AAAA RRsets with ``addresses``."""
        owner = name or self.name
        msg = dns.update.UpdateMessage(self.zone)
        for rdtype, values in (("A", addresses.a), ("AAAA", addresses.aaaa)):
            msg.delete(owner, rdtype)
            for v in values:
                msg.add(owner, self.ttl, rdtype, v)
        if self.tsig is not None:
            msg.use_tsig(self.tsig)
        return msg

    def sign(self, msg: dns.update.UpdateMessage, now: float) -> bytes:
        """Wire bytes ready to send: TSIG (if configured) or SIG(0) applied."""
        if self.tsig is not None:
            return msg.to_wire()
        assert self.key is not None
        return sig0.sign(msg, self.key, now, self.validity)

    # --- I/O ----------------------------------------------------------------------------

    async def update(self, a: Iterable[str] = (), aaaa: Iterable[str] = ()) -> UpdateResult:
        """Replace the A/AAAA records with ``a``/``aaaa`` (empty: delete them)."""
        return await self.send(AddressSet.of(a, aaaa))

    async def withdraw(self) -> UpdateResult:
        """Announced departure: point the name at the cooperating host, or delete the records."""
        return await self.send(self.cooperating or AddressSet())

    async def send(self, addresses: AddressSet, name: dns.name.Name | None = None) -> UpdateResult:
        """Build, sign and send; re-sign on each retry so every attempt has a fresh window."""
        error: str | None = None
        for attempt in range(1, self.retry.attempts + 1):
            if self.on_attempt:
                self.on_attempt(attempt)
            msg = self.message(addresses, name)
            wire = self.sign(msg, self.clock())
            wait = self.retry.wait(attempt)
            started = time.monotonic()
            try:
                response, transport = await self._exchange_any(wire, wait, msg.mac if self.tsig else b"")
            except (dns.exception.Timeout, TimeoutError, OSError, EOFError) as e:
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                left = wait - (time.monotonic() - started)  # e.g. ICMP refused came at once
                if attempt < self.retry.attempts and left > 0:
                    await asyncio.sleep(left)
                continue
            except dns.exception.DNSException as e:  # malformed answer, bad TSIG: no retry
                return UpdateResult(None, attempt, None, f"{type(e).__name__}: {e}", None, addresses)
            rtt = time.monotonic() - started
            return UpdateResult(dns.rcode.to_text(response.rcode()), attempt, rtt, None, transport, addresses)
        return UpdateResult(None, self.retry.attempts, None, error or "no answer", None, addresses)

    async def _exchange_any(self, wire: bytes, timeout: float, mac: bytes) -> tuple[dns.message.Message, str]:
        """``exchange`` with the server, else with the first alternate the MN has a route to."""
        servers = (self.server, *self.alternates)
        for k, server in enumerate(servers):
            try:
                if k == 0:
                    return await self.exchange(wire, timeout, mac)
                return await self.exchange(wire, timeout, mac, server=server)
            except OSError as e:
                if e.errno not in _NO_ROUTE or k == len(servers) - 1:
                    raise
        raise AssertionError("unreachable")

    async def exchange(
        self, wire: bytes, timeout: float, mac: bytes = b"", *, server: str | None = None
    ) -> tuple[dns.message.Message, str]:
        """One request/answer of pre-signed ``wire``: UDP, then TCP if the answer is truncated.

        Public so a test can replay captured bytes exactly (the replay-window check).
        """
        server = server or self.server
        keyring = {self.tsig.name: self.tsig} if self.tsig is not None else None
        msg_id = int.from_bytes(wire[:2], "big")
        expiration = time.time() + timeout
        backend = dns.asyncbackend.get_default_backend()
        af = dns.inet.af_for_address(server)
        dest = dns.inet.low_level_address_tuple((server, self.port), af)
        try:
            async with await backend.make_socket(af, socket.SOCK_DGRAM) as s:
                await dns.asyncquery.send_udp(s, wire, dest, expiration)
                while True:
                    r, _, _ = await dns.asyncquery.receive_udp(
                        s,
                        dest,
                        expiration,
                        ignore_unexpected=True,
                        keyring=keyring,
                        request_mac=mac,
                        raise_on_truncation=True,
                    )
                    if _answers(msg_id, r):
                        return r, "udp"
        except dns.message.Truncated:
            pass
        left = max(expiration - time.time(), 0.0)
        async with await backend.make_socket(
            af, socket.SOCK_STREAM, 0, None, (server, self.port), left
        ) as s:
            await dns.asyncquery.send_tcp(s, wire, expiration)
            r, _ = await dns.asyncquery.receive_tcp(s, expiration, keyring=keyring, request_mac=mac)
            if not _answers(msg_id, r):
                raise dns.exception.FormError(f"TCP answer id {r.id} does not match {msg_id}")
            return r, "tcp"

    def update_sync(self, a: Iterable[str] = (), aaaa: Iterable[str] = ()) -> UpdateResult:
        """Blocking form for scripts and tests that run outside an event loop."""
        return asyncio.run(self.update(a, aaaa))


# sendto() fails at once with these when the MN has no route (or no source) of that family
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL})


def _answers(msg_id: int, r: dns.message.Message) -> bool:
    return r.id == msg_id and r.opcode() == dns.opcode.UPDATE and bool(r.flags & dns.flags.QR)


def _checked(addr: str, version: int) -> str:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError as e:
        raise ConfigError("location update", "address", f"{addr!r} is not an IP address") from e
    if ip.version != version:
        raise ConfigError("location update", "address", f"{addr} is not IPv{version}")
    return ip.compressed
