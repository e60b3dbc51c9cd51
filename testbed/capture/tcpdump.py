"""Capturing every link of a lab: one tcpdump per link, one pcap per link.

Each link is captured on its infrastructure end (the core side of a core link, the AR side of
an access link), which stays up while the MN attaches and detaches. With several mobile nodes
an access network is captured once, on its bridge (``<ar>-lan``): everything an MN sends or
receives there goes through the router, and one tcpdump per network is what 50 MNs afford (one
per port would be a hundred). tcpdump runs inside that
node's namespace with ``--immediate-mode`` and ``-U`` (packets reach the file as they come),
and is stopped with SIGINT and waited for: otherwise the last packets are lost.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.errors import TestbedError
from testbed.host import netns
from testbed.host.daemonctl import tail
from testbed.host.tools import require
from testbed.model.addressing import LabPlan

# The capture ring per link (KiB). In immediate mode libpcap uses a ring of 2 MiB by default;
# on a busy 2-core box a tcpdump not scheduled for a few hundred ms overflowed it and the
# kernel dropped packets (13 of ~400 in one run). 16 MiB holds several seconds of lab traffic.
# A link that carries many MNs' traffic gets 2 MiB more per MN, up to 64 MiB (50 MNs at 20
# messages/s and their echoes: ~20000 drops with 2 MiB rings, ~800 with 64 MiB).
BUFFER_KIB = 16384
BUFFER_KIB_PER_MN = 2048
MAX_BUFFER_KIB = 65536
DROPPED = re.compile(r"(\d+) packets? dropped by kernel")


def tcpdump_argv(ifname: str, pcap: Path, buffer_kib: int = BUFFER_KIB) -> list[str]:
    """Whole packets, written as they come; says "listening on" once its socket is open."""
    return ["tcpdump", "-i", ifname, "-n", "-s", "0", "-U", "--immediate-mode",
            "-B", str(buffer_kib), "-Z", "root", "-w", str(pcap)]


def capture_points(plan: LabPlan) -> list[tuple[str, str]]:
    """(node, interface) of every captured link: each link's infrastructure end; with several
    mobile nodes each access network once, on its router's bridge, instead of per port."""
    topo = plan.topology
    points = [(v.a, v.a_ifname) for v in plan.veths]
    if len(topo.mobiles) > 1:
        lans = {acc.router: plan.lan(acc.router).ifname for acc in topo.access_networks}
        ports = {i.ifname for ar in lans for i in plan.nodes[ar].ifaces if i.master}
        points = [p for p in points if p[1] not in ports] + list(lans.items())
    return points


def buffer_kib(mobiles: int) -> int:
    """A link carries every MN's traffic: the ring grows with them, or tcpdump drops packets."""
    return min(MAX_BUFFER_KIB, max(BUFFER_KIB, BUFFER_KIB_PER_MN * mobiles))


@dataclass
class LinkCapture:
    link: str  # "ar1-mn": the captured interface's name, unique per lab
    netns: str
    ifname: str
    pcap: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    buffer_kib: int = BUFFER_KIB


@dataclass
class Capture:
    """Start/stop tcpdump on a set of (netns, ifname) links, writing ``<dir>/<link>.pcap``."""

    directory: Path
    links: list[LinkCapture] = field(default_factory=list)

    @classmethod
    def for_lab(cls, lab, directory: Path) -> Capture:
        directory = directory.resolve()
        cap = cls(directory)
        buffer = buffer_kib(len(lab.topo.mobiles))
        for node, ifname in capture_points(lab.plan):
            cap.links.append(LinkCapture(ifname, lab.state.ns(node), ifname, directory / f"{ifname}.pcap",
                                         directory.parent / "logs" / f"{ifname}.tcpdump.log",
                                         buffer_kib=buffer))
        return cap

    def start(self, timeout: float = 10.0) -> None:
        require("tcpdump", "tcpdump")
        self.directory.mkdir(parents=True, exist_ok=True)
        for lc in self.links:
            lc.log.parent.mkdir(parents=True, exist_ok=True)
        try:
            for lc in self.links:
                lc.proc = netns.spawn(lc.netns, tcpdump_argv(lc.ifname, lc.pcap, lc.buffer_kib),
                                      log=lc.log)
            deadline = time.monotonic() + timeout
            for lc in self.links:  # tcpdump says "listening on" once its socket is open
                while "listening on" not in _read(lc.log):
                    if lc.proc and lc.proc.poll() is not None:
                        raise TestbedError(f"tcpdump on {lc.link} exited: {tail(lc.log)}")
                    if time.monotonic() > deadline:
                        raise TestbedError(f"tcpdump on {lc.link} not listening after {timeout:g} s")
                    time.sleep(0.01)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 5.0) -> list[Path]:
        for lc in self.links:
            if lc.proc and lc.proc.poll() is None:
                os.killpg(lc.proc.pid, signal.SIGINT)
        for lc in self.links:
            if lc.proc:
                try:
                    lc.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(lc.proc.pid, signal.SIGKILL)
                    lc.proc.wait()
        return [lc.pcap for lc in self.links if lc.pcap.exists()]

    def drops(self) -> dict[str, int]:
        """Packets each tcpdump reported "dropped by kernel" (its ring was full: the process was
        not scheduled in time), once stopped. A gap in a capture with drops may be the
        capture's, not the network's."""
        out = {}
        for lc in self.links:
            m = DROPPED.search(_read(lc.log))
            if m and int(m.group(1)):
                out[lc.link] = int(m.group(1))
        return out

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
