"""SIG(0) signing/verification (RFC 2931): round trips, wire structure, rejection cases."""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.update
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from testbed.mobility.location import keys, sig0
from testbed.mobility.location.sig0 import Sig0Error, Validity

NOW = 1_795_760_000.0  # pinned: the core takes time as an argument
ALGS = ["ECDSAP256SHA256", "ED25519"]


def _update(zone: str = "mobile.test", owner: str = "mn") -> dns.update.UpdateMessage:
    m = dns.update.UpdateMessage(zone, id=0x1234)
    m.delete(owner, "A")
    m.add(owner, 30, "A", "192.0.2.10")
    m.delete(owner, "AAAA")
    m.add(owner, 30, "AAAA", "2001:db8::10")
    return m


@pytest.fixture(params=ALGS)
def key(request: pytest.FixtureRequest) -> sig0.Sig0Key:
    return keys.generate("mn.mobile.test", request.param)


def test_round_trip(key: sig0.Sig0Key) -> None:
    msg = _update()
    wire = sig0.sign(msg, key, NOW)
    signed = sig0.verify(wire, key.public, NOW)
    assert signed.unsigned_wire == msg.to_wire()
    assert signed.message().to_wire() == msg.to_wire()
    assert signed.sig is not None and signed.sig.signer == key.name


def test_wire_structure(key: sig0.Sig0Key) -> None:
    """Everything BIND 9.20.23 turned out to care about (see the sig0 module docstring)."""
    plain = _update().to_wire()
    mixed = sig0.Sig0Key(dns.name.from_text("MN.Mobile.Test"), key.private)
    wire = sig0.sign(plain, mixed, NOW, Validity(before=10, after=20))

    assert wire[:10] == plain[:10] and wire[12 : len(plain)] == plain[12:]  # body untouched
    assert struct.unpack_from("!H", wire, 10)[0] == struct.unpack_from("!H", plain, 10)[0] + 1
    rr = wire[len(plain) :]  # the SIG RR is appended last
    assert rr[:9] == b"\x00" + struct.pack("!HHI", 24, 255, 0)  # root owner, SIG, ANY, TTL 0
    (rdlen,) = struct.unpack_from("!H", rr, 9)
    rdata = rr[11:]
    assert len(rdata) == rdlen
    covered, alg, labels, ottl, exp, inc, tag = struct.unpack_from("!HBBIIIH", rdata)
    assert (covered, labels, ottl) == (0, 0, 0)
    assert alg == key.algorithm and tag == key.key_tag
    assert (inc, exp) == (int(NOW) - 10, int(NOW) + 20)
    signer = b"\x02mn\x06mobile\x04test\x00"  # uncompressed, lower case
    assert rdata[18 : 18 + len(signer)] == signer
    sig_len = len(rdata) - 18 - len(signer)
    assert sig_len == 64  # ECDSA P-256 raw r||s (not DER) and Ed25519 are both 64 bytes


def test_ecdsa_signature_checks_out_independently() -> None:
    """Rebuild the signed data by hand and verify r||s with cryptography directly."""
    key = keys.generate("mn.mobile.test", "ECDSAP256SHA256")
    plain = _update().to_wire()
    wire = sig0.sign(plain, key, NOW)
    rdata = wire[len(plain) + 11 :]
    head, sig = rdata[:-64], rdata[-64:]
    der = utils.encode_dss_signature(
        int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    )
    public = key.private.key.public_key()  # type: ignore[attr-defined]
    public.verify(der, head + plain, ec.ECDSA(hashes.SHA256()))  # raises if wrong


def test_dnspython_cannot_parse_signed_update_but_split_can(key: sig0.Sig0Key) -> None:
    wire = sig0.sign(_update(), key, NOW)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)  # why sig0.split exists
    assert sig0.split(wire).message().to_wire() == _update().to_wire()


def test_split_of_unsigned_message() -> None:
    wire = _update().to_wire()
    signed = sig0.split(wire)
    assert signed.sig is None and signed.unsigned_wire == wire
    with pytest.raises(Sig0Error, match="no SIG"):
        sig0.verify(wire, keys.generate("mn.mobile.test").public, NOW)


@pytest.mark.parametrize("where", ["update section", "header id", "signature"])
def test_tampering_fails(key: sig0.Sig0Key, where: str) -> None:
    wire = bytearray(sig0.sign(_update(), key, NOW))
    at = {
        "update section": wire.index(bytes([192, 0, 2, 10])) + 3,
        "header id": 0,
        "signature": len(wire) - 5,
    }[where]
    wire[at] ^= 0x01
    with pytest.raises(Sig0Error, match="does not verify"):
        sig0.verify(bytes(wire), key.public, NOW)


@pytest.mark.parametrize("offset", [-61.0, 61.0])
def test_outside_window_fails(key: sig0.Sig0Key, offset: float) -> None:
    wire = sig0.sign(_update(), key, NOW, Validity(before=60, after=60))
    sig0.verify(wire, key.public, NOW + 60)  # edges are inside
    sig0.verify(wire, key.public, NOW - 60)
    with pytest.raises(Sig0Error, match="validity window"):
        sig0.verify(wire, key.public, NOW + offset)


def test_window_across_32bit_wrap(key: sig0.Sig0Key) -> None:
    now = float(2**32 - 5)  # the year 2106: serial arithmetic must hold
    wire = sig0.sign(_update(), key, now, Validity(before=10, after=10))
    sig0.verify(wire, key.public, now + 8)
    with pytest.raises(Sig0Error, match="validity window"):
        sig0.verify(wire, key.public, now + 12)


def test_wrong_key_is_not_matched(key: sig0.Sig0Key) -> None:
    wire = sig0.sign(_update(), key, NOW)
    other = keys.generate("mn.mobile.test", "ED25519")
    with pytest.raises(Sig0Error, match="no KEY for signer"):
        sig0.verify(wire, other.public, NOW)
    # several candidates: the right one is picked by name/alg/tag
    sig0.verify(wire, [other.public, key.public], NOW)


def test_key_tag_matches_bind() -> None:
    """Key tags dnssec-keygen computed for these published keys (in the file names)."""
    for text, tag in (
        (
            "512 3 13 PqlXuG86W+PmNIcLAkZEuJwcKaXtd5qHfed8BJ+Hmti9bNZgjCpkNlMH "
            "4vqTXA9wPodahjgVlpZEoru42XWL1w==",
            50999,
        ),
        ("512 3 15 9aj4aCKXQ5LRJJUE3vsthohnHzzh3y/p3h5zJi84vjE=", 50193),
    ):
        rdata = dns.rdata.from_text("IN", "KEY", text)
        assert sig0.key_tag(rdata) == tag  # type: ignore[arg-type]


def test_algorithm_names() -> None:
    assert sig0.algorithm_from_text("ecdsap256sha256") == sig0.ECDSAP256SHA256
    assert sig0.algorithm_from_text(15) == sig0.ED25519
    assert sig0.algorithm_from_text("15") == sig0.ED25519
    with pytest.raises(Sig0Error, match="not supported"):
        sig0.algorithm_from_text("RSASHA256")
    with pytest.raises(Sig0Error, match="unknown"):
        sig0.algorithm_from_text("NOPE")


def test_sign_rejects_short_input(key: sig0.Sig0Key) -> None:
    with pytest.raises(Sig0Error, match="shorter than a DNS header"):
        sig0.sign(b"\x00" * 5, key, NOW)
