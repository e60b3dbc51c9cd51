"""Multipath TCP options (RFC 8684 §3) as frozen dataclasses, and the keyed values they carry.

An MPTCP option is TCP option kind 30 whose first four bits after the length name its subtype.
The handover signals are decoded in full — MP_CAPABLE (the keys, sent in the clear), MP_JOIN
(token, nonces, truncated and full HMACs), DSS (data ACK and data sequence mapping), ADD_ADDR
(address, port, HMAC, echo flag), REMOVE_ADDR, MP_PRIO — and the rest by subtype name.

The keyed values are computed as Linux computes them (net/mptcp/crypto.c, options.c,
subflow.c), so a checker can verify what the wire shows from the keys MP_CAPABLE exchanged:

* token = the most significant 32 bits of SHA-256(key), the IDSN its least significant 64;
* MP_JOIN SYN/ACK: the leftmost 64 bits of HMAC-SHA256(key B ‖ key A, nonce B ‖ nonce A);
  third ACK: the leftmost 160 bits of HMAC-SHA256(key A ‖ key B, nonce A ‖ nonce B);
* ADD_ADDR: the rightmost 64 bits of HMAC-SHA256(sender's key ‖ receiver's key,
  address id ‖ address ‖ port), the port two zero bytes when the option carries none.

Keys travel in the clear in MP_CAPABLE, so these HMACs stop an off-path attacker only: anyone
who saw the handshake can compute them.

``decode_mptcp`` never raises: a bad option comes back as ``MalformedOption`` with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass

from testbed.decode.fault import DecodeFault
from testbed.decode.link import ntop

TCPOPT_MPTCP = 30
MP_CAPABLE, MP_JOIN, DSS, ADD_ADDR, REMOVE_ADDR, MP_PRIO = 0, 1, 2, 3, 4, 5
MP_FAIL, MP_FASTCLOSE, MP_TCPRST = 6, 7, 8
SUBTYPE_NAMES = {
    MP_CAPABLE: "MP_CAPABLE", MP_JOIN: "MP_JOIN", DSS: "DSS", ADD_ADDR: "ADD_ADDR",
    REMOVE_ADDR: "REMOVE_ADDR", MP_PRIO: "MP_PRIO", MP_FAIL: "MP_FAIL", MP_FASTCLOSE: "MP_FASTCLOSE",
    MP_TCPRST: "MP_TCPRST",
}  # fmt: skip
# DSS flags (RFC 8684 §3.3)
DSS_DATA_FIN, DSS_DSN64, DSS_MAP, DSS_ACK64, DSS_ACK = 0x10, 0x08, 0x04, 0x02, 0x01
# ADD_ADDR lengths without and with the port, for IPv4 and IPv6: echo (no HMAC), then with HMAC
_ADD_ADDR_LEN = {8: (4, False, False), 10: (4, True, False), 16: (4, False, True), 18: (4, True, True),
                 20: (16, False, False), 22: (16, True, False), 28: (16, False, True),
                 30: (16, True, True)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MpCapable:
    """MP_CAPABLE. Version 1: the SYN carries no key, the SYN/ACK the server's, the third ACK
    both (sender's first), and a first data packet both plus the data-level length."""

    version: int
    flags: int  # A (checksum) 0x80, B 0x40, C 0x20, H (HMAC-SHA256) 0x01
    sender_key: int | None
    receiver_key: int | None
    data_len: int | None = None


@dataclass(frozen=True, slots=True)
class MpJoin:
    """MP_JOIN, one per handshake step (``step``: "syn", "synack" or "ack")."""

    step: str
    backup: bool = False
    addr_id: int = 0
    token: int | None = None  # SYN: the receiver's token
    nonce: int | None = None  # SYN, SYN/ACK: the sender's random number
    hmac: bytes = b""  # SYN/ACK: 8 bytes (truncated); third ACK: 20 bytes


@dataclass(frozen=True, slots=True)
class Dss:
    """Data Sequence Signal: a data ACK, a mapping (DSN, subflow sequence, length), DATA_FIN."""

    flags: int
    data_ack: int | None
    dsn: int | None
    ssn: int | None
    data_len: int | None
    dsn64: bool = True
    ack64: bool = True

    @property
    def data_fin(self) -> bool:
        return bool(self.flags & DSS_DATA_FIN)


@dataclass(frozen=True, slots=True)
class AddAddr:
    """ADD_ADDR; an echo (``echo``) repeats the announcement without its HMAC."""

    echo: bool
    addr_id: int
    address: str
    port: int | None
    hmac: bytes  # 8 bytes; empty on an echo


@dataclass(frozen=True, slots=True)
class RemoveAddr:
    addr_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MpPrio:
    backup: bool
    addr_id: int | None = None  # RFC 6824 carried one; RFC 8684 (and Linux) send none


@dataclass(frozen=True, slots=True)
class MpOther:
    """MP_FAIL, MP_FASTCLOSE, MP_TCPRST or an unknown subtype: value kept raw."""

    subtype: int
    value: bytes


@dataclass(frozen=True, slots=True)
class MalformedOption:
    subtype: int
    reason: str


MptcpOption = MpCapable | MpJoin | Dss | AddAddr | RemoveAddr | MpPrio | MpOther | MalformedOption


def _u64(buf: bytes, off: int) -> int:
    return struct.unpack_from("!Q", buf, off)[0]


def _capable(buf: bytes, off: int, length: int, data_len_ok: bool) -> MpCapable:
    version, flags = buf[off + 2] & 0x0F, buf[off + 3]
    if length == 4:
        return MpCapable(version, flags, None, None)
    if length == 12:
        return MpCapable(version, flags, _u64(buf, off + 4), None)
    if length in (20, 22, 24) and (length == 20 or data_len_ok):
        data_len = struct.unpack_from("!H", buf, off + 20)[0] if length > 20 else None
        return MpCapable(version, flags, _u64(buf, off + 4), _u64(buf, off + 12), data_len)
    raise DecodeFault(f"MP_CAPABLE of length {length}")


def _join(buf: bytes, off: int, length: int, syn: bool, ack: bool) -> MpJoin:
    backup, addr_id = bool(buf[off + 2] & 0x01), buf[off + 3]
    if length == 12 and syn and not ack:
        token, nonce = struct.unpack_from("!II", buf, off + 4)
        return MpJoin("syn", backup, addr_id, token=token, nonce=nonce)
    if length == 16 and syn and ack:
        return MpJoin("synack", backup, addr_id, nonce=struct.unpack_from("!I", buf, off + 12)[0],
                      hmac=bytes(buf[off + 4 : off + 12]))
    if length == 24 and not syn:
        return MpJoin("ack", hmac=bytes(buf[off + 4 : off + 24]))
    raise DecodeFault(f"MP_JOIN of length {length} on a {'SYN' if syn else 'non-SYN'}{'/ACK' if ack else ''}")


DssFields = tuple[int, int | None, int | None, int | None, int | None]  # flags, ack, dsn, ssn, len


def dss_fields(buf: bytes, off: int, length: int) -> DssFields:
    """The DSS option's fields as a plain tuple (the checker's loop reads every data packet's
    without building a ``Dss``); raises ``DecodeFault``/``struct.error`` when they do not fit."""
    flags = buf[off + 3]
    p = off + 4
    data_ack = dsn = ssn = data_len = None
    if flags & DSS_ACK:
        if flags & DSS_ACK64:
            data_ack = _u64(buf, p)
            p += 8
        else:
            data_ack = struct.unpack_from("!I", buf, p)[0]
            p += 4
    if flags & DSS_MAP:
        if flags & DSS_DSN64:
            dsn = _u64(buf, p)
            p += 8
        else:
            dsn = struct.unpack_from("!I", buf, p)[0]
            p += 4
        ssn, data_len = struct.unpack_from("!IH", buf, p)
        p += 6
    used = p - off
    if used > length or length - used not in (0, 2):  # what remains can only be the checksum
        raise DecodeFault(f"DSS flags 0x{flags:02x} do not fit its length {length}")
    return flags, data_ack, dsn, ssn, data_len


def _dss(buf: bytes, off: int, length: int) -> Dss:
    flags, data_ack, dsn, ssn, data_len = dss_fields(buf, off, length)
    return Dss(flags, data_ack, dsn, ssn, data_len, bool(flags & DSS_DSN64), bool(flags & DSS_ACK64))


def _add_addr(buf: bytes, off: int, length: int) -> AddAddr:
    shape = _ADD_ADDR_LEN.get(length)
    if shape is None:
        raise DecodeFault(f"ADD_ADDR of length {length}")
    alen, has_port, has_hmac = shape
    echo = bool(buf[off + 2] & 0x01)
    p = off + 4
    address = ntop(bytes(buf[p : p + alen]))
    p += alen
    port = None
    if has_port:
        port = struct.unpack_from("!H", buf, p)[0]
        p += 2
    mac = bytes(buf[p : p + 8]) if has_hmac else b""
    if echo == has_hmac:
        raise DecodeFault("ADD_ADDR with the echo flag carries no HMAC; without it, one")
    return AddAddr(echo, buf[off + 3], address, port, mac)


def _decode(buf: bytes, off: int, length: int, syn: bool, ack: bool, data: bool) -> MptcpOption:
    if length < 3:
        raise DecodeFault(f"MPTCP option of length {length}")
    subtype = buf[off + 2] >> 4
    if subtype == MP_CAPABLE:
        return _capable(buf, off, length, data)
    if subtype == MP_JOIN:
        return _join(buf, off, length, syn, ack)
    if subtype == DSS:
        return _dss(buf, off, length)
    if subtype == ADD_ADDR:
        return _add_addr(buf, off, length)
    if subtype == REMOVE_ADDR:
        return RemoveAddr(tuple(buf[off + 3 : off + length]))
    if subtype == MP_PRIO:
        if length not in (3, 4):
            raise DecodeFault(f"MP_PRIO of length {length}")
        return MpPrio(bool(buf[off + 2] & 0x01), buf[off + 3] if length == 4 else None)
    return MpOther(subtype, bytes(buf[off + 2 : off + length]))


def decode_mptcp(buf: bytes, off: int, length: int, *, syn: bool = False, ack: bool = True,
                 data: bool = False) -> MptcpOption:
    """The MPTCP option at ``buf[off:off+length]`` (kind and length included). ``syn``/``ack``
    are the segment's flags (MP_JOIN's form depends on them); ``data``: the segment carries
    payload (MP_CAPABLE then may carry the data-level length)."""
    try:
        return _decode(buf, off, length, syn, ack, data)
    except (DecodeFault, struct.error, IndexError, ValueError) as e:
        sub = buf[off + 2] >> 4 if off + 2 < len(buf) else -1
        return MalformedOption(sub, str(e) if isinstance(e, DecodeFault) else f"truncated ({e})")


def option_name(opt: MptcpOption) -> str:
    """The option's subtype name (MP_JOIN, ADD_ADDR...)."""
    if isinstance(opt, MpOther | MalformedOption):
        return SUBTYPE_NAMES.get(opt.subtype, f"MPTCP subtype {opt.subtype}")
    return {MpCapable: "MP_CAPABLE", MpJoin: "MP_JOIN", Dss: "DSS", AddAddr: "ADD_ADDR",
            RemoveAddr: "REMOVE_ADDR", MpPrio: "MP_PRIO"}[type(opt)]


# -- keyed values -----------------------------------------------------------------------------
def _key_bytes(*keys: int) -> bytes:
    return b"".join(struct.pack("!Q", k) for k in keys)


def token_of(key: int) -> int:
    """The connection token a key names (MP_JOIN SYNs carry the receiver's)."""
    return int.from_bytes(hashlib.sha256(_key_bytes(key)).digest()[:4], "big")


def idsn_of(key: int) -> int:
    """The initial data sequence number of the key's owner."""
    return int.from_bytes(hashlib.sha256(_key_bytes(key)).digest()[-8:], "big")


def _hmac(key1: int, key2: int, msg: bytes) -> bytes:
    return hmac.new(_key_bytes(key1, key2), msg, hashlib.sha256).digest()


def join_synack_hmac(key_b: int, key_a: int, nonce_b: int, nonce_a: int) -> bytes:
    """What the SYN/ACK of a join initiated by A must carry (B answers)."""
    return _hmac(key_b, key_a, struct.pack("!II", nonce_b, nonce_a))[:8]


def join_ack_hmac(key_a: int, key_b: int, nonce_a: int, nonce_b: int) -> bytes:
    """What the third ACK of a join initiated by A must carry."""
    return _hmac(key_a, key_b, struct.pack("!II", nonce_a, nonce_b))[:20]


def add_addr_hmac(sender_key: int, receiver_key: int, addr_id: int, address: str,
                  port: int | None) -> bytes:
    """What an ADD_ADDR announcing ``address`` (and ``port``) must carry from its sender."""
    msg = bytes([addr_id]) + ipaddress.ip_address(address).packed + struct.pack("!H", port or 0)
    return _hmac(sender_key, receiver_key, msg)[-8:]
