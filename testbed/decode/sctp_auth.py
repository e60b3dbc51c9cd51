"""SCTP-AUTH (RFC 4895) key derivation and HMAC computation: bytes in, bytes out, no I/O.

Hand-rolled because no library derives the association key (scapy builds AUTH chunks but leaves
the HMAC to the caller); the steps are those of RFC 4895 §6.1-6.2, with the key vector order of
Linux (``sctp_auth_compare_vectors``: the numerically smaller vector first).

- Each endpoint's *key vector* is its RANDOM, CHUNKS and HMAC-ALGO parameters from INIT or
  INIT-ACK, concatenated whole (type, length, value) without padding; CHUNKS may be absent.
- The *association shared key* is the endpoint-pair shared key (key id 0 is empty unless both
  ends configured one) followed by the smaller key vector, then the larger.
- The HMAC covers the AUTH chunk, with its HMAC field zeroed, and every byte after it in the
  packet. So whoever saw INIT and INIT-ACK, which carry the vectors in the clear, can compute a
  valid HMAC for key 0 unless a shared key was configured on both ends.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable

from testbed.decode.sctp import Param

RANDOM, CHUNKS, HMAC_ALGO = 0x8002, 0x8003, 0x8004
HMAC_SHA1, HMAC_SHA256 = 1, 3
DIGESTS = {HMAC_SHA1: hashlib.sha1, HMAC_SHA256: hashlib.sha256}
AUTH_HEADER = 8  # chunk header (4) + shared key id (2) + HMAC id (2)


def key_vector(params: Iterable[Param]) -> bytes | None:
    """RANDOM || CHUNKS || HMAC-ALGO of one endpoint; None when it offered no AUTH (no RANDOM
    or HMAC-ALGO)."""
    found = {p.type: p for p in params if p.type in (RANDOM, CHUNKS, HMAC_ALGO)}
    if RANDOM not in found or HMAC_ALGO not in found:
        return None
    return b"".join(struct.pack("!HH", t, len(found[t].value) + 4) + found[t].value
                    for t in (RANDOM, CHUNKS, HMAC_ALGO) if t in found)


def _compare(v1: bytes, v2: bytes) -> int:
    """As Linux compares key vectors: numerically, leading zero bytes ignored."""
    a, b = v1.lstrip(b"\0"), v2.lstrip(b"\0")
    if len(a) != len(b):
        return len(a) - len(b)
    return (a > b) - (a < b)


def association_key(v1: bytes, v2: bytes, shared: bytes = b"") -> bytes:
    """The association shared key of RFC 4895 §6.1 for the two endpoints' key vectors."""
    first, last = (v1, v2) if _compare(v1, v2) < 0 else (v2, v1)
    return shared + first + last


def covered(buf: bytes, auth_at: int, auth_len: int, end: int) -> bytes:
    """What an AUTH chunk at ``buf[auth_at:]`` authenticates: the chunk with its HMAC zeroed,
    then the rest of the packet up to ``end``."""
    head = bytes(buf[auth_at:auth_at + AUTH_HEADER])
    return head + bytes(max(auth_len - AUTH_HEADER, 0)) + bytes(buf[auth_at + auth_len:end])


def compute(hmac_id: int, key: bytes, data: bytes) -> bytes | None:
    """The HMAC of ``data`` (see ``covered``) under ``key``; None for an unknown HMAC id."""
    digest = DIGESTS.get(hmac_id)
    if digest is None:
        return None
    return hmac.new(key, data, digest).digest()


def sign(chunks_after: bytes, key: bytes, *, hmac_id: int = HMAC_SHA1, key_id: int = 0) -> bytes:
    """A whole AUTH chunk authenticating ``chunks_after`` (the chunks that follow it, padded):
    what an endpoint, or an attacker holding the key, puts in front of an ASCONF."""
    size = hashlib.new(DIGESTS[hmac_id]().name).digest_size
    head = struct.pack("!BBHHH", 15, 0, AUTH_HEADER + size, key_id, hmac_id)
    mac = compute(hmac_id, key, head + bytes(size) + chunks_after)
    assert mac is not None
    return head + mac
