"""Location updates against a real named 9.20: what BIND accepts and refuses (§4 of the spec).

Topology (all ours, prefix ``tbsig-``): netns ``tbsig-dns`` runs named for ``mobile.test``;
netns ``tbsig-mn`` is the mobile node; one veth pair between them on 192.0.2.0/24 and
2001:db8:53::/64. Every client call runs inside ``tbsig-mn`` (``call_in`` forks into it).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.update
import pytest

from testbed.errors import MissingDependency
from testbed.host import netns
from testbed.mobility.location import keys, sig0
from testbed.mobility.location.provision import ProvisionedKeys, provision_keys
from testbed.mobility.location.sig0 import Validity
from testbed.mobility.location.updater import AddressSet, LocationUpdater, RetryPolicy

pytestmark = pytest.mark.integration

NS_DNS, NS_MN = "tbsig-dns", "tbsig-mn"
DNS4, MN4 = "192.0.2.53", "192.0.2.10"
DNS6, MN6 = "2001:db8:53::53", "2001:db8:53::10"
ZONE, NAME = "mobile.test", "mn.mobile.test"
TSIG_NAME = "tbsig-tsig"
NAMED = "/usr/sbin/named"


def _need(tool: str, package: str) -> str:
    path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(str(MissingDependency(tool, package)))
    return path


def _ip(ns: str | None, *args: str) -> None:
    netns.run(ns, ["ip", *args], timeout=10)


def _drop_namespaces() -> None:
    for ns in (NS_MN, NS_DNS):
        if netns.exists(ns):
            netns.kill_all(ns)
            netns.run(None, ["ip", "netns", "del", ns], check=False, timeout=10)


# --- named -----------------------------------------------------------------------------


def _zone_text(prov: ProvisionedKeys) -> str:
    lines = [
        "$TTL 300",
        f"{ZONE}. IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 30",
        f"{ZONE}. IN NS ns.{ZONE}.",
        f"ns.{ZONE}. IN A {DNS4}",
        *prov.key_rrs,
    ]
    return "\n".join(lines) + "\n"


def _named_conf(d: Path, prov: ProvisionedKeys) -> str:
    assert prov.tsig_file is not None
    return f"""
options {{
    directory "{d}";
    pid-file "{d}/named.pid";
    session-keyfile "{d}/session.key";
    managed-keys-directory "{d}";
    dump-file "{d}/cache_dump.db";
    statistics-file "{d}/named.stats";
    memstatistics-file "{d}/named.memstats";
    listen-on port 53 {{ {DNS4}; }};
    listen-on-v6 port 53 {{ {DNS6}; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
include "{prov.tsig_file}";
zone "{ZONE}" {{
    type primary;
    file "{d}/{ZONE}.zone";
    update-policy {{
        grant {TSIG_NAME} zonesub ANY;
        grant {NAME}. self {NAME}. A AAAA;
    }};
}};
"""


def _ask(server: str, qname: str, rdtype: str, timeout: float = 0.5) -> dns.message.Message:
    q = dns.message.make_query(qname, rdtype)
    return dns.query.udp(q, server, timeout=timeout)


def _wait_answering(server: str, deadline_s: float) -> float:
    """Poll SOA until named answers; runs inside the client netns. Returns seconds waited."""
    start = time.monotonic()
    while True:
        try:
            r = _ask(server, ZONE, "SOA", timeout=0.2)
            if r.rcode() == dns.rcode.NOERROR and r.answer:
                return time.monotonic() - start
        except (dns.exception.Timeout, OSError):
            pass
        if time.monotonic() - start > deadline_s:
            raise TimeoutError(f"named at {server} did not answer within {deadline_s} s")
        time.sleep(0.05)


@dataclass
class Named:
    """Our named in tbsig-dns: start/stop keep the zone files (and the journal)."""

    dir: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = netns.spawn(
            NS_DNS, [NAMED, "-g", "-n", "1", "-c", str(self.conf)], log=self.dir / "named.log"
        )
        try:
            netns.call_in(NS_MN, _wait_answering, DNS4, 10.0, timeout=15)
        except Exception:
            tail = (self.dir / "named.log").read_text()[-2000:]
            raise AssertionError(f"named did not come up; log tail:\n{tail}") from None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        return (self.dir / "named.log").read_text()


@dataclass
class Lab:
    dir: Path
    prov: ProvisionedKeys
    named: Named

    def key(self, alg: str = "ECDSAP256SHA256") -> sig0.Sig0Key:
        return keys.load_key(self.prov.key_for(alg).key_file)

    def tsig(self) -> Any:
        assert self.prov.tsig_file is not None
        return keys.load_tsig(self.prov.tsig_file)

    def in_mn(self, fn: Callable[..., Any], *args: Any, timeout: float = 30.0) -> Any:
        return netns.call_in(NS_MN, fn, *args, timeout=timeout)

    def records(self, server: str = DNS4) -> tuple[set[str], set[str]]:
        def look() -> tuple[set[str], set[str]]:
            out = []
            for t in ("A", "AAAA"):
                r = _ask(server, NAME, t)
                out.append({rd.to_text() for rrset in r.answer for rd in rrset})
            return out[0], out[1]

        return self.in_mn(look)

    def update(self, updater: LocationUpdater, a: tuple[str, ...] = (), aaaa: tuple[str, ...] = ()):
        return self.in_mn(lambda: asyncio.run(updater.update(a, aaaa)))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _need("named", "bind9")
    _need("named-checkconf", "bind9")
    d = tmp_path_factory.mktemp("tbsig").absolute()
    prov = provision_keys(d / "keys", NAME, ("ECDSAP256SHA256", "ED25519"), tsig_name=TSIG_NAME)
    (d / f"{ZONE}.zone").write_text(_zone_text(prov))
    conf = d / "named.conf"
    conf.write_text(_named_conf(d, prov))
    netns.run(None, [_need("named-checkconf", "bind9"), "-z", str(conf)], timeout=30)

    _drop_namespaces()  # a crashed earlier run of this test
    named = Named(d, conf)
    try:
        for ns in (NS_DNS, NS_MN):
            _ip(None, "netns", "add", ns)
            _ip(ns, "link", "set", "lo", "up")
        # created inside tbsig-dns, peer moved straight into tbsig-mn: never in the root netns
        _ip(
            NS_DNS,
            "link",
            "add",
            "tbsig-d0",
            "type",
            "veth",
            "peer",
            "name",
            "tbsig-m0",
            "netns",
            NS_MN,
        )
        for ns, ifname, a4, a6 in ((NS_DNS, "tbsig-d0", DNS4, DNS6), (NS_MN, "tbsig-m0", MN4, MN6)):
            _ip(ns, "addr", "add", f"{a4}/24", "dev", ifname)
            _ip(ns, "addr", "add", f"{a6}/64", "dev", ifname, "nodad")
            _ip(ns, "link", "set", ifname, "up")
        named.start()
        yield Lab(d, prov, named)
    finally:
        named.stop()
        _drop_namespaces()


def _updater(lab: Lab, **kw: Any) -> LocationUpdater:
    kw.setdefault("key", lab.key())
    kw.setdefault("retry", RetryPolicy(attempts=2, timeout=1.0))
    server = kw.pop("server", DNS4)
    return LocationUpdater(server, ZONE, NAME, **kw)


# --- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ECDSAP256SHA256", "ED25519"])
def test_sig0_update_is_accepted_and_visible(lab: Lab, alg: str) -> None:
    a, aaaa = (f"192.0.2.{20 + len(alg)}",), (f"2001:db8::{len(alg)}",)
    res = lab.update(_updater(lab, key=lab.key(alg)), a, aaaa)
    assert res.rcode == "NOERROR", res
    assert res.attempts == 1 and res.transport == "udp"
    assert lab.records() == (set(a), set(aaaa))


def test_update_over_ipv6_transport(lab: Lab) -> None:
    res = lab.update(_updater(lab, server=DNS6), ("192.0.2.66",), ())
    assert res.rcode == "NOERROR", res
    assert lab.records(DNS6) == ({"192.0.2.66"}, set())


def test_update_replaces_whole_rrsets(lab: Lab) -> None:
    u = _updater(lab)
    assert lab.update(u, ("192.0.2.1", "192.0.2.2"), ("2001:db8::1",)).ok
    assert lab.update(u, ("192.0.2.3",), ()).ok
    assert lab.records() == ({"192.0.2.3"}, set())


def test_unsigned_update_is_refused(lab: Lab) -> None:
    def unsigned() -> str:
        m = dns.update.UpdateMessage(ZONE)
        m.replace(NAME, 30, "A", "192.0.2.200")
        return dns.rcode.to_text(dns.query.udp(m, DNS4, timeout=2).rcode())

    assert lab.in_mn(unsigned) == "REFUSED"
    assert "192.0.2.200" not in lab.records()[0]


def test_mn_key_cannot_update_another_name(lab: Lab) -> None:
    u = _updater(lab)
    other = dns.name.from_text(f"other.{ZONE}")
    res = lab.in_mn(lambda: asyncio.run(u.send(AddressSet.of(["192.0.2.201"]), other)))
    assert res.rcode == "REFUSED", res


def test_key_not_in_zone_gets_servfail(lab: Lab) -> None:
    stranger = keys.generate(NAME, "ECDSAP256SHA256")  # right name, KEY not published
    res = lab.update(_updater(lab, key=stranger), ("192.0.2.202",))
    assert res.rcode == "SERVFAIL", res  # BIND 9.20: "invalid signature: not verified yet"
    assert "192.0.2.202" not in lab.records()[0]


def test_tsig_update_is_accepted(lab: Lab) -> None:
    res = lab.update(_updater(lab, key=None, tsig=lab.tsig()), ("192.0.2.40",), ("2001:db8::40",))
    assert res.rcode == "NOERROR", res
    assert lab.records() == ({"192.0.2.40"}, {"2001:db8::40"})


def test_replay_accepted_inside_window_refused_after(lab: Lab) -> None:
    window = Validity(before=1.0, after=2.0)
    u = _updater(lab, validity=window)
    now = time.time()
    wire = u.sign(u.message(AddressSet.of(["192.0.2.50"])), now)
    expiration = sig0.split(wire).sig.expiration  # type: ignore[union-attr]

    def send(w: bytes) -> str:
        r, _ = asyncio.run(u.exchange(w, 2.0))
        return dns.rcode.to_text(r.rcode())

    assert lab.in_mn(send, wire) == "NOERROR"
    assert lab.in_mn(send, wire) == "NOERROR"  # BIND accepts replays inside the window

    def replay_until_refused() -> tuple[str, float]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rcode = send(wire)
            if rcode != "NOERROR":
                return rcode, time.time()
            time.sleep(0.2)
        return "NOERROR", time.time()

    rcode, refused_at = lab.in_mn(replay_until_refused, timeout=20)
    # BIND 9.20 answers SERVFAIL on the wire and logs "RRSIG failed to verify (BADTIME)"
    assert rcode == "SERVFAIL", "replay still accepted 10 s after the window closed"
    assert refused_at >= expiration  # refused only once the window had passed
    assert "(BADTIME)" in lab.named.log()
    print(f"\nreplay after window: {rcode} ({refused_at - expiration:+.2f} s after expiration)")


def test_withdraw_deletes_or_points_at_cooperating_host(lab: Lab) -> None:
    assert lab.update(_updater(lab), ("192.0.2.60",), ("2001:db8::60",)).ok
    coop = AddressSet.of(["198.51.100.7"], ["2001:db8:c0::7"])
    u = _updater(lab, cooperating=coop)
    assert lab.in_mn(lambda: asyncio.run(u.withdraw())).ok
    assert lab.records() == ({"198.51.100.7"}, {"2001:db8:c0::7"})
    u = _updater(lab)
    assert lab.in_mn(lambda: asyncio.run(u.withdraw())).ok
    assert lab.records() == (set(), set())


def test_retry_until_named_restarts(lab: Lab) -> None:
    marker = lab.dir / "attempts"
    marker.write_text("0")

    def note(n: int) -> None:
        marker.write_text(str(n))

    u = _updater(
        lab,
        retry=RetryPolicy(attempts=8, timeout=0.3, backoff=2.0, max_timeout=2.0),
        on_attempt=note,
    )
    lab.named.stop()
    box: dict[str, Any] = {}

    def client() -> None:
        try:
            box["res"] = lab.update(u, ("192.0.2.70",))
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            box["err"] = e

    t = threading.Thread(target=client)
    try:
        t.start()
        deadline = time.monotonic() + 10
        while int(marker.read_text() or 0) < 2:  # the client has timed out once at least
            assert time.monotonic() < deadline, "updater never retried"
            time.sleep(0.02)
    finally:
        lab.named.start()
        t.join(30)
    assert "err" not in box, box.get("err")
    res = box["res"]
    assert res.rcode == "NOERROR", res
    assert res.attempts >= 3
    print(f"\nretry: NOERROR after {res.attempts} attempts (rtt of the last {res.rtt * 1e3:.1f} ms)")
    assert lab.records()[0] == {"192.0.2.70"}


def test_cli_update_and_withdraw(lab: Lab) -> None:
    key = lab.prov.key_for("ED25519").private_file
    base = [sys.executable, "-m", "testbed.mobility.location"]
    common = ["--server", DNS4, "--zone", ZONE, "--name", NAME, "--key", str(key)]
    cp = netns.run(
        NS_MN, [*base, "update", *common, "--a", "192.0.2.80", "--aaaa", "2001:db8::80"], timeout=30
    )
    out = json.loads(cp.stdout)
    assert out["ok"] and out["rcode"] == "NOERROR" and out["attempts"] == 1
    assert lab.records() == ({"192.0.2.80"}, {"2001:db8::80"})
    cp = netns.run(NS_MN, [*base, "withdraw", *common], timeout=30)
    assert json.loads(cp.stdout)["rcode"] == "NOERROR"
    assert lab.records() == (set(), set())


def test_round_trip_in_process_vs_nsupdate(lab: Lab) -> None:
    """Measured, both from inside tbsig-mn: in-process signed update vs an nsupdate process."""
    nsupdate = _need("nsupdate", "bind9-dnsutils")
    key_file = lab.prov.key_for("ECDSAP256SHA256").private_file
    u = _updater(lab)
    n = 20

    def in_process() -> list[float]:
        async def go() -> list[float]:
            out = []
            for i in range(n):
                t0 = time.perf_counter()
                r = await u.update((f"192.0.2.{100 + i}",))
                out.append(time.perf_counter() - t0)
                assert r.ok, r
            return out

        return asyncio.run(go())

    def by_nsupdate() -> list[float]:
        out = []
        for i in range(n // 2):
            script = (
                f"server {DNS4}\nzone {ZONE}\nupdate delete {NAME} A\n"
                f"update add {NAME} 30 A 192.0.2.{150 + i}\nsend\n"
            )
            t0 = time.perf_counter()
            cp = subprocess.run(
                [nsupdate, "-k", str(key_file)],
                input=script,
                text=True,
                capture_output=True,
                timeout=20,
            )
            out.append(time.perf_counter() - t0)
            assert cp.returncode == 0, cp.stderr
        return out

    ours = lab.in_mn(in_process, timeout=60)
    theirs = lab.in_mn(by_nsupdate, timeout=120)
    assert lab.records()[0] == {f"192.0.2.{150 + n // 2 - 1}"}
    mo, mt = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
    print(
        f"\nsigned update round trip (ECDSAP256SHA256, from {NS_MN}): in-process median "
        f"{mo:.2f} ms (n={n}), nsupdate -k process median {mt:.1f} ms (n={n // 2})"
    )
    (lab.dir / "timings.json").write_text(json.dumps({"in_process": ours, "nsupdate": theirs}))
    assert mo < mt


# --- against a scripted responder instead of named --------------------------------------

FAKE_PORT = 5300


def _responder(ready: str, tc_over_udp: bool, deadline_s: float) -> list[tuple[str, bytes]]:
    """Answer one UPDATE (NOERROR) on DNS4:FAKE_PORT; with ``tc_over_udp`` UDP gets TC first.

    Runs inside tbsig-dns; returns the requests as (transport, wire) for the test to inspect.
    """
    import selectors
    import socket

    def answer(wire: bytes, tc: bool) -> bytes:
        r = dns.message.make_response(sig0.split(wire).message())
        if tc:
            r.flags |= dns.flags.TC
        return r.to_wire()

    seen: list[tuple[str, bytes]] = []
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u,
        socket.socket() as t,
        selectors.DefaultSelector() as sel,
    ):
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        u.bind((DNS4, FAKE_PORT))
        t.bind((DNS4, FAKE_PORT))
        t.listen()
        sel.register(u, selectors.EVENT_READ)
        sel.register(t, selectors.EVENT_READ)
        Path(ready).write_text("up")
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            for k, _ in sel.select(max(end - time.monotonic(), 0)):
                if k.fileobj is u:
                    wire, peer = u.recvfrom(65535)
                    seen.append(("udp", wire))
                    u.sendto(answer(wire, tc_over_udp), peer)
                    if not tc_over_udp:
                        return seen
                else:
                    c, _ = t.accept()
                    with c:
                        c.settimeout(2)
                        n = int.from_bytes(c.recv(2), "big")
                        wire = b""
                        while len(wire) < n:
                            wire += c.recv(n - len(wire))
                        seen.append(("tcp", wire))
                        out = answer(wire, False)
                        c.sendall(len(out).to_bytes(2, "big") + out)
                    return seen
    return seen


def _with_responder(lab: Lab, tc: bool, client: Callable[[], Any]) -> tuple[Any, list]:
    ready = lab.dir / f"responder-{tc}"
    ready.unlink(missing_ok=True)
    box: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: box.update(
            seen=netns.call_in(NS_DNS, _responder, str(ready), tc, 10.0, timeout=20)
        )
    )
    t.start()
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline and t.is_alive(), "responder did not start"
        time.sleep(0.01)
    try:
        out = client()
    finally:
        t.join(25)
    return out, box.get("seen", [])


def test_truncated_udp_answer_falls_back_to_tcp(lab: Lab) -> None:
    u = _updater(lab, port=FAKE_PORT)
    res, seen = _with_responder(lab, True, lambda: lab.update(u, ("192.0.2.90",)))
    assert res.rcode == "NOERROR" and res.transport == "tcp", res
    assert [tr for tr, _ in seen] == ["udp", "tcp"]
    # the same signed bytes went over both transports, and they verify
    assert seen[0][1] == seen[1][1]
    sig0.verify(seen[1][1], lab.key().public, time.time())


def test_our_verifier_accepts_nsupdate_sig0(lab: Lab) -> None:
    """Interop the other way round: BIND's nsupdate signs, sig0.verify checks."""
    nsupdate = _need("nsupdate", "bind9-dnsutils")
    for alg in ("ECDSAP256SHA256", "ED25519"):
        pk = lab.prov.key_for(alg)
        script = (
            f"server {DNS4} {FAKE_PORT}\nzone {ZONE}\nupdate add {NAME} 30 A 192.0.2.91\nsend\n"
        )

        def run_nsupdate(key_file: Path = pk.private_file, script: str = script) -> int:
            return subprocess.run(
                [nsupdate, "-k", str(key_file)],
                input=script,
                text=True,
                capture_output=True,
                timeout=15,
            ).returncode

        rc, seen = _with_responder(lab, False, lambda: lab.in_mn(run_nsupdate))
        assert rc == 0
        ((transport, wire),) = seen
        signed = sig0.verify(wire, lab.key(alg).public, time.time())
        assert signed.sig is not None and signed.sig.algorithm == sig0.algorithm_from_text(alg)
        assert "192.0.2.91" in signed.message().to_text()
