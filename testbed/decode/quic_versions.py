"""QUIC's version numbers and TLS cipher suites as names: the constants the rest of the QUIC
decoder and the checker share, without loading the AEAD code (``quic_crypto``)."""

from __future__ import annotations

V1 = 0x00000001
V2 = 0x6B3343CF  # RFC 9369

TLS_AES_128_GCM_SHA256 = 0x1301
TLS_AES_256_GCM_SHA384 = 0x1302
TLS_CHACHA20_POLY1305_SHA256 = 0x1303
SUITE_NAMES = {
    TLS_AES_128_GCM_SHA256: "AES-128-GCM", TLS_AES_256_GCM_SHA384: "AES-256-GCM",
    TLS_CHACHA20_POLY1305_SHA256: "ChaCha20-Poly1305",
}  # fmt: skip
TAG_LEN = 16  # every QUIC AEAD's tag (RFC 9001 §5.3)
SAMPLE_LEN = 16  # header protection sample (RFC 9001 §5.4.2)

__all__ = ["SAMPLE_LEN", "SUITE_NAMES", "TAG_LEN", "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
           "TLS_CHACHA20_POLY1305_SHA256", "V1", "V2"]
