"""Pure decoders for the lab's captures: bytes → frozen dataclasses.

Only ``pcap`` does I/O (reading capture files); ``mptcp`` also computes the keyed values MPTCP
options carry (tokens, HMACs) from keys the capture shows. Decoders never raise on bad input:
they return a record whose ``malformed`` field names the fault, so a checker can count and
report it.

The names below are loaded on first use (PEP 562): the mobility agent on a node imports
``decode.nd`` and ``decode.dhcp`` alone and does not pay for the SCTP, DNS and pcap modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    "dhcp": ("DhcpMessage", "decode_dhcp"),
    "dns": ("DNSMessage", "Record", "SigRdata", "TsigRdata", "decode_dns"),
    "link": ("IPHeader", "decode_ip"),
    "nd": ("PrefixInfo", "RouterAdvert", "RouterSolicit", "decode_nd", "decode_ra", "decode_rs"),
    "mptcp": ("AddAddr", "Dss", "MpCapable", "MpJoin", "MpPrio", "RemoveAddr", "decode_mptcp"),
    "packet": ("Packet", "decode_frame"),
    "pcap": ("Frame", "PcapReader", "UnusableCapture", "iter_frames"),
    "sctp": (
        "AsconfAckChunk", "AsconfChunk", "AsconfParam", "AuthChunk", "DataChunk", "SCTPPacket",
        "decode_chunk", "decode_sctp",
    ),
    "tcp": ("TcpSegment", "decode_tcp"),
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'testbed.decode' has no attribute {name!r}")
    return getattr(importlib.import_module(f"testbed.decode.{module}"), name)
