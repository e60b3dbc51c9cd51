"""Synthetic TraSH captures for the checker's tests and benchmark (no lab needed).

SCTP packets are built with scapy (CRC32c filled in). DNS UPDATE messages are built by hand:
scapy (2.6) mis-handles the empty RDATA of class ANY/NONE records, and the SIG(0)
record only needs a plausible shape here, not a valid signature. Knobs on ``trash_capture``
break exactly one step of the ladder each, so tests can check that exactly one rule fails.
Only tests and ``bench/`` use it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptPrefixInfo, IPv6
from scapy.layers.l2 import Ether
from scapy.layers.sctp import (
    SCTP,
    SCTPChunkAbort,
    SCTPChunkAddressConf,
    SCTPChunkAddressConfAck,
    SCTPChunkAuthentication,
    SCTPChunkData,
    SCTPChunkHeartbeatAck,
    SCTPChunkHeartbeatReq,
    SCTPChunkInit,
    SCTPChunkInitAck,
    SCTPChunkParamAddIPAddr,
    SCTPChunkParamChunkList,
    SCTPChunkParamDelIPAddr,
    SCTPChunkParamErrorIndication,
    SCTPChunkParamHeartbeatInfo,
    SCTPChunkParamIPv4Addr,
    SCTPChunkParamIPv6Addr,
    SCTPChunkParamRandom,
    SCTPChunkParamRequestedHMACFunctions,
    SCTPChunkParamSetPrimaryAddr,
    SCTPChunkSACK,
)

from testbed.decode import sctp_auth
from testbed.decode.dns import CLASS_ANY, CLASS_IN, TYPE_A, TYPE_AAAA, TYPE_SIG, TYPE_SOA, TYPE_TSIG

LINKTYPE_ETHERNET = 1


def _name(name: str) -> bytes:
    out = b""
    for label in name.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\x00"


def _rr(name: str, rtype: int, rclass: int, ttl: int, rdata: bytes) -> bytes:
    return _name(name) + struct.pack("!HHIH", rtype, rclass, ttl, len(rdata)) + rdata


def _addr_rdata(addr: str) -> tuple[int, bytes]:
    import ipaddress

    ip = ipaddress.ip_address(addr)
    return (TYPE_AAAA if ip.version == 6 else TYPE_A), ip.packed


def dns_update(
    msg_id: int,
    zone: str,
    name: str,
    add: str,
    *,
    signer: str | None = None,
    tsig: bool = False,
    now: int = 1_700_000_000,
) -> bytes:
    """An UPDATE replacing ``name``'s A/AAAA with ``add``: delete RRset (class ANY, empty
    RDATA) then add; signed with a SIG(0)-shaped record, a TSIG-shaped one, or unsigned."""
    rtype, rdata = _addr_rdata(add)
    updates = _rr(name, rtype, CLASS_ANY, 0, b"") + _rr(name, rtype, CLASS_IN, 60, rdata)
    additional = b""
    arcount = 0
    if signer is not None:
        sig = struct.pack("!HBBIIIH", 0, 13, 0, 0, now + 300, now - 300, 4242)
        sig += _name(signer) + bytes(64)
        additional, arcount = _rr(".", TYPE_SIG, CLASS_ANY, 0, sig), 1
    elif tsig:
        t = _name("hmac-sha256") + struct.pack("!HIHH", 0, now, 300, 32) + bytes(32)
        t += struct.pack("!HHH", msg_id, 0, 0)
        additional, arcount = _rr("tsig-key", TYPE_TSIG, CLASS_ANY, 0, t), 1
    head = struct.pack("!HHHHHH", msg_id, 5 << 11, 1, 0, 2, arcount)
    return head + _name(zone) + struct.pack("!HH", TYPE_SOA, CLASS_IN) + updates + additional


def dns_update_response(msg_id: int, zone: str, rcode: int = 0) -> bytes:
    head = struct.pack("!HHHHHH", msg_id, 0x8000 | (5 << 11) | rcode, 1, 0, 0, 0)
    return head + _name(zone) + struct.pack("!HH", TYPE_SOA, CLASS_IN)


@dataclass
class Capture:
    """Frames (time, Ethernet bytes) plus writers for pcap and pcapng."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)

    def add(self, t: float, frame: bytes) -> None:
        self.frames.append((t, frame))

    def sorted_frames(self) -> list[tuple[float, bytes]]:
        return sorted(self.frames, key=lambda f: f[0])

    def write_pcap(self, path: Path, *, nano: bool = False, big_endian: bool = False) -> Path:
        write_pcap(path, self.sorted_frames(), nano=nano, big_endian=big_endian)
        return path

    def write_pcapng(self, path: Path) -> Path:
        write_pcapng(path, self.sorted_frames())
        return path


def write_pcap(
    path: Path,
    frames: Iterable[tuple[float, bytes]],
    *,
    linktype: int = LINKTYPE_ETHERNET,
    nano: bool = False,
    big_endian: bool = False,
) -> None:
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    scale = 1_000_000_000 if nano else 1_000_000
    with open(path, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
        for t, data in frames:
            sec = int(t)
            frac = round((t - sec) * scale)
            f.write(struct.pack(e + "IIII", sec, frac, len(data), len(data)) + data)


def write_pcapng(
    path: Path, frames: Iterable[tuple[float, bytes]], *, linktype: int = LINKTYPE_ETHERNET
) -> None:
    """Minimal pcapng: SHB, one IDB with nanosecond if_tsresol, EPBs."""

    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
        f.write(block(1, struct.pack("<HHI", linktype, 0, 262144) + opts))
        for t, data in frames:
            ts = round(t * 1e9)
            body = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
            f.write(block(6, body + data))


@dataclass
class Assoc:
    """One SCTP association between the MN and the CN, with its tags and counters."""

    mn_addr: str
    cn_addr: str
    v6: bool = False
    mn_port: int = 5000
    cn_port: int = 6000
    mn_tag: int = 0x11111111
    cn_tag: int = 0x22222222
    mn_itsn: int = 1000
    cn_itsn: int = 5000
    mn_tsn: int = 0
    cn_tsn: int = 0
    serial: int = 0
    corr: int = 0
    shared_key: bytes = b""  # the endpoint-pair shared key (RFC 4895), key id 0

    def __post_init__(self) -> None:
        self.mn_tsn, self.cn_tsn, self.serial = self.mn_itsn, self.cn_itsn, self.mn_itsn

    @staticmethod
    def auth_params(random: bytes) -> list[object]:
        """RANDOM, CHUNKS (ASCONF, ASCONF-ACK) and HMAC-ALGO (SHA-1), as Linux offers them."""
        return [SCTPChunkParamRandom(random=random), SCTPChunkParamChunkList(chunk_list=[0xC1, 0x80]),
                SCTPChunkParamRequestedHMACFunctions(HMAC_functions_list=[1])]

    @property
    def key(self) -> bytes:
        """The association shared key both ends derive from INIT and INIT-ACK."""
        def unpadded(p: object) -> bytes:  # a key vector holds each parameter without padding
            raw = bytes(p)  # type: ignore[call-overload]
            return raw[: struct.unpack_from("!H", raw, 2)[0]]

        vec = [b"".join(unpadded(p) for p in self.auth_params(r)) for r in (b"\x01" * 32, b"\x02" * 32)]
        return sctp_auth.association_key(*vec, self.shared_key)

    def auth(self, chunk: object, *, forged: bool = False) -> object:
        """The AUTH chunk in front of ``chunk``: a valid HMAC, or (``forged``) one under the key
        of an attacker who did not see the handshake."""
        key = b"attacker" if forged else self.key
        mac = sctp_auth.sign(bytes(chunk), key)[sctp_auth.AUTH_HEADER:]
        return SCTPChunkAuthentication(shared_key_id=0, HMAC_function=1, HMAC=mac)

    def ip(self, src: str, dst: str, ttl: int = 64) -> object:
        if ":" in src:  # a dual-stack association sends from addresses of both families
            return _eth() / IPv6(src=src, dst=dst, hlim=ttl)
        return _eth() / IP(src=src, dst=dst, ttl=ttl, flags="DF", id=0)

    def from_mn(self, src: str, chunks: list[object], dst: str | None = None) -> bytes:
        pkt = self.ip(src, dst or self.cn_addr) / SCTP(
            sport=self.mn_port, dport=self.cn_port, tag=self.cn_tag
        )
        for c in chunks:
            pkt = pkt / c
        return bytes(pkt)

    def from_cn(self, dst: str, chunks: list[object], src: str | None = None) -> bytes:
        pkt = self.ip(src or self.cn_addr, dst) / SCTP(
            sport=self.cn_port, dport=self.mn_port, tag=self.mn_tag
        )
        for c in chunks:
            pkt = pkt / c
        return bytes(pkt)

    def addr_param(self, addr: str) -> object:
        return SCTPChunkParamIPv6Addr(addr=addr) if ":" in addr else SCTPChunkParamIPv4Addr(addr=addr)

    def init(self) -> tuple[bytes, bytes]:
        init = bytes(
            self.ip(self.mn_addr, self.cn_addr)
            / SCTP(sport=self.mn_port, dport=self.cn_port, tag=0)
            / SCTPChunkInit(
                init_tag=self.mn_tag, a_rwnd=65536, n_out_streams=1, n_in_streams=1,
                init_tsn=self.mn_itsn, params=self.auth_params(b"\x01" * 32),
            )
        )  # fmt: skip
        ack = self.from_cn(
            self.mn_addr,
            [
                SCTPChunkInitAck(
                    init_tag=self.cn_tag, a_rwnd=65536, n_out_streams=1, n_in_streams=1,
                    init_tsn=self.cn_itsn, params=self.auth_params(b"\x02" * 32),
                )
            ],
        )  # fmt: skip
        return init, ack

    def refused_init(self, cause: bytes = b"") -> tuple[bytes, bytes]:
        """An INIT and the ABORT that refuses it: the ABORT carries the INIT's initiate tag."""
        init, _ack = self.init()
        abort = bytes(self.ip(self.cn_addr, self.mn_addr)
                      / SCTP(sport=self.cn_port, dport=self.mn_port, tag=self.mn_tag)
                      / SCTPChunkAbort(error_causes=cause))
        return init, abort

    def heartbeat(self, dst: str, info: bytes) -> bytes:
        """The CN probing one of the MN's addresses (a new one stays unconfirmed until the ACK)."""
        return self.from_cn(dst, [SCTPChunkHeartbeatReq(params=[SCTPChunkParamHeartbeatInfo(data=info)])])

    def heartbeat_ack(self, src: str, info: bytes) -> bytes:
        return self.from_mn(src, [SCTPChunkHeartbeatAck(params=[SCTPChunkParamHeartbeatInfo(data=info)])])

    def abort_from_cn(self, dst: str) -> bytes:
        """ABORT of an established association (User-Initiated Abort, no reason given)."""
        return self.from_cn(dst, [SCTPChunkAbort(error_causes=struct.pack("!HH", 12, 4))])

    def data_to_mn(self, dst: str, tsn: int | None = None) -> bytes:
        if tsn is None:
            tsn, self.cn_tsn = self.cn_tsn, self.cn_tsn + 1
        return self.from_cn(dst, [SCTPChunkData(tsn=tsn, stream_id=0, stream_seq=0, proto_id=0,
                                                data=b"x" * 32, beginning=1, ending=1)])  # fmt: skip

    def data_from_mn(self, src: str) -> bytes:
        tsn, self.mn_tsn = self.mn_tsn, self.mn_tsn + 1
        return self.from_mn(src, [SCTPChunkData(tsn=tsn, stream_id=0, stream_seq=0, proto_id=0,
                                                data=b"y" * 32, beginning=1, ending=1)])  # fmt: skip

    def sack_data_to_mn(self, dst: str) -> bytes:
        """The CN's SACK of the MN's DATA so far with its next DATA bundled behind it."""
        tsn, self.cn_tsn = self.cn_tsn, self.cn_tsn + 1
        return self.from_cn(dst, [SCTPChunkSACK(cumul_tsn_ack=self.mn_tsn - 1, a_rwnd=65536),
                                  SCTPChunkData(tsn=tsn, stream_id=0, stream_seq=0, proto_id=0,
                                                data=b"x" * 32, beginning=1, ending=1)])  # fmt: skip

    def sack_to_mn(self, dst: str) -> bytes:
        """The CN's SACK of the MN's DATA so far."""
        return self.from_cn(dst, [SCTPChunkSACK(cumul_tsn_ack=self.mn_tsn - 1, a_rwnd=65536)])

    def sack_from_mn(self, src: str) -> bytes:
        return self.from_mn(src, [SCTPChunkSACK(cumul_tsn_ack=self.cn_tsn - 1, a_rwnd=65536)])

    def asconf(
        self, src: str, kind: str, addr: str, *, auth: bool = True, serial_step: int = 1,
        forged: bool = False,
    ) -> tuple[bytes, int, int]:
        """ASCONF from the MN with one parameter; returns (bytes, serial, correlation id)."""
        cls = {
            "add": SCTPChunkParamAddIPAddr,
            "delete": SCTPChunkParamDelIPAddr,
            "set_primary": SCTPChunkParamSetPrimaryAddr,
        }[kind]
        self.corr += 1
        serial = self.serial
        self.serial += serial_step
        param = cls(correlation_id=self.corr, addr_type=6 if ":" in addr else 5, addr=addr)
        chunk = SCTPChunkAddressConf(seq=serial, params=[self.addr_param(addr), param])
        chunks = [self.auth(chunk, forged=forged), chunk] if auth else [chunk]
        return self.from_mn(src, chunks), serial, self.corr

    def asconf_ack(self, dst: str, serial: int, error_corr: int | None = None) -> bytes:
        """Linux-style ACK: no parameters on success; an error cause indication otherwise."""
        params = []
        if error_corr is not None:  # cause 0x00A4 "request refused - no authorization"
            params = [
                SCTPChunkParamErrorIndication(
                    correlation_id=error_corr, error_causes=struct.pack("!HH", 0xA4, 4)
                )
            ]
        ack = SCTPChunkAddressConfAck(seq=serial, params=params)
        return self.from_cn(dst, [self.auth(ack), ack])


def _eth() -> object:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


@dataclass
class Knobs:
    """Each knob breaks one step of the ladder (defaults: a correct ladder)."""

    v6: bool = False
    ack_add: bool = True  # False: ADD_IP never acknowledged
    set_primary_first: bool = False  # True: SET_PRIMARY sent (and acked) before ADD_IP
    auth: bool = True  # False: the MN's ASCONFs carry no AUTH
    dns_rcode: int = 0  # 5: REFUSED
    skip_serial: bool = False  # True: the second ASCONF skips a serial
    signed: bool = True  # False: unsigned UPDATE
    refuse_set_primary: bool = False  # True: SET_PRIMARY answered with an error cause
    lose_tsn: bool = False  # True: one CN DATA TSN never appears
    data_to_old: bool = False  # True: after SET_PRIMARY the CN keeps sending to the old address
    serial_offset: int = 0  # != 0: the first ASCONF serial is not the MN's initial TSN
    abort: bool = False  # True: the CN aborts the association after the handover
    # the new address is confirmed (HEARTBEAT-ACK) only after SET_PRIMARY is acked; the CN's
    # DATA in between keeps the old path. "before": the confirmation comes first instead;
    # "lost": the one HEARTBEAT is never answered, "unanswered": nor is a second (with
    # data_to_old, the CN stays on the old path); "racing": the HEARTBEAT-ACK comes right behind
    # a DATA of the MN, and the CN's answer to that DATA (its SACK, a DATA bundled) still takes
    # the old path, before the CN shows it took the ACK in (a SACK of the MN's next DATA);
    # "racing-informed": then one more DATA to the old path, after that SACK
    confirm: str = ""  # "" | "late" | "before" | "lost" | "unanswered" | "racing" | "racing-informed"
    set_primary: bool = True  # False: ADD_IP and DELETE_IP only (Linux's auto_asconf)
    forged_hmac: bool = False  # True: SET_PRIMARY's AUTH carries an HMAC under another key


MN_NAME = "mn.mobile.test."
ZONE = "mobile.test."


def addresses(v6: bool) -> tuple[str, str, str, str]:
    """(MN old address, MN new address, CN address, DNS server) in documentation prefixes."""
    if v6:
        return "2001:db8:1::10", "2001:db8:2::10", "2001:db8:100::1", "2001:db8:53::53"
    return "192.0.2.10", "198.51.100.10", "203.0.113.1", "203.0.113.53"


def trash_capture(knobs: Knobs | None = None, *, start: float = 1_700_000_000.0) -> Capture:
    """One association and one handover old → new, as Appendix A draws it."""
    k = knobs or Knobs()
    old, new, cn, dns = addresses(k.v6)
    a = Assoc(old, cn, v6=k.v6)
    a.serial += k.serial_offset
    cap = Capture()
    t = start
    init, init_ack = a.init()
    cap.add(t, init)
    cap.add(t + 0.001, init_ack)
    t += 0.01
    for _ in range(5):
        cap.add(t, a.data_to_mn(old))
        cap.add(t + 0.0005, a.sack_from_mn(old))
        cap.add(t + 0.001, a.data_from_mn(old))
        t += 0.01
    if k.lose_tsn:
        a.cn_tsn += 1  # this TSN is never sent
        cap.add(t, a.data_to_mn(old))
        t += 0.01
    t = start + 1.0
    order = ["set_primary", "add"] if k.set_primary_first else ["add", "set_primary"]
    if not k.set_primary:
        order.remove("set_primary")
    for i, kind in enumerate(order):
        pkt, serial, corr = a.asconf(
            old, kind, new, auth=k.auth, serial_step=2 if (k.skip_serial and i == 0) else 1,
            forged=k.forged_hmac and kind == "set_primary",
        )
        cap.add(t, pkt)
        acked = not (kind == "add" and not k.ack_add)
        if acked:
            err = corr if (kind == "set_primary" and k.refuse_set_primary) else None
            cap.add(t + 0.002, a.asconf_ack(old, serial, err))
        t += 0.01
    if k.confirm:
        hb, ack = a.heartbeat(new, b"probe-new"), a.heartbeat_ack(old, b"probe-new")
        cap.add(t - 0.005 if k.confirm in ("lost", "unanswered") else start + 0.5, hb)
        if k.confirm == "unanswered":  # probed again, still no answer
            cap.add(t + 0.005, a.heartbeat(new, b"probe-again"))

        def informed(at: float) -> None:
            """The MN's next DATA and the CN's SACK of it: the CN has taken the ACK in."""
            cap.add(at, a.data_from_mn(old))
            cap.add(at + 0.0002, a.sack_to_mn(old))

        if k.confirm == "before":
            cap.add(start + 0.501, ack)
            informed(start + 0.502)
        if k.confirm.startswith("racing"):
            cap.add(t - 0.0004, a.data_from_mn(old))
            cap.add(t - 0.0003, ack)
            cap.add(t, a.sack_data_to_mn(old))
            informed(t + 0.002)
            if k.confirm == "racing-informed":
                cap.add(t + 0.003, a.data_to_mn(old))
        else:
            cap.add(t, a.data_to_mn(old))
        if k.confirm == "late":
            cap.add(t + 0.001, ack)
            informed(t + 0.002)
        t += 0.01
    upd = dns_update(0x4D4E, ZONE, MN_NAME, new, signer=MN_NAME if k.signed else None)
    cap.add(t, bytes(_eth() / _ipl(k.v6, new, dns) / UDP(sport=40000, dport=53) / upd))
    resp = dns_update_response(0x4D4E, ZONE, k.dns_rcode)
    cap.add(t + 0.002, bytes(_eth() / _ipl(k.v6, dns, new) / UDP(sport=53, dport=40000) / resp))
    t += 0.01
    for _ in range(3):
        cap.add(t, a.data_to_mn(old if k.data_to_old else new))
        cap.add(t + 0.0005, a.sack_from_mn(new))
        t += 0.01
    pkt, serial, _corr = a.asconf(new, "delete", old, auth=k.auth)
    cap.add(t, pkt)
    cap.add(t + 0.002, a.asconf_ack(new, serial))
    t += 0.01
    for _ in range(3):
        cap.add(t, a.data_to_mn(new))
        cap.add(t + 0.001, a.data_from_mn(new))
        t += 0.01
    if k.abort:
        cap.add(t, a.abort_from_cn(new))
    return cap


def _ipl(v6: bool, src: str, dst: str) -> object:
    return IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)


MN_MAC = "02:00:00:00:00:aa"


def router_advert(src: str, prefix: str, *, plen: int = 64) -> bytes:
    """An RA from ``src`` (link-local) to all nodes, advertising ``prefix``."""
    return bytes(
        Ether(src="02:00:00:00:00:a2", dst="33:33:00:00:00:01")
        / IPv6(src=src, dst="ff02::1", hlim=255)
        / ICMPv6ND_RA(routerlifetime=1800)
        / ICMPv6NDOptPrefixInfo(prefix=prefix, prefixlen=plen)
    )


def router_solicit(src: str = "fe80::aa") -> bytes:
    """The RS the MN's agent sends at link-up (to all routers)."""
    return bytes(
        Ether(src=MN_MAC, dst="33:33:00:00:00:02") / IPv6(src=src, dst="ff02::2", hlim=255) / ICMPv6ND_RS()
    )


def dhcp_message(kind: str, xid: int, server: str, *, to_server: bool, yiaddr: str = "0.0.0.0") -> bytes:
    """A broadcast DHCP message of ``kind`` ("discover", "offer", "request", "ack")."""
    opts: list[object] = [("message-type", kind)]
    if kind != "discover":
        opts.append(("server_id", server))
    opts.append("end")
    if to_server:
        ip = IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
    else:
        ip = IP(src=server, dst="255.255.255.255") / UDP(sport=67, dport=68)
    chaddr = bytes.fromhex(MN_MAC.replace(":", ""))
    boot = BOOTP(op=1 if to_server else 2, xid=xid, yiaddr=yiaddr, chaddr=chaddr)
    return bytes(Ether(src=MN_MAC, dst="ff:ff:ff:ff:ff:ff") / ip / boot / DHCP(options=opts))


def dhcp_exchange(cap: Capture, t: float, xid: int, server: str, addr: str, step: float = 0.005) -> None:
    """DISCOVER, OFFER, REQUEST, ACK of ``addr``, ``step`` seconds apart from ``t``."""
    cap.add(t, dhcp_message("discover", xid, server, to_server=True))
    cap.add(t + step, dhcp_message("offer", xid, server, to_server=False, yiaddr=addr))
    cap.add(t + 2 * step, dhcp_message("request", xid, server, to_server=True))
    cap.add(t + 3 * step, dhcp_message("ack", xid, server, to_server=False, yiaddr=addr))


def agent_events(v6: bool = False, *, start: float = 1_700_000_000.0) -> list[dict[str, object]]:
    """Agent events matching ``trash_capture``'s handover (link up 100 ms before ADD_IP)."""
    _old, new, _cn, _dns = addresses(v6)
    prefix = "/64" if v6 else "/24"
    return [
        {"event": "lost", "mono": 10.85, "wall": start + 0.85, "ifname": "wlan0", "addresses": []},
        {"event": "link_up", "mono": 10.9, "wall": start + 0.9, "ifname": "eth1", "addresses": []},
        {"event": "detected", "mono": 10.95, "wall": start + 0.95, "ifname": "eth1",
         "addresses": []},
        {"event": "configured", "mono": 10.98, "wall": start + 0.98, "ifname": "eth1",
         "addresses": [new + prefix]},
    ]  # fmt: skip
