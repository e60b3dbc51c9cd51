"""SIG(0) transaction signatures (RFC 2931) on DNS messages: signing and verification, no I/O.

Why hand-rolled: dnspython (2.9) has the KEY and SIG rdata types and the DNSSEC algorithms
(``dns.dnssecalgs``: ECDSA as raw r||s, Ed25519) but no SIG(0) message signing or
verification, and its message parser raises FormError on a SIG(0) record at the end of the
additional section. So this module does only the message framing of RFC 2931 §3.1 and leaves
rdata encoding to dnspython and the signature itself to ``dns.dnssecalgs`` (on cryptography).

Wire shape that BIND 9.20.23 accepts (tests/integration/test_location_bind.py holds it to that):
the SIG RR is the last record of the
additional section; owner root, type SIG (24), class ANY, TTL 0; RDATA = type covered 0,
algorithm, labels 0, original TTL 0, expiration, inception, key tag (RFC 4034 App. B over the
KEY rdata), signer name uncompressed and lower case, signature. The signed data is that RDATA
without the signature followed by the message as it was before the SIG was appended (ARCOUNT
not counting the SIG).

Time is always passed in (``now``, seconds since the epoch), so tests pin it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

import dns.dnssecalgs
import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography.exceptions import InvalidSignature
from dns.dnssecalgs.base import GenericPrivateKey, GenericPublicKey
from dns.dnssectypes import Algorithm
from dns.rdtypes.ANY.KEY import KEY
from dns.rdtypes.ANY.SIG import SIG

from testbed.errors import TestbedError

ECDSAP256SHA256 = Algorithm.ECDSAP256SHA256  # 13
ED25519 = Algorithm.ED25519  # 15
SUPPORTED_ALGORITHMS: tuple[Algorithm, ...] = (ECDSAP256SHA256, ED25519)

KEY_FLAGS_HOST = 0x0200  # RFC 2535 §3.1.2 name type "host"; what `dnssec-keygen -n HOST` writes
KEY_PROTOCOL_DNSSEC = 3

_HEADER = struct.Struct("!HHHHHH")  # id, flags, qd, an, ns, ar
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_SIG_FIXED = struct.Struct("!HBBIIIH")  # covered, alg, labels, ottl, expiration, inception, tag


class Sig0Error(TestbedError):
    """A SIG(0) record is missing, malformed, or does not verify."""


def algorithm_from_text(text: str | int) -> Algorithm:
    """``"ECDSAP256SHA256"``, ``"13"`` or ``13`` → Algorithm, restricted to what we sign with."""
    try:
        alg = Algorithm(int(text)) if str(text).isdigit() else Algorithm.from_text(str(text))
    except (ValueError, dns.exception.DNSException) as e:
        raise Sig0Error(f"unknown DNSSEC algorithm {text!r} (use ECDSAP256SHA256 or ED25519)") from e
    if alg not in SUPPORTED_ALGORITHMS:
        raise Sig0Error(f"algorithm {alg.name} not supported for SIG(0) (use ECDSAP256SHA256 or ED25519)")
    return alg


@dataclass(frozen=True)
class Validity:
    """Signature validity window around ``now``: [now - before, now + after].

    Short by default: BIND accepts a replay of a signed UPDATE for as long as the window lasts.
    """

    before: float = 60.0
    after: float = 60.0

    def bounds(self, now: float) -> tuple[int, int]:
        """(inception, expiration) as 32-bit serial numbers (RFC 4034 §3.1.5)."""
        return int(now - self.before) & 0xFFFFFFFF, int(now + self.after) & 0xFFFFFFFF


@dataclass(frozen=True)
class Sig0PublicKey:
    """A KEY record: what the zone publishes and what a verifier needs."""

    name: dns.name.Name
    rdata: KEY

    @property
    def algorithm(self) -> Algorithm:
        return Algorithm(self.rdata.algorithm)

    @property
    def key_tag(self) -> int:
        return key_tag(self.rdata)

    def verifier(self) -> GenericPublicKey:
        cls = dns.dnssecalgs.get_algorithm_cls(self.algorithm).public_cls
        return cls.from_dnskey(self.rdata)  # type: ignore[arg-type]  # KEY has DNSKEY's layout

    def to_text(self, ttl: int = 300) -> str:
        """The zone-file line, as ``dnssec-keygen -T KEY`` writes it."""
        return f"{self.name.to_text()} {ttl} IN KEY {self.rdata.to_text()}"


@dataclass(frozen=True)
class Sig0Key:
    """A private key bound to the owner name whose KEY record the zone holds."""

    name: dns.name.Name
    private: GenericPrivateKey
    flags: int = KEY_FLAGS_HOST
    protocol: int = KEY_PROTOCOL_DNSSEC

    @property
    def algorithm(self) -> Algorithm:
        return Algorithm(self.private.public_cls.algorithm)

    @property
    def public(self) -> Sig0PublicKey:
        key = KEY(
            dns.rdataclass.IN,
            dns.rdatatype.KEY,
            self.flags,
            self.protocol,
            self.algorithm,
            self.private.public_key().encode_key_bytes(),
        )
        return Sig0PublicKey(self.name, key)

    @property
    def key_tag(self) -> int:
        return self.public.key_tag


def key_tag(rdata: KEY) -> int:
    """RFC 4034 Appendix B key tag over the KEY rdata (dnspython implements it for DNSKEY)."""
    return int(rdata.key_id())


# --- signing -------------------------------------------------------------------------------


def sign(
    message: dns.message.Message | bytes,
    key: Sig0Key,
    now: float,
    validity: Validity | None = None,
) -> bytes:
    """Return the wire form of ``message`` with a SIG(0) record appended as its last RR."""
    wire = message if isinstance(message, bytes) else message.to_wire()
    if len(wire) < _HEADER.size:
        raise Sig0Error(f"message of {len(wire)} bytes is shorter than a DNS header")
    inception, expiration = (validity or Validity()).bounds(now)
    unsigned = SIG(
        dns.rdataclass.ANY,
        dns.rdatatype.SIG,
        0,  # type covered: 0 for a transaction signature
        key.algorithm,
        0,  # labels
        0,  # original TTL
        expiration,
        inception,
        key.key_tag,
        key.name,
        b"",
    )
    rdata_head = unsigned.to_wire(canonicalize=True)  # signer name uncompressed, lower case
    signature = key.private.sign(rdata_head + wire)
    rdata = rdata_head + signature
    rr = b"\x00" + _RR_FIXED.pack(dns.rdatatype.SIG, dns.rdataclass.ANY, 0, len(rdata)) + rdata
    return _with_arcount(wire, _arcount(wire) + 1) + rr


# --- parsing and verification -------------------------------------------------------------


@dataclass(frozen=True)
class Signed:
    """A message split into its unsigned wire form and its SIG(0) record (None if absent)."""

    unsigned_wire: bytes
    sig: SIG | None

    def message(self) -> dns.message.Message:
        """The message without its SIG(0); parsing it this way avoids dnspython's FormError."""
        return dns.message.from_wire(self.unsigned_wire)


def split(wire: bytes) -> Signed:
    """Strip a trailing SIG(0) record (if any) and fix ARCOUNT; no verification."""
    start = _last_rr_offset(wire)
    if start is None:
        return Signed(wire, None)
    name_end = start + 1
    if wire[start] != 0:  # owner must be the root for SIG(0); anything else is not ours
        return Signed(wire, None)
    rtype, rclass, ttl, rdlen = _RR_FIXED.unpack_from(wire, name_end)
    if rtype != dns.rdatatype.SIG:
        return Signed(wire, None)
    rdata_at = name_end + _RR_FIXED.size
    if rclass != dns.rdataclass.ANY or ttl != 0 or rdata_at + rdlen != len(wire):
        raise Sig0Error(f"SIG(0) record malformed (class {rclass}, ttl {ttl}, rdlength {rdlen})")
    try:
        sig = dns.rdata.from_wire(dns.rdataclass.ANY, dns.rdatatype.SIG, wire, rdata_at, rdlen)
    except dns.exception.DNSException as e:
        raise Sig0Error(f"SIG(0) rdata unparseable: {e}") from e
    return Signed(_with_arcount(wire[:start], _arcount(wire) - 1), sig)  # type: ignore[arg-type]


def verify(
    wire: bytes,
    keys: Sig0PublicKey | Iterable[Sig0PublicKey],
    now: float,
) -> Signed:
    """Check the SIG(0) on ``wire`` against one of ``keys`` at time ``now``; raise Sig0Error."""
    candidates = [keys] if isinstance(keys, Sig0PublicKey) else list(keys)
    signed = split(wire)
    sig = signed.sig
    if sig is None:
        raise Sig0Error("message carries no SIG(0) record (it must be the last additional RR)")
    if sig.type_covered != 0 or sig.labels != 0 or sig.original_ttl != 0:
        raise Sig0Error("SIG(0) must have type covered 0, labels 0 and original TTL 0")
    t = int(now) & 0xFFFFFFFF
    if _serial_lt(t, sig.inception) or _serial_lt(sig.expiration, t):
        raise Sig0Error(f"SIG(0) outside its validity window [{sig.inception}, {sig.expiration}] at {t}")
    data = sig.replace(signature=b"").to_wire(canonicalize=True) + signed.unsigned_wire
    matching = [
        k
        for k in candidates
        if k.name == sig.signer and k.algorithm == sig.algorithm and k.key_tag == sig.key_tag
    ]
    if not matching:
        raise Sig0Error(f"no KEY for signer {sig.signer} alg {sig.algorithm} tag {sig.key_tag}")
    for k in matching:  # key tags collide; try each
        try:
            k.verifier().verify(sig.signature, data)
            return signed
        except InvalidSignature:
            continue
    raise Sig0Error(f"SIG(0) by {sig.signer} tag {sig.key_tag} does not verify")


def _serial_lt(a: int, b: int) -> bool:
    """RFC 1982 serial number comparison for 32-bit time fields (wrap-safe)."""
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


def _arcount(wire: bytes) -> int:
    return _HEADER.unpack_from(wire)[5]


def _with_arcount(wire: bytes, count: int) -> bytes:
    return wire[:10] + struct.pack("!H", count) + wire[12:]


def _skip_name(wire: bytes, at: int) -> int:
    """Offset just past the (possibly compressed) name at ``at``; no decompression needed."""
    while True:
        if at >= len(wire):
            raise Sig0Error("name runs past the end of the message")
        length = wire[at]
        if length & 0xC0 == 0xC0:
            return at + 2
        if length & 0xC0:
            raise Sig0Error(f"unsupported label type 0x{length:02x} at offset {at}")
        at += 1 + length
        if length == 0:
            return at


def _last_rr_offset(wire: bytes) -> int | None:
    """Offset of the last record in the message (None if it has no additional RR).

    Walks the sections instead of parsing them: dnspython would reject the SIG(0) RR.
    """
    if len(wire) < _HEADER.size:
        raise Sig0Error(f"message of {len(wire)} bytes is shorter than a DNS header")
    _, _, qd, an, ns, ar = _HEADER.unpack_from(wire)
    if ar == 0:
        return None
    at = _HEADER.size
    for _ in range(qd):
        at = _skip_name(wire, at) + 4
    last = at
    for _ in range(an + ns + ar):
        last = at
        at = _skip_name(wire, at)
        if at + _RR_FIXED.size > len(wire):
            raise Sig0Error("record header runs past the end of the message")
        at += _RR_FIXED.size + _RR_FIXED.unpack_from(wire, at)[3]
    if at != len(wire):
        raise Sig0Error(f"message has {len(wire) - at} trailing bytes after its records")
    return last
