"""The few TLS 1.3 handshake fields the QUIC decoder needs (RFC 8446 §4.1.2, §4.1.3): the
ClientHello's random, which names the connection in an SSLKEYLOGFILE, and the cipher suite the
ServerHello chose, which fixes the AEAD of the Handshake and 1-RTT packets.

Pure: the start of a CRYPTO stream in (QUIC carries the handshake in CRYPTO frames, RFC 9001
§4), the field or None out (the message is not, or not yet, all there).
"""

from __future__ import annotations

CLIENT_HELLO, SERVER_HELLO = 1, 2
_RANDOM_AT = 4 + 2  # handshake header (type, 24-bit length), then legacy_version


def client_hello_random(crypto: bytes) -> bytes | None:
    """The 32-byte random of the ClientHello that opens ``crypto``."""
    if len(crypto) < _RANDOM_AT + 32 or crypto[0] != CLIENT_HELLO:
        return None
    return bytes(crypto[_RANDOM_AT:_RANDOM_AT + 32])


def server_hello_suite(crypto: bytes) -> int | None:
    """The cipher suite of the ServerHello that opens ``crypto``."""
    p = _RANDOM_AT + 32
    if len(crypto) < p + 1 or crypto[0] != SERVER_HELLO:
        return None
    p += 1 + crypto[p]  # legacy_session_id_echo
    if len(crypto) < p + 2:
        return None
    return int.from_bytes(crypto[p:p + 2], "big")


__all__ = ["client_hello_random", "server_hello_suite"]
