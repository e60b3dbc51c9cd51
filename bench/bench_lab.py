"""Benchmark: `testbed up` + `testbed down` of the default lab beside a bare floor, same run.

The floor does the same kernel and daemon work with no testbed code: `ip netns add`, veth
pairs, addresses and routes through one `ip -batch` per node, then named/dhcpd/radvd, the
mobility agent and the MN's dhcpcd started from the configs the lab rendered, waiting for the same readiness
(SOA answer, DHCP port, RA, MN addressed) with tight polling, then kill + `ip netns del`.
Prints medians over N rounds and the ratio; targets: up <= 3 s, ratio <= 1.5.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.host import netns  # noqa: E402
from testbed.lab import Lab  # noqa: E402
from testbed.model import addressing, loader  # noqa: E402
from testbed.services import probes  # noqa: E402
from testbed.services.dhcpcd import PRIVATE_DIRS  # noqa: E402


def ping(sock: Path) -> bool:
    from testbed.host import jsonlines

    try:
        return bool(jsonlines.request(sock, {"cmd": "ping"}, timeout=1).get("ok"))
    except jsonlines.RequestError:
        return False


def timed_lab(lab: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    lb = Lab.up(None, lab)
    t1 = time.perf_counter()
    lb.down()
    return t1 - t0, time.perf_counter() - t1


def floor(lab: str, template: Path) -> tuple[float, float]:
    """The same namespaces, links and daemons, done bare from the rendered configs."""
    plan = addressing.plan(loader.load())
    ns = {n: f"{lab}-{n}" for n in plan.nodes}
    run = lambda *a, **k: subprocess.run(*a, check=True, capture_output=True, text=True, **k)  # noqa: E731
    t0 = time.perf_counter()
    for n in ns.values():
        run(["ip", "netns", "add", n])
    for v in plan.veths:  # the lab gives each end an ifindex of its own; so does the floor
        run(["ip", "-n", ns[v.a], "link", "add", v.a_ifname, "index", str(v.a_index), "type", "veth",
             "peer", "name", v.b_ifname, "netns", ns[v.b], "index", str(v.b_index)])
    for name, node in plan.nodes.items():
        cmds = [f"link add {i.ifname} type bridge forward_delay 0 stp_state 0 mcast_snooping 0"
                for i in node.ifaces if i.bridge]  # an access router's shared segment
        cmds.append("link set lo up")
        for i in node.ifaces:
            if i.master:
                cmds.append(f"link set {i.ifname} master {i.master}")
            cmds += [
                f"addr add {a} dev {i.ifname}" + (" nodad" if a.version == 6 else "") for a in i.addresses
            ]
            if name != "mn":  # the MN's interface comes up at attach time, as in the lab
                cmds.append(f"link set {i.ifname} up")
        cmds += [f"route add {r.dst} via {r.via} dev {r.dev}" for r in node.routes]
        sysctl = (
            ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]
            if node.forwards
            else ["net.ipv6.conf.all.accept_dad=0"]
        )
        if name == "mn":
            sysctl = [
                f"net.ipv6.conf.mn-ar1.{k}"
                for k in (
                    "optimistic_dad=1",
                    "use_optimistic=1",
                    "router_solicitation_delay=0",
                    "accept_ra=2",
                )
            ]
        run(["ip", "-n", ns[name], "-batch", "-"], input="\n".join(cmds) + "\n")
        run(["ip", "netns", "exec", ns[name], "sysctl", "-q", "-w", *sysctl])
    t = template
    procs: list[subprocess.Popen[bytes]] = []

    def start(node: str, *argv: str) -> None:  # a daemon in a node, bare, output discarded
        procs.append(subprocess.Popen(["ip", "netns", "exec", ns[node], *argv],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    start("dns", "named", "-f", "-n", "1", "-c", str(t / "dns/named/named.conf"))
    for ar in ("ar1", "ar2"):
        start(ar, "radvd", "-n", "-C", str(t / ar / "radvd/radvd.conf"),
              "-p", str(t / ar / "radvd/floor.pid"), "-m", "stderr")
        leases = t / ar / "dhcpd/floor.leases"
        leases.touch()
        start(ar, "dhcpd", "-4", "-f", "-q", "-cf", str(t / ar / "dhcpd/dhcpd.conf"),
              "-lf", str(leases), "-pf", str(t / ar / "dhcpd/floor.pid"), f"{ar}-lan")
    while netns.call_in(ns["dns"], probes.dns_soa, "203.0.113.10", "mobile.test") is None:
        time.sleep(0.005)
    for ar in ("ar1", "ar2"):
        while not netns.call_in(ns[ar], probes.port_bound, 67, "udp"):
            time.sleep(0.005)
    # the mobility agent, bare: its process start and socket, as the lab waits for them
    agent_sock = t / "floor-agent.sock"
    start("mn", sys.executable, "-m", "testbed.mobility.agent", "--socket", str(agent_sock),
          "--state", str(t / "floor-agent.json"), "--ifaces", "mn-ar1,mn-ar2",
          "--optimistic-dad", "--rs-count", "5", "--rs-interval", "0.2")
    while not ping(agent_sock):
        time.sleep(0.005)
    # the MN's resident DHCP client, as the lab starts it (private /run and /var/lib/dhcpcd)
    start("mn", "unshare", "--mount", "--propagation", "private", "sh", "-c", PRIVATE_DIRS,
          str(t / "mn/dhcpcd/db"), "dhcpcd", "-4", "-B", "-M", "-d", "-f", "/var/lib/dhcpcd/dhcpcd.conf",
          "-c", "")
    run(["ip", "-n", ns["mn"], "link", "set", "mn-ar1", "up"])  # attach to ar1
    # solicit once the kernel has its link-local (an earlier RS's answer is dropped), as the agent does
    while "fe80" not in run(["ip", "-n", ns["mn"], "-6", "addr", "show", "dev", "mn-ar1"]).stdout:
        time.sleep(0.002)
    subprocess.run(
        ["ip", "netns", "exec", ns["mn"], "rdisc6", "-1", "-q", "-r", "10", "-w", "200", "mn-ar1"],
        capture_output=True,
        check=False,
    )
    while True:
        out = run(["ip", "-n", ns["mn"], "-j", "addr", "show", "dev", "mn-ar1"]).stdout
        fams = {a["family"] for a in json.loads(out)[0].get("addr_info", []) if a["scope"] == "global"}
        if fams == {"inet", "inet6"}:
            break
        time.sleep(0.005)
    t1 = time.perf_counter()
    for n in ns.values():
        netns.kill_all(n, grace=1.0)
        run(["ip", "netns", "del", n])
    for p in procs:
        p.wait()
    return t1 - t0, time.perf_counter() - t1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    os.environ["TESTBED_RUN_ROOT"] = str(tmp / "run")
    # the floor reuses configs the lab rendered (keys, zone): render once, keep a copy
    lab = Lab.up(None, "tbb")
    template = tmp / "template"
    try:
        shutil.copytree(
            lab.state.dir, template,
            ignore=shutil.ignore_patterns("*.pid", "*.log", "*.leases*", "*.sock", "*.jsonl"),
        )
    finally:
        lab.down()
    # the template's configs point at the lab's run dir; rewrite them to the template's
    for f in template.rglob("*.conf"):
        f.write_text(f.read_text().replace(str(lab.state.dir), str(template)))
    ups, downs, fups, fdowns = [], [], [], []
    for _ in range(args.rounds):
        u, d = timed_lab("tbb")
        ups.append(u)
        downs.append(d)
        fu, fd = floor("tbf", template)
        fups.append(fu)
        fdowns.append(fd)
    m = statistics.median
    print(
        f"machine: {platform.node()} {platform.release()} {os.cpu_count()} cores; "
        f"{args.rounds} rounds, medians"
    )
    print(f"testbed up   {m(ups):6.3f} s   floor {m(fups):6.3f} s   ratio {m(ups) / m(fups):5.2f}")
    print(f"testbed down {m(downs):6.3f} s   floor {m(fdowns):6.3f} s   ratio {m(downs) / m(fdowns):5.2f}")
    tot = m([u + d for u, d in zip(ups, downs, strict=True)])
    ftot = m([u + d for u, d in zip(fups, fdowns, strict=True)])
    print(f"up + down    {tot:6.3f} s   floor {ftot:6.3f} s   ratio {tot / ftot:5.2f}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
