"""SSLKEYLOGFILE text (the NSS key log format, draft-ietf-tls-keylogfile): ``LABEL
<client random hex> <secret hex>`` per line, ``#`` comments.

Pure: the text in, a ``Keylog`` out. QUIC uses the TLS 1.3 labels (RFC 9001 §5.1): the
Handshake and first 1-RTT secrets of each side; later 1-RTT secrets are derived from them
(key updates, RFC 9001 §6). Lines that do not parse are counted, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CLIENT_HANDSHAKE = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HANDSHAKE = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_1RTT = "CLIENT_TRAFFIC_SECRET_0"
SERVER_1RTT = "SERVER_TRAFFIC_SECRET_0"
QUIC_LABELS = (CLIENT_HANDSHAKE, SERVER_HANDSHAKE, CLIENT_1RTT, SERVER_1RTT)


@dataclass(frozen=True, slots=True)
class Keylog:
    """Secrets by ClientHello random, then by label."""

    secrets: dict[bytes, dict[str, bytes]] = field(default_factory=dict)
    lines: int = 0  # key lines read
    bad_lines: int = 0  # lines that are neither a comment nor ``LABEL HEX HEX``

    def of(self, client_random: bytes) -> dict[str, bytes]:
        return self.secrets.get(client_random, {})


def parse_keylog(text: str) -> Keylog:
    secrets: dict[bytes, dict[str, bytes]] = {}
    lines = bad = 0
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            if len(parts) != 3:
                raise ValueError(line)
            random, secret = bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
        except ValueError:
            bad += 1
            continue
        lines += 1
        secrets.setdefault(random, {})[parts[0]] = secret
    return Keylog(secrets, lines, bad)


__all__ = ["CLIENT_1RTT", "CLIENT_HANDSHAKE", "QUIC_LABELS", "SERVER_1RTT", "SERVER_HANDSHAKE", "Keylog",
           "parse_keylog"]
