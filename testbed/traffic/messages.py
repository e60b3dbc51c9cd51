"""Numbered messages, the one payload every transport's traffic app carries: framing, stream
continuity (gaps, duplicates, late arrivals) and the server's per-message records (arrival time
and source address), written as JSON that readers never see half-written.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b"TBSC"
HEADER = struct.Struct("!4sIQd")  # magic, total length, sequence number, sender unix time
MAX_RECORDS = 200_000
ECHO_SIZE = 32  # bytes of each server reply (--echo)


@dataclass(frozen=True)
class Message:
    seq: int
    sent: float
    length: int


def encode_message(seq: int, size: int, now: float) -> bytes:
    """A message of exactly ``max(size, header)`` bytes (padding is zeros)."""
    size = max(size, HEADER.size)
    return HEADER.pack(MAGIC, size, seq, now) + b"\0" * (size - HEADER.size)


def decode_message(data: bytes) -> Message:
    if len(data) < HEADER.size:
        raise ValueError(f"short message ({len(data)} bytes)")
    magic, length, seq, sent = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}")
    if length != len(data):
        raise ValueError(f"length field {length} but {len(data)} bytes received")
    return Message(seq, sent, length)


def split_messages(buf: bytearray) -> list[Message]:
    """The whole messages at the front of a byte stream's buffer, taken out of it (a stream
    has no boundaries: each message's length field frames it). Raises ValueError when the
    stream is out of step (no magic where a message should start)."""
    out = []
    while len(buf) >= HEADER.size:
        magic, length = HEADER.unpack_from(buf)[:2]
        if magic != MAGIC or length < HEADER.size:
            raise ValueError(f"stream out of step (magic {bytes(magic)!r}, length {length})")
        if len(buf) < length:
            break
        out.append(decode_message(bytes(buf[:length])))
        del buf[:length]
    return out


@dataclass
class SeqTracker:
    """Continuity of a sequence-numbered stream (pure; time is passed in)."""

    expected: int = 0
    received: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # [first missing, last missing]
    duplicates: list[int] = field(default_factory=list)
    reordered: list[int] = field(default_factory=list)  # arrived late, filling a gap
    _missing: set[int] = field(default_factory=set)

    def feed(self, seq: int) -> str:
        """Account one arrival; returns "ok", "gap", "dup" or "late"."""
        self.received += 1
        if seq == self.expected:
            self.expected += 1
            return "ok"
        if seq > self.expected:
            self.gaps.append((self.expected, seq - 1))
            self._missing.update(range(self.expected, seq))
            self.expected = seq + 1
            return "gap"
        if seq in self._missing:
            self._missing.discard(seq)
            self.reordered.append(seq)
            return "late"
        self.duplicates.append(seq)
        return "dup"

    @property
    def missing(self) -> int:
        return len(self._missing)


@dataclass
class ServerStats:
    """What the server reports; ``messages`` rows are [seq, arrival unix time, source, tsn]."""

    role: str = "server"
    peer: str = ""
    received: int = 0
    bytes: int = 0
    missing: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    reordered: list[int] = field(default_factory=list)
    sources: dict[str, int] = field(default_factory=dict)
    source_switches: list[dict[str, Any]] = field(default_factory=list)
    first_arrival: float = 0.0
    last_arrival: float = 0.0
    closed: bool = False
    error: str = ""
    echoed: int = 0
    messages: list[tuple[int, float, str, int]] = field(default_factory=list)


def note_arrival(stats: ServerStats, tracker: SeqTracker, msg: Message, t: float, src: str, tsn: int) -> None:
    """Fold one message into the stats (pure)."""
    tracker.feed(msg.seq)
    if stats.received == 0:
        stats.first_arrival = t
    elif stats.messages and stats.messages[-1][2] != src:
        stats.source_switches.append({"seq": msg.seq, "t": t, "from": stats.messages[-1][2], "to": src})
    stats.received += 1
    stats.bytes += msg.length
    stats.last_arrival = t
    stats.sources[src] = stats.sources.get(src, 0) + 1
    stats.missing = tracker.missing
    stats.gaps, stats.duplicates, stats.reordered = tracker.gaps, tracker.duplicates, tracker.reordered
    if len(stats.messages) < MAX_RECORDS:
        stats.messages.append((msg.seq, t, src, tsn))


def write_json(path: Path, obj: Any) -> None:
    """Atomic write: readers (the host, over 9p) never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


class Periodic:
    """Writes stats every ``period`` s and on SIGUSR1 from a helper thread (not in the handler)."""

    def __init__(self, path: Path, snapshot: Any, period: float = 1.0) -> None:
        self.path, self.snapshot, self.period = path, snapshot, period
        self.kick = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        signal.signal(signal.SIGUSR1, lambda *_: self.kick.set())
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            self.kick.wait(self.period)
            self.kick.clear()
            self.write()

    def write(self) -> None:
        with self.lock:
            write_json(self.path, self.snapshot())
