"""Synthetic MPTCP and plain-TCP captures for the checker's tests (no lab needed).

TCP segments are built with scapy; MPTCP options (kind 30) are encoded here, field by field from
RFC 8684 §3, and the HMACs computed with ``hashlib`` directly (not through the code under test).
``mptcp_handover`` draws one make-before-break move of an MPTCP connection as the lab's binding
process drives it; each knob breaks one signal, so a test can check that exactly its rule fails.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.support.synth import Capture

KEY_A, KEY_B = 0x1111222233334444, 0x5555666677778888
MN_OLD, MN_NEW, CN = "192.0.2.100", "198.51.100.100", "203.0.113.14"
S = 1_700_000_000.0


def _sha(key: int) -> bytes:
    return hashlib.sha256(struct.pack("!Q", key)).digest()


def token(key: int) -> int:
    return int.from_bytes(_sha(key)[:4], "big")


def idsn(key: int) -> int:
    return int.from_bytes(_sha(key)[-8:], "big")


def _mac(k1: int, k2: int, msg: bytes) -> bytes:
    return hmac.new(struct.pack("!QQ", k1, k2), msg, hashlib.sha256).digest()


# -- options ---------------------------------------------------------------------------------
def capable(*keys: int, data_len: int | None = None) -> bytes:
    body = bytes([0x01, 0x01]) + b"".join(struct.pack("!Q", k) for k in keys)  # v1, H flag
    if data_len is not None:
        body += struct.pack("!H", data_len)
    return body


def join_syn(tok: int, nonce: int, addr_id: int, backup: bool) -> bytes:
    return bytes([0x10 | backup, addr_id]) + struct.pack("!II", tok, nonce)


def join_synack(thmac: bytes, nonce: int, addr_id: int = 0) -> bytes:
    return bytes([0x10, addr_id]) + thmac + struct.pack("!I", nonce)


def join_ack(mac: bytes) -> bytes:
    return bytes([0x10, 0]) + mac


def dss(*, ack: int | None = None, dsn: int | None = None, ssn: int = 0, length: int = 0,
        fin: bool = False) -> bytes:
    flags = (0x03 if ack is not None else 0) | (0x0C if dsn is not None else 0) | (0x10 if fin else 0)
    body = bytes([0x20, flags])
    if ack is not None:
        body += struct.pack("!Q", ack)
    if dsn is not None:
        body += struct.pack("!QIH", dsn, ssn, length)
    return body


def add_addr(addr_id: int, address: str, *, mac: bytes | None = None, echo: bool = False) -> bytes:
    body = bytes([0x30 | echo, addr_id]) + ipaddress.ip_address(address).packed
    return body + (b"" if echo else (mac or b""))


def add_addr_mac(sender: int, receiver: int, addr_id: int, address: str) -> bytes:
    return _mac(sender, receiver, bytes([addr_id]) + ipaddress.ip_address(address).packed + b"\0\0")[-8:]


def remove_addr(*ids: int) -> bytes:
    return bytes([0x40, *ids])


def prio(backup: bool) -> bytes:
    return bytes([0x50 | backup])


def frame(src: str, sport: int, dst: str, dport: int, flags: str, seq: int, ack: int,
          mp: bytes | None = None, payload: bytes = b"") -> bytes:
    opts = [(30, mp)] if mp is not None else []
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, options=opts)
    pkt = eth / IP(src=src, dst=dst) / tcp / payload
    return bytes(pkt)


@dataclass
class Knobs:
    forge_add_addr: bool = False  # ADD_ADDR HMAC made with a wrong key
    forge_join: bool = False  # third ACK HMAC made with a wrong key
    no_echo: bool = False
    no_prio: bool = False
    no_remove: bool = False
    dsn_hole: bool = False  # one mapping lost: never sent again, so never acknowledged
    uncaptured: bool = False  # one data packet missing from the capture (acknowledged all the same)
    back: bool = False  # then a second handover, back to the first address


@dataclass
class Side:
    """One end's byte counters on one subflow."""

    seq: int
    ack: int


def mptcp_handover(knobs: Knobs | None = None, *, start: float = S, messages: int = 6) -> Capture:
    """An MPTCP connection MN → CN on MN_OLD, data, a backup join from MN_NEW, ADD_ADDR + echo,
    MP_PRIO new active / old backup, data on the new subflow, REMOVE_ADDR 0, FINs."""
    k = knobs or Knobs()
    cap = Capture()
    t = start
    p1, p2, cp = 40000, 40001, 5001
    a_dsn, b_dsn = idsn(KEY_A) + 1, idsn(KEY_B) + 1
    hole: list[int] = []  # where the lost mapping began: the CN acknowledges no further

    def acked(dsn: int) -> int:
        return min([dsn, *hole])

    def put(dt: float, *args: object, **kw: object) -> None:
        nonlocal t
        t += dt
        cap.add(t, frame(*args, **kw))  # type: ignore[arg-type]

    # MP_CAPABLE handshake, then the first data with the keys and its length
    put(0, MN_OLD, p1, CN, cp, "S", 1000, 0, capable())
    put(0.001, CN, cp, MN_OLD, p1, "SA", 5000, 1001, capable(KEY_B))
    put(0.001, MN_OLD, p1, CN, cp, "A", 1001, 5001, capable(KEY_A, KEY_B))
    msg = b"m" * 100
    put(0.01, MN_OLD, p1, CN, cp, "PA", 1001, 5001, capable(KEY_A, KEY_B, data_len=100), msg)
    a_dsn += 100
    mn, cn = Side(1101, 5001), Side(5001, 1101)
    for i in range(messages):  # data both ways on the old subflow
        if (k.dsn_hole or k.uncaptured) and i == 2:
            if k.dsn_hole:
                hole.append(a_dsn)
            a_dsn += 100  # a mapping missing from the capture
        else:
            put(0.02, MN_OLD, p1, CN, cp, "PA", mn.seq, mn.ack, dss(ack=b_dsn, dsn=a_dsn, ssn=mn.seq - 1000,
                                                                      length=100), msg)
            mn.seq += 100
            a_dsn += 100
        put(0.001, CN, cp, MN_OLD, p1, "PA", cn.seq, mn.seq,
            dss(ack=acked(a_dsn), dsn=b_dsn, ssn=cn.seq - 5000, length=32), b"e" * 32)
        cn.seq += 32
        b_dsn += 32
        mn.ack = cn.seq
    # the join from the new address, as a backup
    na, nb = 0xAAAA0001, 0xBBBB0002
    thmac = _mac(KEY_B, KEY_A, struct.pack("!II", nb, na))[:8]
    amac = _mac(KEY_A, 0xDEAD if k.forge_join else KEY_B, struct.pack("!II", na, nb))[:20]
    put(0.1, MN_NEW, p2, CN, cp, "S", 7000, 0, join_syn(token(KEY_B), na, 5, True))
    put(0.001, CN, cp, MN_NEW, p2, "SA", 9000, 7001, join_synack(thmac, nb))
    put(0.001, MN_NEW, p2, CN, cp, "A", 7001, 9001, join_ack(amac))
    put(0.001, CN, cp, MN_NEW, p2, "A", 9001, 7001, dss(ack=acked(a_dsn)))
    mac = add_addr_mac(0xBAD if k.forge_add_addr else KEY_A, KEY_B, 5, MN_NEW)
    put(0.01, MN_OLD, p1, CN, cp, "A", mn.seq, mn.ack, add_addr(5, MN_NEW, mac=mac))
    if not k.no_echo:
        put(0.001, CN, cp, MN_OLD, p1, "A", cn.seq, mn.seq, add_addr(5, MN_NEW, echo=True))
    if not k.no_prio:
        put(0.01, MN_NEW, p2, CN, cp, "A", 7001, 9001, prio(False))
        put(0.001, MN_OLD, p1, CN, cp, "A", mn.seq, mn.ack, prio(True))
    new_mn, new_cn = Side(7001, 9001), Side(9001, 7001)
    for _ in range(messages):  # data on the new subflow
        put(0.02, MN_NEW, p2, CN, cp, "PA", new_mn.seq, new_mn.ack,
            dss(ack=b_dsn, dsn=a_dsn, ssn=new_mn.seq - 7000, length=100), msg)
        new_mn.seq += 100
        a_dsn += 100
        put(0.001, CN, cp, MN_NEW, p2, "PA", new_cn.seq, new_mn.seq,
            dss(ack=acked(a_dsn), dsn=b_dsn, ssn=new_cn.seq - 9000, length=32), b"e" * 32)
        new_cn.seq += 32
        b_dsn += 32
        new_mn.ack = new_cn.seq
    if not k.no_remove:
        put(0.5, MN_NEW, p2, CN, cp, "A", new_mn.seq, new_mn.ack, remove_addr(0))
        put(0.001, CN, cp, MN_OLD, p1, "FA", cn.seq, mn.seq, dss(ack=acked(a_dsn)))
    if k.back:  # back to the first network: a join from MN_OLD again, the MN_NEW subflow removed
        p3, nc, nd = 40002, 0xCCCC0003, 0xDDDD0004
        thmac = _mac(KEY_B, KEY_A, struct.pack("!II", nd, nc))[:8]
        amac = _mac(KEY_A, KEY_B, struct.pack("!II", nc, nd))[:20]
        put(1.0, MN_OLD, p3, CN, cp, "S", 3000, 0, join_syn(token(KEY_B), nc, 6, True))
        put(0.001, CN, cp, MN_OLD, p3, "SA", 4000, 3001, join_synack(thmac, nd))
        put(0.001, MN_OLD, p3, CN, cp, "A", 3001, 4001, join_ack(amac))
        put(0.001, CN, cp, MN_OLD, p3, "A", 4001, 3001, dss(ack=acked(a_dsn)))
        put(0.01, MN_NEW, p2, CN, cp, "A", new_mn.seq, new_mn.ack,
            add_addr(6, MN_OLD, mac=add_addr_mac(KEY_A, KEY_B, 6, MN_OLD)))
        put(0.001, CN, cp, MN_NEW, p2, "A", new_cn.seq, new_mn.seq, add_addr(6, MN_OLD, echo=True))
        put(0.01, MN_OLD, p3, CN, cp, "A", 3001, 4001, prio(False))
        put(0.001, MN_NEW, p2, CN, cp, "A", new_mn.seq, new_mn.ack, prio(True))
        put(0.5, MN_OLD, p3, CN, cp, "A", 3001, 4001, remove_addr(5))
        put(0.001, CN, cp, MN_NEW, p2, "FA", new_cn.seq, new_mn.seq, dss(ack=acked(a_dsn)))
        put(0.1, MN_OLD, p3, CN, cp, "A", 3001, 4001, dss(ack=b_dsn, dsn=a_dsn, length=1, fin=True))
        put(0.001, CN, cp, MN_OLD, p3, "A", 4001, 3001,
            dss(ack=acked(a_dsn + 1), dsn=b_dsn, length=1, fin=True))
        put(0.001, MN_OLD, p3, CN, cp, "A", 3001, 4001, dss(ack=b_dsn + 1))
        return cap
    # the end: DATA_FIN both ways on the new subflow, acknowledged
    put(0.1, MN_NEW, p2, CN, cp, "A", new_mn.seq, new_mn.ack, dss(ack=b_dsn, dsn=a_dsn, length=1, fin=True))
    put(0.001, CN, cp, MN_NEW, p2, "A", new_cn.seq, new_mn.seq,
        dss(ack=acked(a_dsn + 1), dsn=b_dsn, length=1, fin=True))
    put(0.001, MN_NEW, p2, CN, cp, "A", new_mn.seq, new_mn.ack, dss(ack=b_dsn + 1))
    return cap


def tcp_break(*, start: float = S, broken: bool = True) -> Capture:
    """A plain TCP connection MN → CN; ``broken``: after the move the MN's data is re-sent and
    never acknowledged (what an old address that went away leaves); else it ends with FINs."""
    cap = Capture()
    t = start
    p, cp = 41000, 5001

    def put(dt: float, *args: object, **kw: object) -> None:
        nonlocal t
        t += dt
        cap.add(t, frame(*args, **kw))  # type: ignore[arg-type]

    put(0, MN_OLD, p, CN, cp, "S", 100, 0)
    put(0.001, CN, cp, MN_OLD, p, "SA", 900, 101)
    put(0.001, MN_OLD, p, CN, cp, "A", 101, 901)
    seq = 101
    for _ in range(5):
        put(0.02, MN_OLD, p, CN, cp, "PA", seq, 901, payload=b"x" * 200)
        seq += 200
        put(0.001, CN, cp, MN_OLD, p, "A", 901, seq)
    if broken:
        put(0.02, MN_OLD, p, CN, cp, "PA", seq, 901, payload=b"x" * 200)
        for dt in (0.2, 0.4, 0.8, 1.6):
            put(dt, MN_OLD, p, CN, cp, "PA", seq, 901, payload=b"x" * 200)
    else:
        put(0.02, MN_OLD, p, CN, cp, "FA", seq, 901)
        put(0.001, CN, cp, MN_OLD, p, "FA", 901, seq + 1)
        put(0.001, MN_OLD, p, CN, cp, "A", seq + 1, 902)
    return cap
