"""DNS decoding: UPDATE with empty RDATA, SIG(0), TSIG, compression and its loop guard."""

from __future__ import annotations

import random
import struct

import dns.message
import dns.rdatatype
import dns.update

from testbed.decode import decode_dns
from testbed.decode.dns import CLASS_ANY, CLASS_IN, OPCODE_UPDATE, TYPE_A, TYPE_SIG
from tests.support.synth import dns_update, dns_update_response


def test_update_with_sig0_and_empty_rdata() -> None:
    m = decode_dns(
        dns_update(0x1234, "mobile.test", "mn.mobile.test", "198.51.100.10", signer="mn.mobile.test")
    )
    assert m.malformed is None
    assert (m.id, m.qr, m.opcode) == (0x1234, False, OPCODE_UPDATE)
    assert m.zone is not None and m.zone.name == "mobile.test."
    delete, add = m.updates
    assert (delete.name, delete.type, delete.rclass, delete.ttl, delete.rdata) == (
        "mn.mobile.test.",
        TYPE_A,
        CLASS_ANY,
        0,
        b"",
    )
    assert delete.value is None
    assert (add.rclass, add.ttl, add.value) == (CLASS_IN, 60, "198.51.100.10")
    sig = m.sig0
    assert sig is not None and m.additional[-1].type == TYPE_SIG
    assert (sig.algorithm, sig.key_tag, sig.signer) == (13, 4242, "mn.mobile.test.")
    assert sig.expiration - sig.inception == 600 and len(sig.signature) == 64
    assert m.tsig is None


def test_update_with_tsig_and_aaaa() -> None:
    m = decode_dns(dns_update(7, "mobile.test", "mn.mobile.test", "2001:db8:2::10", tsig=True))
    assert m.malformed is None and m.sig0 is None
    assert m.updates[1].value == "2001:db8:2::10"
    t = m.tsig
    assert t is not None and (t.algorithm, t.fudge, t.error, len(t.mac)) == ("hmac-sha256.", 300, 0, 32)


def test_response_rcode() -> None:
    r = decode_dns(dns_update_response(7, "mobile.test", 5))
    assert (r.qr, r.opcode, r.rcode_name) == (True, OPCODE_UPDATE, "REFUSED")


def test_matches_dnspython_on_compressed_update() -> None:
    u = dns.update.UpdateMessage("mobile.test")
    u.replace("mn", 60, "A", "198.51.100.10")
    u.delete("old", "AAAA")
    wire = u.to_wire()  # dnspython compresses owner names against the zone
    ours = decode_dns(wire)
    theirs = dns.message.from_wire(wire)
    assert ours.malformed is None and ours.id == theirs.id
    names = [r.name for r in ours.updates]
    assert names == ["mn.mobile.test.", "mn.mobile.test.", "old.mobile.test."]
    assert [r.type for r in ours.updates] == [1, 1, dns.rdatatype.AAAA]


def test_compression_loop_is_malformed_not_hang() -> None:
    head = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0)
    looped = head + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # the name points at itself
    m = decode_dns(looped)
    assert m.malformed == "compression pointer loop"
    two = head + b"\xc0\x0e\xc0\x0c" + b"\x00\x01\x00\x01"
    assert decode_dns(two).malformed == "compression pointer loop"


def test_truncations_and_garbage_never_raise() -> None:
    wire = dns_update(9, "mobile.test", "mn.mobile.test", "198.51.100.10", signer="mn.mobile.test")
    for cut in range(len(wire)):
        m = decode_dns(wire[:cut])
        assert m.malformed, cut
    rng = random.Random(1)
    for _ in range(500):
        b = bytearray(wire)
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        decode_dns(bytes(b))
        decode_dns(rng.randbytes(rng.randint(0, 60)))
