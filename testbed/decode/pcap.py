"""Streaming reader for classic pcap and pcapng files: the only module of ``decode`` doing I/O.

Hand-rolled rather than scapy's ``PcapReader``: scapy builds a full packet object per record and
reads about 20-50k packets/s, far too slow for the million-packet captures the checker must handle.
This reader slices records out of a large read buffer with ``struct.unpack_from`` and yields plain
tuples, keeping memory bounded by the buffer size whatever the file size.

Supported: classic pcap (both byte orders, micro- and nanosecond timestamps) and pcapng (SHB,
IDB with ``if_tsresol``, EPB, SPB, the obsolete PB; several sections and byte orders). Link types
are passed through; ``testbed.decode.link`` understands them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from testbed.errors import TestbedError

# Link types (https://www.tcpdump.org/linktypes.html) the decoders understand.
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_CHUNK = 1 << 20  # bytes per read; bounds memory whatever the file size
_MAX_RECORD = 1 << 24  # a record larger than this is corruption, not a packet

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


PcapRecord = tuple[float, int, int, int, bytes, int]  # (time, idx, frame no, linktype, data, iface)


class UnusableCapture(TestbedError):
    """A capture file that cannot be read at all (missing, not pcap/pcapng, empty)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured frame, as handed to ``testbed.decode.packet.decode_frame``."""

    index: int  # 1-based frame number, as Wireshark counts
    time: float  # seconds since the epoch
    linktype: int
    data: bytes
    interface: int  # pcapng interface id; 0 for classic pcap


class PcapReader:
    """Iterate over ``(time, linktype, data, interface)`` tuples of one pcap or pcapng file.

    Problems that stop reading early (truncated last record, corrupt length) do not raise: they
    are appended to ``problems`` so a checker can report them next to what was read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.problems: list[str] = []
        self.frame_count = 0  # records read, once iteration has ended
        try:
            self._f: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        except OSError as e:
            raise UnusableCapture(f"{self.path}: cannot open ({e.strerror}); check the path") from e
        head = self._f.read(4)
        if head in _PCAP_MAGICS:
            self.format = "pcap"
        elif head == _PCAPNG_SHB:
            self.format = "pcapng"
        else:
            self._f.close()
            raise UnusableCapture(
                f"{self.path}: not a pcap or pcapng file (magic {head.hex() or 'empty'}); "
                "capture with tcpdump -w"
            )
        self._head = head

    def __enter__(self) -> PcapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._f.close()

    def __iter__(self) -> Iterator[tuple[float, int, bytes, int]]:
        for ts, _idx, _n, lt, data, iface in self.numbered():
            yield ts, lt, data, iface

    def numbered(self, idx: int = 0) -> Iterator[PcapRecord]:
        """Records as ``(time, idx, frame number, linktype, data, interface)``.

        The shape the checker's merge and hot loop use: numbering here saves a generator layer
        per packet (~0.5 us, a sixth of the checker's time).
        """
        if self.format == "pcap":
            return self._iter_pcap(idx)
        return self._iter_pcapng(idx)

    def frames(self) -> Iterator[Frame]:
        """Like iteration, but as ``Frame`` dataclasses (convenient, slower)."""
        for i, (ts, lt, data, iface) in enumerate(self, 1):
            yield Frame(i, ts, lt, data, iface)

    # -- classic pcap -------------------------------------------------------------------------
    def _iter_pcap(self, idx: int) -> Iterator[PcapRecord]:
        endian, scale = _PCAP_MAGICS[self._head]
        rest = self._f.read(20)
        if len(rest) < 20:
            self.problems.append("truncated pcap file header")
            return
        _vmaj, _vmin, _zone, _sig, _snap, network = struct.unpack(endian + "HHiIII", rest)
        linktype = network & 0x0FFFFFFF  # upper bits may carry FCS length flags
        hdr = struct.Struct(endian + "IIII")
        unpack_from = hdr.unpack_from
        read = self._f.read
        buf = read(_CHUNK)
        nbuf = len(buf)
        pos = 0
        n = 0
        try:
            while True:
                if pos + 16 > nbuf:
                    buf = buf[pos:] + read(_CHUNK)
                    nbuf = len(buf)
                    pos = 0
                    if nbuf < 16:
                        if buf:
                            self.problems.append(f"truncated record header at end ({nbuf} bytes)")
                        return
                sec, frac, incl, _orig = unpack_from(buf, pos)
                if incl > _MAX_RECORD:
                    self.problems.append(f"corrupt record length {incl}; stopped reading")
                    return
                end = pos + 16 + incl
                if end > nbuf:
                    buf = buf[pos:] + read(max(_CHUNK, incl + 16))
                    nbuf = len(buf)
                    pos, end = 0, 16 + incl
                    if end > nbuf:
                        self.problems.append(f"truncated last record ({nbuf - 16} of {incl} bytes)")
                        return
                n += 1
                yield sec + frac * scale, idx, n, linktype, buf[pos + 16 : end], 0
                pos = end
        finally:
            self.frame_count = n

    # -- pcapng -------------------------------------------------------------------------------
    def _iter_pcapng(self, idx: int) -> Iterator[PcapRecord]:
        read = self._f.read
        buf = self._head + read(_CHUNK)
        pos = 0
        endian = "<"
        ifaces: list[tuple[int, float, int]] = []  # (linktype, ts scale, snaplen)
        last_ts = 0.0
        n = 0
        try:
            while True:
                if pos + 12 > len(buf):
                    buf = buf[pos:] + read(_CHUNK)
                    pos = 0
                    if len(buf) < 12:
                        if buf:
                            self.problems.append(f"truncated block header at end ({len(buf)} bytes)")
                        return
                if buf[pos : pos + 4] == _PCAPNG_SHB:
                    bom = buf[pos + 8 : pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        endian = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        endian = ">"
                    else:
                        self.problems.append("corrupt section header byte-order magic; stopped")
                        return
                    ifaces = []
                btype, blen = struct.unpack_from(endian + "II", buf, pos)
                if blen < 12 or blen % 4 or blen > _MAX_RECORD:
                    self.problems.append(f"corrupt block length {blen}; stopped reading")
                    return
                end = pos + blen
                if end > len(buf):
                    buf = buf[pos:] + read(max(_CHUNK, blen))
                    pos, end = 0, blen
                    if end > len(buf):
                        self.problems.append(f"truncated last block ({len(buf)} of {blen} bytes)")
                        return
                body = pos + 8
                if btype == 6 or btype == 2:  # Enhanced Packet Block, obsolete Packet Block
                    if btype == 6:
                        iface, hi, lo, cap, _orig = struct.unpack_from(endian + "IIIII", buf, body)
                    else:
                        iface, _drops, hi, lo, cap, _orig = struct.unpack_from(endian + "HHIIII", buf, body)
                    if iface >= len(ifaces) or body + 20 + cap > end - 4:
                        kind = "enhanced packet" if btype == 6 else "packet"
                        self.problems.append(f"bad {kind} block at offset {pos}; skipped")
                    else:
                        lt, scale, _snap = ifaces[iface]
                        last_ts = ((hi << 32) | lo) * scale
                        n += 1
                        yield last_ts, idx, n, lt, buf[body + 20 : body + 20 + cap], iface
                elif btype == 3:  # Simple Packet Block: no timestamp, interface 0
                    (orig,) = struct.unpack_from(endian + "I", buf, body)
                    if not ifaces:
                        self.problems.append("simple packet block before any interface; skipped")
                    else:
                        lt, _scale, snap = ifaces[0]
                        cap = min(orig, blen - 16, snap or orig)
                        n += 1
                        yield last_ts, idx, n, lt, buf[body + 4 : body + 4 + cap], 0
                elif btype == 1:  # Interface Description Block
                    lt, _res, snap = struct.unpack_from(endian + "HHI", buf, body)
                    ifaces.append((lt, _tsresol(buf, body + 8, end - 4, endian), snap))
                pos = end
        finally:
            self.frame_count = n


def _tsresol(buf: bytes, off: int, end: int, endian: str) -> float:
    """Timestamp unit of an IDB from its ``if_tsresol`` option (code 9); default microseconds."""
    while off + 4 <= end:
        code, length = struct.unpack_from(endian + "HH", buf, off)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = buf[off + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        off += 4 + ((length + 3) & ~3)
    return 1e-6


def iter_frames(path: str | Path) -> Iterator[Frame]:
    """Convenience: all frames of one file as ``Frame`` dataclasses."""
    with PcapReader(path) as r:
        yield from r.frames()
