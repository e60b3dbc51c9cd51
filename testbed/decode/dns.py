"""DNS messages (RFC 1035), with the UPDATE view (RFC 2136), SIG(0) (RFC 2931) and TSIG (RFC 8945).

Hand-rolled instead of dnspython: dnspython (2.6) raises FormError on an UPDATE that carries
SIG(0) as the last additional record, and scapy (2.6) mis-parses records with empty RDATA, which
UPDATE uses for class ANY/NONE prerequisites and deletions. ``decode_dns`` never raises: broken
input gives a message with ``malformed`` set to the reason and whatever was decoded before the
fault.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from testbed.decode.fault import DecodeFault

OPCODE_QUERY, OPCODE_NOTIFY, OPCODE_UPDATE = 0, 4, 5
RCODE_NAMES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
    16: "BADSIG", 17: "BADKEY", 18: "BADTIME",
}  # fmt: skip
TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_AAAA = 1, 2, 5, 6, 12, 28
TYPE_SIG, TYPE_KEY, TYPE_OPT, TYPE_TSIG, TYPE_ANY = 24, 25, 41, 250, 255
CLASS_IN, CLASS_NONE, CLASS_ANY = 1, 254, 255
TYPE_NAMES = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 24: "SIG", 25: "KEY",
    28: "AAAA", 33: "SRV", 41: "OPT", 250: "TSIG", 255: "ANY",
}  # fmt: skip

HEADER_TRUNCATED = "truncated DNS header"  # the ``malformed`` of a message with no header at all
_MAX_JUMPS = 32  # compression pointers followed per name: the loop guard
_NAME_TYPES = frozenset({TYPE_NS, TYPE_CNAME, TYPE_PTR})


@dataclass(frozen=True, slots=True)
class SigRdata:
    """SIG(0) record data: what identifies the signer and its validity window."""

    type_covered: int
    algorithm: int
    labels: int
    original_ttl: int
    expiration: int
    inception: int
    key_tag: int
    signer: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class TsigRdata:
    algorithm: str
    time_signed: int
    fudge: int
    mac: bytes
    original_id: int
    error: int
    other: bytes


@dataclass(frozen=True, slots=True)
class Question:
    """One entry of the question (for UPDATE: zone) section."""

    name: str
    type: int
    rclass: int


@dataclass(frozen=True, slots=True)
class Record:
    """A resource record. Empty ``rdata`` is legal (UPDATE class ANY/NONE): ``value`` is None."""

    name: str
    type: int
    rclass: int
    ttl: int
    rdata: bytes
    value: str | None = None  # text of A/AAAA/NS/CNAME/PTR
    sig: SigRdata | None = None
    tsig: TsigRdata | None = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, f"TYPE{self.type}")


@dataclass(frozen=True, slots=True)
class DNSMessage:
    id: int
    flags: int
    questions: tuple[Question, ...]
    answers: tuple[Record, ...]
    authority: tuple[Record, ...]
    additional: tuple[Record, ...]
    malformed: str | None = None

    @property
    def qr(self) -> bool:
        return bool(self.flags & 0x8000)

    @property
    def opcode(self) -> int:
        return (self.flags >> 11) & 0xF

    @property
    def rcode(self) -> int:
        return self.flags & 0xF

    @property
    def rcode_name(self) -> str:
        return RCODE_NAMES.get(self.rcode, f"RCODE{self.rcode}")

    # UPDATE (RFC 2136 §2) renames the sections.
    @property
    def zone(self) -> Question | None:
        return self.questions[0] if self.questions else None

    @property
    def prerequisites(self) -> tuple[Record, ...]:
        return self.answers

    @property
    def updates(self) -> tuple[Record, ...]:
        return self.authority

    @property
    def sig0(self) -> SigRdata | None:
        """SIG(0) is the last additional record, owner root, type SIG."""
        if self.additional and self.additional[-1].type == TYPE_SIG:
            return self.additional[-1].sig
        return None

    @property
    def tsig(self) -> TsigRdata | None:
        if self.additional and self.additional[-1].type == TYPE_TSIG:
            return self.additional[-1].tsig
        return None


def _name(buf: bytes, off: int) -> tuple[str, int]:
    """Read a possibly compressed name; return ``(name, offset after it)`` with a loop guard."""
    labels: list[str] = []
    jumps = 0
    after = -1
    total = 0
    n = len(buf)
    while True:
        if off >= n:
            raise DecodeFault("name runs past the end of the message")
        ln = buf[off]
        if ln == 0:
            off += 1
            break
        if ln & 0xC0 == 0xC0:
            if off + 1 >= n:
                raise DecodeFault("truncated compression pointer")
            jumps += 1
            if jumps > _MAX_JUMPS:
                raise DecodeFault("compression pointer loop")
            if after < 0:
                after = off + 2
            off = ((ln & 0x3F) << 8) | buf[off + 1]
            continue
        if ln & 0xC0:
            raise DecodeFault(f"unsupported label type 0x{ln & 0xC0:02x}")
        total += ln + 1
        if total > 255 or off + 1 + ln > n:
            raise DecodeFault("name too long or truncated")
        labels.append(buf[off + 1 : off + 1 + ln].decode("ascii", "backslashreplace"))
        off += 1 + ln
    return (".".join(labels) + ".") if labels else ".", (after if after >= 0 else off)


def _rdata(buf: bytes, rtype: int, v: int, e: int) -> tuple[str | None, SigRdata | None, TsigRdata | None]:
    if v == e:
        return None, None, None
    if rtype == TYPE_A and e - v == 4:
        return socket.inet_ntop(socket.AF_INET, buf[v:e]), None, None
    if rtype == TYPE_AAAA and e - v == 16:
        return socket.inet_ntop(socket.AF_INET6, buf[v:e]), None, None
    if rtype in _NAME_TYPES:
        return _name(buf, v)[0], None, None
    if rtype == TYPE_SIG:
        covered, alg, labels, ottl, exp, inc, tag = struct.unpack_from("!HBBIIIH", buf, v)
        signer, p = _name(buf, v + 18)
        if p > e:
            raise DecodeFault("SIG signer name overruns its RDATA")
        return None, SigRdata(covered, alg, labels, ottl, exp, inc, tag, signer, buf[p:e]), None
    if rtype == TYPE_TSIG:
        alg, p = _name(buf, v)
        hi, lo, fudge, msize = struct.unpack_from("!HIHH", buf, p)
        mac = buf[p + 10 : p + 10 + msize]
        q = p + 10 + msize
        orig, err, olen = struct.unpack_from("!HHH", buf, q)
        if q + 6 + olen > e:
            raise DecodeFault("TSIG RDATA overruns its record")
        return (
            None,
            None,
            TsigRdata(alg, (hi << 32) | lo, fudge, mac, orig, err, buf[q + 6 : q + 6 + olen]),
        )
    return None, None, None


def _record(buf: bytes, off: int) -> tuple[Record, int]:
    name, p = _name(buf, off)
    rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", buf, p)
    v = p + 10
    e = v + rdlen
    if e > len(buf):
        raise DecodeFault(f"{TYPE_NAMES.get(rtype, rtype)} record RDATA overruns the message")
    value, sig, tsig = _rdata(buf, rtype, v, e)
    return Record(name, rtype, rclass, ttl, buf[v:e], value, sig, tsig), e


def decode_dns(buf: bytes) -> DNSMessage:
    """Decode one DNS message (UDP payload, or TCP payload without its length prefix)."""
    if len(buf) < 12:
        return DNSMessage(0, 0, (), (), (), (), HEADER_TRUNCATED)
    mid, flags, qd, an, ns, ar = struct.unpack_from("!HHHHHH", buf, 0)
    sections: list[list[Record]] = [[], [], []]
    questions: list[Question] = []
    bad = None
    p = 12
    try:
        for _ in range(qd):
            name, p = _name(buf, p)
            qt, qc = struct.unpack_from("!HH", buf, p)
            p += 4
            questions.append(Question(name, qt, qc))
        for sec, count in zip(sections, (an, ns, ar), strict=True):
            for _ in range(count):
                rec, p = _record(buf, p)
                sec.append(rec)
    except DecodeFault as e:
        bad = str(e)
    except (struct.error, IndexError, ValueError, UnicodeError) as e:
        bad = f"truncated or invalid DNS message ({e})"
    return DNSMessage(
        mid,
        flags,
        tuple(questions),
        tuple(sections[0]),
        tuple(sections[1]),
        tuple(sections[2]),
        bad,
    )
