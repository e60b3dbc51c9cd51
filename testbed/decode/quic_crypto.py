"""QUIC packet protection (RFC 9001 §5, RFC 9369 §3.3): key schedule, AEAD, header protection.

Pure: secrets in, keys out; no I/O. Versions 1 and 2 differ only in the Initial salt, the HKDF
labels ("quic key" / "quicv2 key"...), the Retry integrity key and the long-header type bits
(``quic_packet``). Initial keys come from the client's first Destination Connection ID
(RFC 9001 §5.2); Handshake and 1-RTT keys from the TLS secrets of an SSLKEYLOGFILE
(``keylog``); each key update (§6) derives the next 1-RTT secret with the "ku" label, and the
header protection key stays that of the first 1-RTT secret (§6.1).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from testbed.decode.quic_versions import (
    SAMPLE_LEN,
    SUITE_NAMES,
    TAG_LEN,
    TLS_AES_128_GCM_SHA256,
    TLS_AES_256_GCM_SHA384,
    TLS_CHACHA20_POLY1305_SHA256,
    V1,
    V2,
)

# suite → (hash, AEAD key length)
_SUITES: dict[int, tuple[str, int]] = {
    TLS_AES_128_GCM_SHA256: ("sha256", 16),
    TLS_AES_256_GCM_SHA384: ("sha384", 32),
    TLS_CHACHA20_POLY1305_SHA256: ("sha256", 32),
}
INITIAL_SUITE = TLS_AES_128_GCM_SHA256  # RFC 9001 §5.2


@dataclass(frozen=True, slots=True)
class VersionKeys:
    """What a QUIC version fixes for packet protection."""

    salt: bytes  # Initial secret salt
    prefix: str  # of the HKDF labels: "quic " or "quicv2 "
    retry_key: bytes  # Retry integrity tag key and nonce (RFC 9001 §5.8)
    retry_nonce: bytes


VERSIONS: dict[int, VersionKeys] = {
    V1: VersionKeys(bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"), "quic ",
                    bytes.fromhex("be0c690b9f66575a1d766b54e368c84e"),
                    bytes.fromhex("461599d35d632bf2239825bb")),
    V2: VersionKeys(bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"), "quicv2 ",
                    bytes.fromhex("8fb4b01b56ac48e260fbcbcead7ccc92"),
                    bytes.fromhex("d86969bc2d7c6d9990efb04a")),
}


def hkdf_extract(salt: bytes, ikm: bytes, hash_name: str = "sha256") -> bytes:
    return hmac.new(salt, ikm, hash_name).digest()


def hkdf_expand_label(secret: bytes, label: str, length: int, hash_name: str = "sha256",
                      context: bytes = b"") -> bytes:
    """TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1), as QUIC uses it (RFC 9001 §5.1)."""
    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hash_name).digest()
        out += block
        i += 1
    return out[:length]


def _hp_mask(suite: int, hp: bytes) -> Callable[[bytes], bytes]:
    """The 5-byte header protection mask for a 16-byte sample (§5.4.3, §5.4.4)."""
    if suite == TLS_CHACHA20_POLY1305_SHA256:
        zeros = bytes(5)

        def chacha(sample: bytes) -> bytes:  # counter and nonce are the sample itself
            return Cipher(algorithms.ChaCha20(hp, sample), None).encryptor().update(zeros)

        return chacha
    ecb = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    return ecb.update  # one block in, one block out; the caller keeps 5 bytes


@dataclass(frozen=True, slots=True)
class Protection:
    """One direction's keys at one encryption level (and key phase, for 1-RTT)."""

    suite: int
    secret: bytes
    key: bytes
    iv: bytes
    hp: bytes
    version: int = V1
    generation: int = 0  # 1-RTT key updates so far (§6); the key phase bit is its low bit
    _aead: AESGCM | ChaCha20Poly1305 = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    mask: Callable[[bytes], bytes] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def suite_name(self) -> str:
        return SUITE_NAMES.get(self.suite, f"suite {self.suite:#06x}")

    def open(self, pn: int, header: bytes, ciphertext: bytes) -> bytes | None:
        """The packet's plaintext, or None when the AEAD tag does not verify (§5.3)."""
        nonce = (int.from_bytes(self.iv, "big") ^ pn).to_bytes(12, "big")
        try:
            return self._aead.decrypt(nonce, ciphertext, header)
        except InvalidTag:
            return None

    def seal(self, pn: int, header: bytes, plaintext: bytes) -> bytes:
        """The AEAD output for a packet (tests build packets with it)."""
        nonce = (int.from_bytes(self.iv, "big") ^ pn).to_bytes(12, "big")
        return self._aead.encrypt(nonce, plaintext, header)


def protection(secret: bytes, suite: int, version: int = V1, generation: int = 0,
               hp: bytes | None = None) -> Protection:
    """Packet protection keys from a traffic secret (§5.1); ``hp`` keeps a given header
    protection key (a key update leaves it unchanged, §6.1). Raises ``KeyError`` for an unknown
    cipher suite or version."""
    hash_name, klen = _SUITES[suite]
    prefix = VERSIONS[version].prefix
    key = hkdf_expand_label(secret, prefix + "key", klen, hash_name)
    iv = hkdf_expand_label(secret, prefix + "iv", 12, hash_name)
    if hp is None:
        hp = hkdf_expand_label(secret, prefix + "hp", klen, hash_name)
    aead = ChaCha20Poly1305(key) if suite == TLS_CHACHA20_POLY1305_SHA256 else AESGCM(key)
    return Protection(suite, secret, key, iv, hp, version, generation, aead, _hp_mask(suite, hp))


def next_generation(p: Protection) -> Protection:
    """The keys after a key update (§6.1): secret_<n+1> = HKDF-Expand-Label(secret_<n>, "quic ku")."""
    hash_name, _klen = _SUITES[p.suite]
    label = VERSIONS[p.version].prefix + "ku"
    secret = hkdf_expand_label(p.secret, label, len(p.secret), hash_name)
    return protection(secret, p.suite, p.version, p.generation + 1, hp=p.hp)


def initial_secrets(dcid: bytes, version: int = V1) -> tuple[bytes, bytes]:
    """(client, server) Initial secrets from the client's first Destination Connection ID
    (§5.2); after a Retry, from the Retry's Source Connection ID (RFC 9000 §17.2.5)."""
    initial = hkdf_extract(VERSIONS[version].salt, dcid)
    return (hkdf_expand_label(initial, "client in", 32), hkdf_expand_label(initial, "server in", 32))


def initial_protection(dcid: bytes, version: int = V1) -> tuple[Protection, Protection]:
    """(client, server) Initial packet protection."""
    client, server = initial_secrets(dcid, version)
    return (protection(client, INITIAL_SUITE, version), protection(server, INITIAL_SUITE, version))


def retry_tag_valid(packet: bytes, odcid: bytes, version: int) -> bool:
    """A Retry packet's integrity tag (its last 16 bytes) verifies for the client's original
    Destination Connection ID (RFC 9001 §5.8, RFC 9369 §3.3.3)."""
    v = VERSIONS.get(version)
    if v is None or len(packet) < TAG_LEN:
        return False
    pseudo = bytes([len(odcid)]) + odcid + packet[:-TAG_LEN]
    try:
        AESGCM(v.retry_key).decrypt(v.retry_nonce, packet[-TAG_LEN:], pseudo)
    except InvalidTag:
        return False
    return True


def secret_hash_len(suite: int) -> int:
    """Length of the traffic secrets of ``suite`` (its hash's output)."""
    return hashlib.new(_SUITES[suite][0]).digest_size


__all__ = [
    "INITIAL_SUITE", "SAMPLE_LEN", "SUITE_NAMES", "TAG_LEN", "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "V1", "V2", "VERSIONS", "Protection",
    "hkdf_expand_label", "initial_protection", "initial_secrets", "next_generation", "protection",
    "retry_tag_valid", "secret_hash_len",
]  # fmt: skip
