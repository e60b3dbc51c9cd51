"""TLS secrets of a run's QUIC endpoints, in the SSLKEYLOGFILE format: one
``LABEL <ClientHello random, hex> <secret, hex>`` per line, ``#`` comments. With them a reader of
the captures derives the handshake and 1-RTT packet keys (RFC 9001 §5.1); Initial keys need none
(§5.2).

Each endpoint writes ``keylog-<node>.txt``; ``merge`` puts them into the run's ``keylog.txt``
beside the captures, every secret once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

LINE = re.compile(r"^([A-Z_0-9]+) ([0-9a-fA-F]{64}) ([0-9a-fA-F]{32,})$")
MERGED = "keylog.txt"


def node_file(node: str) -> str:
    return f"keylog-{node}.txt"


def secrets(text: str) -> list[str]:
    """The key lines of a keylog (comments, blanks and anything malformed left out)."""
    return [line.strip() for line in text.splitlines() if LINE.match(line.strip())]


def merge(sources: Mapping[str, Path], out: Path) -> dict[str, int]:
    """Write ``out`` from each node's keylog (those that exist); returns the key lines each
    contributed that no earlier one had."""
    seen: set[str] = set()
    lines = [f"# TLS secrets of the run's QUIC endpoints ({', '.join(sorted(sources))}), "
             "SSLKEYLOGFILE format"]
    counts: dict[str, int] = {}
    for node, path in sources.items():
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        fresh = [s for s in secrets(text) if s not in seen]
        seen.update(fresh)
        counts[node] = len(fresh)
        lines += fresh
    out.write_text("\n".join(lines) + "\n")
    return counts
