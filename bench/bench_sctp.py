"""Benchmark: kernel-SCTP QEMU nodes (two-ar-interop) — boot, ASCONF round trip, QEMU memory.

    .venv/bin/python bench/bench_sctp.py [--rounds 5] [--rate 5]

One lab is brought up (mn and cn are QEMU/TCG VMs) and measured, each figure beside a floor
taken in the same run:

(a) VM boot to agent-ready (``boot_seconds`` the lab records) beside the floor QEMU start →
    init's first console line, both on the host clock: a thread watches each VM's serial log
    (QEMU creates it when it starts; PID 1 writes "tb-init: ... init started" first). The
    guest-uptime stamps init writes show where the rest goes (modules, 9p mounts, the agent's
    Python start over 9p).
(b) ADD_IP binding update: with the lab's TraSH binding process stopped (it would issue its
    own ADD_IP), SCTP traffic runs cn ← mn, the MN attaches to ar2 as well, and each round
    sends ``add`` then ``del`` of the ar2 address through the traffic client's control socket
    (``sctp_bindx`` ADD/REM in the guest). tcpdump on the AR side of both access links gives
    ASCONF → ASCONF-ACK on the wire; bindx() → ASCONF-ACK crosses clocks (guest stamp, host
    capture; the guest clock is stepped to the host's before each round, NTP-style, and the
    error bound is printed). Floors: ``ping -c 5`` mn → cn in the guest (from the same source
    address, so the same route both ways), and those pings' echo → reply at the capture
    points of the ASCONF.
(c) host RSS of each QEMU, beside the guest RAM it was given.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.capture.tcpdump import Capture, LinkCapture  # noqa: E402
from testbed.decode.packet import Packet, decode_frame  # noqa: E402
from testbed.decode.pcap import iter_frames  # noqa: E402
from testbed.decode.sctp import ADD_IP, DELETE_IP, AsconfAckChunk, AsconfChunk  # noqa: E402
from testbed.errors import TestbedError  # noqa: E402
from testbed.lab import Lab  # noqa: E402
from testbed.mobility.protocol import Add, Delete, encode  # noqa: E402
from testbed.runtimes.qemu import QemuNode  # noqa: E402
from testbed.scenario.model import Traffic  # noqa: E402
from testbed.scenario.traffic import SctpTraffic  # noqa: E402
from testbed.services.binding import TRAFFIC_CONTROL  # noqa: E402

LAB = "tbbs"
TOPOLOGY = "two-ar-interop"  # both kernel nodes in QEMU (two-ar-sctp gives UML nodes here)
VMS = ("mn", "cn")
ACCESS = ("ar1", "ar2")
INIT_LINE = re.compile(r"tb-init: ([0-9.]+) s: (.+)")
EXCHANGE_TIMEOUT = 15.0


# ---------------------------------------------------------------- (a) boot: console watcher
@dataclass
class ConsoleTimes:
    """Host monotonic times seen on one VM's serial log while the lab boots it."""

    created: float | None = None  # QEMU opened its serial file: the process runs
    init_started: float | None = None  # PID 1's first line
    stamps: dict[str, float] = field(default_factory=dict)  # init's own guest-uptime stamps


class ConsoleWatcher:
    """Polls each VM's console.log from a thread while ``Lab.up`` runs (a 2 ms poll bounds the
    error and needs no inotify binding)."""

    def __init__(self, lab_dir: Path, nodes: tuple[str, ...]) -> None:
        self.paths = {n: lab_dir / n / "vm" / "console.log" for n in nodes}
        self.times = {n: ConsoleTimes() for n in nodes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        for n, p in self.paths.items():  # guest stamps: read once, at the end
            try:
                text = p.read_text(errors="replace")
            except OSError:
                continue
            for m in INIT_LINE.finditer(text):
                self.times[n].stamps.setdefault(m.group(2).split(" on ")[0], float(m.group(1)))

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for n, p in self.paths.items():
                t = self.times[n]
                if t.init_started is not None:
                    continue
                if t.created is None:
                    if p.exists():
                        t.created = now
                    continue
                try:
                    if "init started" in p.read_text(errors="replace"):
                        t.init_started = now
                except OSError:
                    pass
            if all(t.init_started is not None for t in self.times.values()):
                return
            time.sleep(0.002)


# ---------------------------------------------------------------- (b) ASCONF from the captures
@dataclass(frozen=True)
class Exchange:
    serial: int
    asconf: float  # capture time (unix) of the ASCONF
    ack: float  # of its ASCONF-ACK
    links: tuple[str, str]  # where each was seen: the two directions may take different ARs


def _frames(pcaps: dict[str, Path], after: float) -> list[tuple[float, str, Packet, bytes]]:
    """Every frame after ``after`` from all captures, decoded, in time order (one host clock)."""
    out = []
    for link, pcap in pcaps.items():
        if not pcap.exists():
            continue
        try:
            for fr in iter_frames(pcap):
                if fr.time >= after:
                    out.append((fr.time, link, decode_frame(fr.linktype, fr.data), fr.data))
        except (TestbedError, struct.error, ValueError):
            continue  # the last record is still being written: read again at the next poll
    out.sort(key=lambda x: x[0])
    return out


def _exchanges(pcaps: dict[str, Path], param: int, addr: str, after: float) -> list[Exchange]:
    """ASCONF requests carrying ``param`` for ``addr`` seen after ``after``, with their ACK.

    The request and its ACK may cross different access links (the MN's route to the CN and the
    CN's route back to the source address differ), so the captures are merged first.
    """
    out: list[Exchange] = []
    reqs: dict[tuple[int, str], tuple[float, str]] = {}
    for t, link, p, _ in _frames(pcaps, after):
        if p.sctp is None or p.ip is None:
            continue
        for c in p.sctp.chunks:
            if isinstance(c, AsconfAckChunk) and (c.serial, p.ip.src) in reqs:
                t0, link0 = reqs.pop((c.serial, p.ip.src))
                out.append(Exchange(c.serial, t0, t, (link0, link)))
            elif isinstance(c, AsconfChunk) and any(q.type == param and q.address == addr
                                                    for q in c.params):
                reqs[(c.serial, p.ip.dst)] = (t, link)
    return out


def _wait_exchange(pcaps: dict[str, Path], param: int, addr: str, after: float) -> Exchange:
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    while True:
        found = _exchanges(pcaps, param, addr, after)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise TestbedError(f"no ASCONF/ASCONF-ACK for {addr} in {EXCHANGE_TIMEOUT:g} s "
                               f"(captures: {', '.join(map(str, pcaps.values()))})")
        time.sleep(0.02)  # tcpdump -U writes each packet as it comes; poll the file


def _echo_rtts(pcaps: dict[str, Path], src: str, dst: str, after: float) -> tuple[list[float], set]:
    """ICMP echo request (src → dst) → reply, by (id, seq), at the AR-side capture points."""
    sent: dict[tuple[int, int], tuple[float, str]] = {}
    rtts: list[float] = []
    links: set[tuple[str, str]] = set()
    for t, link, p, data in _frames(pcaps, after):
        ip = p.ip
        if ip is None or ip.proto != 1 or ip.payload_end - ip.payload_offset < 8:
            continue
        typ = data[ip.payload_offset]
        ident, seq = struct.unpack_from("!HH", data, ip.payload_offset + 4)
        if typ == 8 and (ip.src, ip.dst) == (src, dst):
            sent[(ident, seq)] = (t, link)
        elif typ == 0 and (ip.src, ip.dst) == (dst, src) and (ident, seq) in sent:
            t0, link0 = sent.pop((ident, seq))
            rtts.append(t - t0)
            links.add((link0, link))
    return rtts, links


def _ping_times(out: str) -> list[float]:
    return [float(x) / 1e3 for x in re.findall(r"time=([0-9.]+) ms", out)]


@dataclass
class AsconfResults:
    bindx_to_ack: list[float] = field(default_factory=list)
    bindx_to_wire: list[float] = field(default_factory=list)  # bindx() call → ASCONF captured
    bindx_call: list[float] = field(default_factory=list)  # the syscall's own duration (guest)
    add_wire: list[float] = field(default_factory=list)
    del_wire: list[float] = field(default_factory=list)
    control: list[float] = field(default_factory=list)  # host → guest → bindx → reply
    ping: list[float] = field(default_factory=list)
    echo_wire: list[float] = field(default_factory=list)
    links: set[tuple[str, str]] = field(default_factory=set)  # (ASCONF link, ACK link)
    echo_links: set[tuple[str, str]] = field(default_factory=set)
    clock_rtt: float = 0.0  # the guest agent's fastest round trip
    clock_error: list[float] = field(default_factory=list)  # bound of each clock step
    request_to_ack: list[float] = field(default_factory=list)  # host clock only: upper bound


def _sync_clock(mn: QemuNode, rtt_min: float, tries: int = 8) -> float:
    """Step the guest wall clock to the host's, NTP-style: the request lands about half a
    round trip after it is sent, so send host time + rtt/2 and keep a step whose own round
    trip was near the fastest seen. Returns the error bound (half that step's round trip)."""
    assert mn.agent is not None
    rtt = float("inf")
    for _ in range(tries):
        t0 = time.monotonic()
        mn.agent.request("settime", t=time.time() + rtt_min / 2, timeout=5.0)
        rtt = time.monotonic() - t0
        if rtt <= 1.25 * rtt_min:
            break  # else step again: the last step is the one that counts
    return rtt / 2


def _stop_binding(lab: Lab) -> None:
    """The TraSH binding process would send its own ADD_IP when ar2 is configured."""
    for rec in lab.state.service_records():
        if rec.service == "binding":
            lab.runtime(rec.node).stop(rec.pid, grace=2.0)
            lab.state.services = [s for s in lab.state.services if s["pid"] != rec.pid]
            lab.state.save()


def measure_asconf(lab: Lab, rounds: int, rate: float, work: Path) -> AsconfResults:
    res = AsconfResults()
    mn = lab.runtime("mn")
    assert isinstance(mn, QemuNode), f"{TOPOLOGY}: mn is a QEMU node"
    cn_addr = lab.plan.address_of("cn", 4) or ""
    _stop_binding(lab)
    cap = Capture(work / "pcap")
    for ar in ACCESS:
        _, ar_if = lab.plan.access_iface(ar)
        cap.links.append(LinkCapture(ar_if.ifname, lab.state.ns(ar), ar_if.ifname,
                                     work / "pcap" / f"{ar_if.ifname}.pcap",
                                     work / "logs" / f"{ar_if.ifname}.tcpdump.log"))
    pcaps = {lc.link: lc.pcap for lc in cap.links}
    traffic = SctpTraffic(lab, "cn", Traffic(rate=rate, size=100), work)
    cap.start()
    try:
        traffic.start()
        lab.mobile.attach("ar2")  # attach without detaching ar1: the association keeps its path
        addr = lab.mobile.wait_configured("ar2").ipv4[0]
        mn_addr = lab.access_state("ar1").ipv4[0]
        rtts = []
        assert mn.agent is not None
        for _ in range(8):
            t = time.monotonic()
            mn.agent.request("ping", timeout=5.0)
            rtts.append(time.monotonic() - t)
        res.clock_rtt = min(rtts)
        start = time.time()
        for _ in range(rounds):
            res.clock_error.append(_sync_clock(mn, res.clock_rtt))
            for cmd, param in ((Add(addr), ADD_IP), (Delete(addr), DELETE_IP)):
                t_host = time.time()
                t0 = time.monotonic()
                r = mn.unix_request(str(TRAFFIC_CONTROL), encode(cmd))
                res.control.append(time.monotonic() - t0)
                if not r.get("ok"):
                    raise TestbedError(f"traffic client refused {cmd.OP} {addr}: {r.get('error')}")
                ex = _wait_exchange(pcaps, param, addr, t_host)  # the capture's clock is the host's
                res.links.add(ex.links)
                if cmd.OP == "add":
                    res.add_wire.append(ex.ack - ex.asconf)
                    res.bindx_to_ack.append(ex.ack - float(r["t"]))
                    res.bindx_to_wire.append(ex.asconf - float(r["t"]))
                    res.bindx_call.append(float(r["dt"]))
                    res.request_to_ack.append(ex.ack - t_host)
                else:
                    res.del_wire.append(ex.ack - ex.asconf)
            # from the association's primary address, as the ASCONF: the same route both ways
            cp = mn.run(["ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", "-I", mn_addr, cn_addr],
                        timeout=20)
            res.ping += _ping_times(cp.stdout)
    finally:
        try:
            traffic.stop()
        finally:
            cap.stop()
    res.echo_wire, res.echo_links = _echo_rtts(pcaps, mn_addr, cn_addr, start)
    return res


# ---------------------------------------------------------------- report
def _ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3


def _paths(links: set[tuple[str, str]]) -> str:
    return ", ".join(f"{a}/{b}" for a, b in sorted(links)) or "?"


def _row(label: str, value: str, floor_label: str, floor: str, ratio: float | None) -> str:
    r = f"{ratio:6.2f}" if ratio is not None else "     -"
    return f"  {label:<38} {value:>13}   {floor_label:<42} {floor:>9}   {r}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="ADD/DEL rounds (each with a ping -c 5)")
    ap.add_argument("--rate", type=float, default=5.0, help="SCTP messages per second meanwhile")
    ap.add_argument("--keep", action="store_true", help="keep the run dir (captures, logs)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-sctp-"))
    os.environ["TESTBED_RUN_ROOT"] = str(tmp / "run")
    lab_dir = tmp / "run" / LAB
    watcher = ConsoleWatcher(lab_dir, VMS)
    watcher.start()
    lab: Lab | None = None
    try:
        t0 = time.perf_counter()
        lab = Lab.up(TOPOLOGY, LAB)
        up = time.perf_counter() - t0
        watcher.stop()
        vms = {v["node"]: v for v in lab.state.kernel_nodes}
        rss = {n: lab.runtime(n).qemu_rss_kib() for n in VMS}  # before traffic: idle guests
        memory = {n: lab.runtime(n).cfg.memory_mb for n in VMS}
        asc = measure_asconf(lab, args.rounds, args.rate, tmp / "work")
        rss_after = {n: lab.runtime(n).qemu_rss_kib() for n in VMS}
    finally:
        watcher.stop()
        if lab is not None:
            lab.close()
            lab.down()
        if args.keep:
            print(f"kept: {tmp / 'work'}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    release = vms["mn"]["release"]
    print(f"machine: {platform.node()} {platform.release()} {os.cpu_count()} cores; guest kernel "
          f"{release} under QEMU/TCG; lab {TOPOLOGY} up in {up:.1f} s")
    print(f"  {'measure':<38} {'value':>13}   {'floor (same run)':<42} {'floor':>9}    ratio")
    print("(a) VM boot, one lab up (n=1 per VM; both boot at once, beside the lab's daemons)")
    for n in VMS:
        ct = watcher.times[n]
        boot = float(vms[n]["boot_seconds"])
        if ct.created is not None and ct.init_started is not None:
            floor = ct.init_started - ct.created
            print(_row(f"{n}: QemuNode.start -> guest agent ready", f"{boot:7.2f} s",
                       "QEMU start -> init's first console line", f"{floor:7.2f} s", boot / floor))
        else:
            print(_row(f"{n}: QemuNode.start -> guest agent ready", f"{boot:7.2f} s",
                       "QEMU start -> init's first line: unseen", "-", None))
        s = ct.stamps
        if s:
            print("      guest uptime at init: " + ", ".join(f"{k} {v:.2f} s" for k, v in s.items()))
    n = len(asc.add_wire)
    print(f"(b) ASCONF, {n} rounds (medians); request/ACK seen on {_paths(asc.links)}, "
          f"echo/reply on {_paths(asc.echo_links)}")
    ping, echo = _ms(asc.ping), _ms(asc.echo_wire) if asc.echo_wire else float("nan")
    b2a = _ms(asc.bindx_to_ack)
    print(_row("ADD_IP: sctp_bindx() -> ASCONF-ACK", f"{b2a:7.2f} ms",
               f"ping mn->cn in the guest (n={len(asc.ping)})", f"{ping:7.2f} ms", b2a / ping))
    add = _ms(asc.add_wire)
    print(_row("ADD_IP: ASCONF -> ACK (wire, AR side)", f"{add:7.2f} ms",
               f"ICMP echo -> reply, same point (n={len(asc.echo_wire)})", f"{echo:7.2f} ms",
               add / echo if asc.echo_wire else None))
    dl = _ms(asc.del_wire)
    print(_row("DELETE_IP: ASCONF -> ACK (wire)", f"{dl:7.2f} ms",
               "ICMP echo -> reply, same point", f"{echo:7.2f} ms",
               dl / echo if asc.echo_wire else None))
    print(f"      bindx() is stamped by the guest's clock, stepped to the host's before each round "
          f"(error <= +-{_ms(asc.clock_error):.1f} ms): the call itself {_ms(asc.bindx_call):.2f} ms, "
          f"bindx() -> ASCONF on the wire {_ms(asc.bindx_to_wire):.2f} ms.")
    print(f"      host clock only: control request sent -> ASCONF-ACK {_ms(asc.request_to_ack):.1f} ms "
          f"(relay host -> guest agent -> traffic client; its round trip {_ms(asc.control):.1f} ms)")
    print("(c) QEMU host memory")
    for n in VMS:
        mib, after = rss[n] / 1024, rss_after[n] / 1024
        print(_row(f"{n}: QEMU RSS (idle / after traffic)", f"{mib:4.0f}/{after:4.0f} MiB",
                   "guest RAM given (-m)", f"{memory[n]:7d} MiB", mib / memory[n]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
