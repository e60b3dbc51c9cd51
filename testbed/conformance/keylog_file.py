"""Where a run's TLS keys are: ``--keylog FILE``, else ``keylog.txt`` beside the captures or in
their parent directory (a run writes the endpoints' merged SSLKEYLOGFILE there).

The file is read here; ``testbed.decode.keylog`` parses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from testbed.decode.keylog import Keylog, parse_keylog
from testbed.errors import ConfigError

KEYLOG_NAME = "keylog.txt"


def keylog_candidates(items: Iterable[str | Path]) -> list[Path]:
    """The places looked at, in order: beside each capture (a directory given is where the
    captures are), then the parent of that."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        home = p if p.is_dir() else p.parent
        for d in (home, home.parent):
            cand = d / KEYLOG_NAME
            if cand not in out:
                out.append(cand)
    return out


def find_keylog(items: Iterable[str | Path]) -> tuple[Path | None, list[Path]]:
    """(the keylog found or None, the places looked at)."""
    looked = keylog_candidates(items)
    return next((c for c in looked if c.is_file()), None), looked


def read_keylog(path: Path, source: str = "--keylog") -> Keylog:
    """Read and parse one SSLKEYLOGFILE; a missing or unreadable file is a ``ConfigError``."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError as e:
        raise ConfigError(source, str(path), "no such keylog file",
                          "give the SSLKEYLOGFILE the QUIC endpoints wrote, e.g. the run's keylog.txt") from e
    except OSError as e:
        raise ConfigError(source, str(path), f"cannot read the keylog ({e.strerror})") from e
    return parse_keylog(text)


def keys_beside(items: Iterable[str | Path]) -> Keylog | None:
    """The keylog found beside ``items``, for a reader that draws what it can (the report):
    None when there is none or it cannot be read."""
    path, _looked = find_keylog(items)
    if path is None:
        return None
    try:
        return read_keylog(path)
    except ConfigError:
        return None


__all__ = ["KEYLOG_NAME", "find_keylog", "keylog_candidates", "keys_beside", "read_keylog"]
