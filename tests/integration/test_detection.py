"""Movement detection against real radvd, ISC dhcpd and dhclient in namespaces.

Lab: ``tbmd-ar1`` (2001:db8:a1::/64, 192.0.2.0/24) and ``tbmd-ar2`` (2001:db8:a2::/64,
198.51.100.0/24), each with radvd and dhcpd on its veth ``tomn``; ``tbmd-mn`` has ``eth1`` to
ar1 and ``eth2`` to ar2 and runs the agent, which starts dhclient per link at link-up. ar2's
side starts down (no carrier on eth2). The test subscribes on the agent's Unix socket as a
transport would, "moves" by bringing ar2's side up, then takes ar1's side down.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testbed.errors import TestbedError
from testbed.host import netns
from testbed.mobility.agent import AgentClient, Subscription
from testbed.mobility.events import Event

pytestmark = pytest.mark.integration

NS_AR = {"ar1": "tbmd-ar1", "ar2": "tbmd-ar2"}
NS_MN = "tbmd-mn"
NETS = {
    "ar1": ("2001:db8:a1::", "192.0.2", "eth1"),
    "ar2": ("2001:db8:a2::", "198.51.100", "eth2"),
}
TOOLS = {"radvd": "radvd", "dhcpd": "isc-dhcp-server", "dhclient": "isc-dhcp-client"}

DHCLIENT_SCRIPT = """#!/bin/sh
# Minimal dhclient-script: address only. The stock one rewrites the host's /etc/resolv.conf.
case "$reason" in
  PREINIT) ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface"
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" \\
      valid_lft "$new_dhcp_lease_time" preferred_lft "$new_dhcp_lease_time" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface"
    ;;
esac
exit 0
"""


@dataclass
class Lab:
    dir: Path
    socket: Path
    state: Path
    agent: int  # pid
    argv: list[str]


def _require_tools() -> None:
    missing = [f"{t} (Debian package {p})" for t, p in TOOLS.items() if not shutil.which(t)]
    if missing:
        pytest.fail("missing: " + ", ".join(missing) + " — run `make setup`")
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, raw sockets)")


def _cleanup() -> None:
    for ns in (NS_MN, *NS_AR.values()):
        if netns.exists(ns):
            netns.kill_all(ns)
            netns.run(None, ["ip", "netns", "del", ns], check=False)


def _wait_file(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.02)
    tail = path.read_text(errors="replace")[-500:] if path.exists() else "(no file)"
    raise TestbedError(f"{path.name}: no {text!r} within {timeout:g} s: {tail}")


def _start_ar(name: str, d: Path) -> None:
    ns = NS_AR[name]
    v6, v4, _ = NETS[name]
    net = 0 if name == "ar1" else 1
    run = netns.run
    run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
    # An AR waiting for mobiles has a settled link-local; without this, every carrier change
    # on its side restarts DAD and radvd stays silent for 1-2 s (measured), which would be
    # charged to the mobile's detection time.
    run(ns, ["sysctl", "-qw", "net.ipv6.conf.tomn.accept_dad=0"])
    run(ns, ["ip", "addr", "add", f"{v6}1/64", "dev", "tomn", "nodad"])
    run(ns, ["ip", "addr", "add", f"{v4}.1/24", "dev", "tomn"])
    radvd_conf = d / f"{name}-radvd.conf"
    radvd_conf.write_text(
        "interface tomn {\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n"
        "  MaxRtrAdvInterval 4;\n"
        f"  prefix {v6}/64 {{ AdvOnLink on; AdvAutonomous on; }};\n}};\n"
    )
    run(ns, ["radvd", "-c", "-C", str(radvd_conf)])
    netns.spawn(
        ns,
        ["radvd", "-n", "-C", str(radvd_conf), "-p", str(d / f"{name}-radvd.pid"),
         "-m", "stderr", "-d", "1"],
        log=d / f"{name}-radvd.log",
    )  # fmt: skip
    dhcpd_conf = d / f"{name}-dhcpd.conf"
    dhcpd_conf.write_text(
        "authoritative;\nping-check false;\ndefault-lease-time 600;\nmax-lease-time 600;\n"
        f"subnet {v4}.0 netmask 255.255.255.0 {{\n  range {v4}.{100 + net} {v4}.150;\n"
        f"  option routers {v4}.1;\n  option subnet-mask 255.255.255.0;\n}}\n"
    )
    leases = d / f"{name}-dhcpd.leases"
    leases.touch()
    netns.spawn(
        ns,
        ["dhcpd", "-4", "-f", "-d", "-cf", str(dhcpd_conf), "-lf", str(leases),
         "-pf", str(d / f"{name}-dhcpd.pid"), "tomn"],
        log=d / f"{name}-dhcpd.log",
    )  # fmt: skip


@pytest.fixture(params=[False, True], ids=["dad", "optimistic-dad"])
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    _require_tools()
    _cleanup()
    d = tmp_path.absolute()
    try:
        for ns in (NS_MN, *NS_AR.values()):
            netns.run(None, ["ip", "netns", "add", ns])
            netns.run(ns, ["ip", "link", "set", "lo", "up"])
        for name, ns in NS_AR.items():
            netns.run(NS_MN, ["ip", "link", "add", NETS[name][2], "type", "veth", "peer",
                              "name", "tomn", "netns", ns])  # fmt: skip
            netns.run(ns, ["ip", "link", "set", "tomn", "up"])  # dhcpd only binds to up links
            _start_ar(name, d)
        for name in NS_AR:
            _wait_file(d / f"{name}-dhcpd.log", "Sending on", 10)
        # ar2's side goes down (no carrier on eth2) before the MN's links come up, so the MN
        # has never seen ar2: the move below is a first attachment, not a return
        netns.run(NS_AR["ar2"], ["ip", "link", "set", "tomn", "down"])
        for _, _, mn_if in NETS.values():
            netns.run(NS_MN, ["ip", "link", "set", mn_if, "up"])

        script = d / "dhclient-script"
        script.write_text(DHCLIENT_SCRIPT)
        script.chmod(0o755)
        dhclient = (
            f"dhclient -4 -d -v -sf {script} -lf {d}/dhclient-{{ifname}}.leases "
            f"-pf {d}/dhclient-{{ifname}}.pid {{ifname}}"
        )
        sock, state = d / "agent.sock", d / "state.json"
        argv = [sys.executable, "-m", "testbed.mobility.agent", "--socket", str(sock),
                "--state", str(state), "--ifaces", "eth1,eth2", "--on-link-up", dhclient,
                "--log-level", "DEBUG"]  # fmt: skip
        if request.param:
            argv += ["--optimistic-dad", "--rtt-interval", "0.2"]
        proc = netns.spawn(
            NS_MN,
            argv,
            log=d / "agent.log",
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
        yield Lab(d, sock, state, proc.pid, argv)
    finally:
        _cleanup()


def _is(kind: str, ifname: str, prefix: str | None = None) -> object:
    return lambda e: e.kind == kind and e.ifname == ifname and (prefix is None or e.prefix == prefix)


async def _expect(sub: Subscription, kind: str, ifname: str, prefix: str | None, t: float) -> Event:
    pred = _is(kind, ifname, prefix)
    return await sub.wait_for(pred, timeout=t, include_seen=True)  # type: ignore[arg-type]


def test_move_to_ar2_then_lose_ar1(lab: Lab) -> None:
    async def main() -> dict[str, float]:
        client = AgentClient(lab.socket)
        await client.wait_ready(15)
        async with client.subscribe(since=0) as sub:
            # attached to ar1 from the start
            for prefix in ("2001:db8:a1::/64", "192.0.2.0/24"):
                await _expect(sub, "configured", "eth1", prefix, 15)
            assert not any(e.ifname == "eth2" for e in sub.seen), "eth2 has no carrier yet"

            # move: ar2's side comes up
            t_cmd = time.monotonic()
            netns.run(NS_AR["ar2"], ["ip", "link", "set", "tomn", "up"])
            up = await _expect(sub, "link_up", "eth2", None, 10)
            det6 = await _expect(sub, "detected", "eth2", "2001:db8:a2::/64", 10)
            conf6 = await _expect(sub, "configured", "eth2", "2001:db8:a2::/64", 15)
            det4 = await _expect(sub, "detected", "eth2", "198.51.100.0/24", 15)
            conf4 = await _expect(sub, "configured", "eth2", "198.51.100.0/24", 15)
            for a, b in ((up, det6), (det6, conf6), (up, det4), (det4, conf4)):
                assert a.seq < b.seq and a.mono <= b.mono, (a, b)
            assert det6.router and det6.router.startswith("fe80:")
            assert conf6.addresses and conf6.addresses[0].startswith("2001:db8:a2:")
            assert conf4.addresses and conf4.addresses[0].startswith("198.51.100.")

            # leave ar1: its side goes down
            netns.run(NS_AR["ar1"], ["ip", "link", "set", "tomn", "down"])
            await _expect(sub, "link_down", "eth1", None, 10)
            lost6 = await _expect(sub, "lost", "eth1", "2001:db8:a1::/64", 10)
            assert lost6.reason == "carrier" and lost6.addresses

            state = await client.state()
            assert state["interfaces"]["eth1"]["link"] == "down"
            nets = {n["prefix"]: n for n in state["interfaces"]["eth2"]["networks"]}
            assert nets["2001:db8:a2::/64"]["configured"] and nets["198.51.100.0/24"]["configured"]
            on_disk = json.loads(lab.state.read_text())
            assert on_disk["seq"] >= lost6.seq

            wire = state["interfaces"]["eth2"].get("wire", {})
            if "--optimistic-dad" in lab.argv:  # this variant also probes the gateway RTT
                deadline = time.monotonic() + 5
                while "rtt_ms" not in state["interfaces"]["eth2"]["metrics"]:
                    assert time.monotonic() < deadline, "no RTT probe result for eth2"
                    await asyncio.sleep(0.05)
                    state = await client.state()
                assert 0 < state["interfaces"]["eth2"]["metrics"]["rtt_ms"] < 1000
            os.kill(lab.agent, signal.SIGTERM)
            bye = await _expect(sub, "shutdown", "", None, 10)
            assert bye.seq > lost6.seq
            print("\nevent stream for the move:")
            for e in sub.seen:
                if e.ifname == "eth2" or e.kind in ("link_down", "lost", "shutdown"):
                    print("  ", e.to_json())
            return {
                "cmd_to_link_up_ms": (up.mono - t_cmd) * 1e3,
                "link_up_to_first_rs_ms": (wire["rs_first"] - up.mono) * 1e3,
                "first_rs_to_first_ra_ms": (wire["ra_first"] - wire["rs_first"]) * 1e3,
                "rs_sent": wire["rs_count"],
                "link_up_to_detected6_ms": (det6.mono - up.mono) * 1e3,
                "link_up_to_configured6_ms": (conf6.mono - up.mono) * 1e3,
                "link_up_to_detected4_ms": (det4.mono - up.mono) * 1e3,
                "link_up_to_configured4_ms": (conf4.mono - up.mono) * 1e3,
            }

    numbers = asyncio.run(main())
    print("timings:", json.dumps({k: round(v, 1) for k, v in numbers.items()}))
    (lab.dir / "timings.json").write_text(json.dumps(numbers))
