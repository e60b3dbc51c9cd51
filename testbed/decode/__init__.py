"""Pure decoders for the lab's captures: bytes → frozen dataclasses.

Only ``pcap`` does I/O (reading capture files). Decoders never raise on bad input: they return a
record whose ``malformed`` field names the fault, so a checker can count and report it.
"""

from testbed.decode.dhcp import DhcpMessage, decode_dhcp
from testbed.decode.dns import DNSMessage, Record, SigRdata, TsigRdata, decode_dns
from testbed.decode.link import IPHeader, decode_ip
from testbed.decode.nd import PrefixInfo, RouterAdvert, RouterSolicit, decode_nd, decode_ra, decode_rs
from testbed.decode.packet import Packet, decode_frame
from testbed.decode.pcap import Frame, PcapReader, UnusableCapture, iter_frames
from testbed.decode.sctp import (
    AsconfAckChunk,
    AsconfChunk,
    AsconfParam,
    AuthChunk,
    DataChunk,
    SCTPPacket,
    decode_chunk,
    decode_sctp,
)

__all__ = [
    "AsconfAckChunk", "AsconfChunk", "AsconfParam", "AuthChunk", "DNSMessage", "DataChunk",
    "DhcpMessage", "Frame", "IPHeader", "Packet", "PcapReader", "PrefixInfo", "Record",
    "RouterAdvert", "RouterSolicit", "SCTPPacket", "SigRdata", "TsigRdata", "UnusableCapture",
    "decode_chunk", "decode_dhcp", "decode_dns", "decode_frame", "decode_ip", "decode_nd",
    "decode_ra", "decode_rs", "decode_sctp", "iter_frames",
]  # fmt: skip
