"""LocationUpdater without a network: message shape, signing, retry/backoff, result, CLI input."""

from __future__ import annotations

import asyncio
import json

import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from testbed.errors import ConfigError
from testbed.mobility.location import cli, keys, sig0
from testbed.mobility.location.updater import AddressSet, LocationUpdater, RetryPolicy

NOW = 1_795_760_000.0
KEY = keys.generate("mn.mobile.test", "ED25519")


def _updater(**kw) -> LocationUpdater:
    kw.setdefault("key", KEY)
    kw.setdefault("clock", lambda: NOW)
    return LocationUpdater("192.0.2.53", "mobile.test", "mn.mobile.test", **kw)


def _rrs(msg: dns.message.Message) -> list[tuple[str, str, str]]:
    return [
        (dns.rdataclass.to_text(r.deleting or r.rdclass), dns.rdatatype.to_text(r.rdtype), rd)
        for r in msg.update
        for rd in ([x.to_text() for x in r] or [""])
    ]


def test_message_replaces_both_rrsets() -> None:
    msg = _updater().message(AddressSet.of(["192.0.2.10"], ["2001:DB8::0010"]))
    assert msg.zone[0].name.to_text() == "mobile.test."
    assert [(c, t) for c, t, _ in _rrs(msg)] == [
        ("ANY", "A"),
        ("IN", "A"),
        ("ANY", "AAAA"),
        ("IN", "AAAA"),
    ]
    assert [v for _, _, v in _rrs(msg)][1::2] == ["192.0.2.10", "2001:db8::10"]
    assert all(r.name.to_text() == "mn.mobile.test." for r in msg.update)


def test_empty_sets_only_delete() -> None:
    msg = _updater().message(AddressSet())
    assert [(c, t) for c, t, _ in _rrs(msg)] == [("ANY", "A"), ("ANY", "AAAA")]


def test_signed_wire_verifies_at_the_clock_time() -> None:
    u = _updater()
    wire = u.sign(u.message(AddressSet.of(["192.0.2.10"])), NOW)
    sig0.verify(wire, KEY.public, NOW)


def test_tsig_signed_message() -> None:
    tsig = keys.generate_tsig("tbsig-tsig")
    u = _updater(key=None, tsig=tsig)
    msg = u.message(AddressSet.of(["192.0.2.10"]))
    wire = u.sign(msg, NOW)
    parsed = dns.message.from_wire(wire, keyring={tsig.name: tsig})
    assert parsed.had_tsig and parsed.keyname == tsig.name


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"key": None}, "no key"),
        ({"server": "dns.example"}, "not an IP"),
        ({"name": "mn.other.test"}, "not in zone"),
    ],
)
def test_bad_configuration(kw: dict, match: str) -> None:
    args = {"server": "192.0.2.53", "name": "mn.mobile.test", "key": KEY} | kw
    with pytest.raises(ConfigError, match=match):
        LocationUpdater(args.pop("server"), "mobile.test", args.pop("name"), **args)


def test_bad_addresses() -> None:
    with pytest.raises(ConfigError, match="not IPv4"):
        AddressSet.of(["2001:db8::1"])
    with pytest.raises(ConfigError, match="not an IP"):
        AddressSet.of([], ["mn"])


def test_backoff_schedule() -> None:
    p = RetryPolicy(attempts=6, timeout=0.5, backoff=2.0, max_timeout=3.0)
    assert [p.wait(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def _answer(wire: bytes, rcode: int) -> dns.message.Message:
    r = dns.message.make_response(sig0.split(wire).message())
    r.set_rcode(rcode)
    return r


def test_retries_on_timeout_then_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    wires: list[bytes] = []
    u = _updater(retry=RetryPolicy(attempts=5, timeout=0.01), on_attempt=seen.append)

    async def flaky(wire: bytes, timeout: float, mac: bytes = b""):
        wires.append(wire)
        if len(wires) < 3:
            raise dns.exception.Timeout
        return _answer(wire, dns.rcode.NOERROR), "udp"

    monkeypatch.setattr(u, "exchange", flaky)
    res = asyncio.run(u.update(["192.0.2.10"]))
    assert res.ok and res.rcode == "NOERROR" and res.attempts == 3 and res.transport == "udp"
    assert res.rtt is not None and res.error is None
    assert seen == [1, 2, 3]
    assert len({w[:2] for w in wires}) >= 2  # re-built (new id, fresh signature) per attempt
    assert res.to_dict()["ok"] is True


def test_refusal_is_final(monkeypatch: pytest.MonkeyPatch) -> None:
    u = _updater(retry=RetryPolicy(attempts=5, timeout=0.01))
    calls: list[bytes] = []

    async def refuse(wire: bytes, timeout: float, mac: bytes = b""):
        calls.append(wire)
        return _answer(wire, dns.rcode.REFUSED), "udp"

    monkeypatch.setattr(u, "exchange", refuse)
    res = asyncio.run(u.withdraw())
    assert (res.rcode, res.ok, res.attempts, len(calls)) == ("REFUSED", False, 1, 1)


def test_gives_up_after_bounded_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    u = _updater(retry=RetryPolicy(attempts=3, timeout=0.01))

    async def dead(wire: bytes, timeout: float, mac: bytes = b""):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(u, "exchange", dead)
    res = asyncio.run(u.update(["192.0.2.10"]))
    assert res.rcode is None and res.attempts == 3 and not res.ok
    assert "ConnectionRefusedError" in (res.error or "")


def test_withdraw_points_at_cooperating_host(monkeypatch: pytest.MonkeyPatch) -> None:
    coop = AddressSet.of(["198.51.100.7"])
    u = _updater(cooperating=coop)
    sent: list[dns.message.Message] = []

    async def ok(wire: bytes, timeout: float, mac: bytes = b""):
        sent.append(sig0.split(wire).message())
        return _answer(wire, dns.rcode.NOERROR), "udp"

    monkeypatch.setattr(u, "exchange", ok)
    assert asyncio.run(u.withdraw()).addresses == coop
    assert ("IN", "A", "198.51.100.7") in _rrs(sent[0])


def test_cli_without_key_reports_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(
        [
            "update",
            "--server",
            "192.0.2.53",
            "--zone",
            "mobile.test",
            "--name",
            "mn.mobile.test",
            "--a",
            "192.0.2.10",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 2 and out["ok"] is False and "--key" in out["error"]


def test_an_alternate_server_is_tried_when_the_first_has_no_route(monkeypatch) -> None:
    """On an IPv6-only network sendto() to the IPv4 server fails at once (ENETUNREACH): the
    same attempt goes to the server's IPv6 address."""
    import errno

    u = _updater(alternates=("2001:db8:ff:53::2",))
    tried: list[str] = []

    async def exchange(wire, timeout, mac=b"", *, server=None):
        server = server or u.server
        tried.append(server)
        if ":" not in server:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        req = dns.message.from_wire(wire, keyring=None, ignore_trailing=True, continue_on_error=True)
        return dns.message.make_response(req), "udp"

    monkeypatch.setattr(u, "exchange", exchange)
    res = asyncio.run(u.update(aaaa=["2001:db8:a2::10"]))
    assert res.ok and res.attempts == 1 and tried == ["192.0.2.53", "2001:db8:ff:53::2"]


def test_an_alternate_is_not_tried_for_a_timeout(monkeypatch) -> None:
    u = _updater(alternates=("2001:db8:ff:53::2",), retry=RetryPolicy(attempts=1, timeout=0.01))
    tried: list[str] = []

    async def exchange(wire, timeout, mac=b"", *, server=None):
        server = server or u.server
        tried.append(server)
        raise dns.exception.Timeout

    monkeypatch.setattr(u, "exchange", exchange)
    res = asyncio.run(u.update(a=["192.0.2.10"]))
    assert not res.ok and tried == ["192.0.2.53"]
