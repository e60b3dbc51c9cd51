"""Kernel SCTP in two QEMU guests, routed by a plain Linux netns: TraSH binding updates.

Topology (all names tbvm-*; documentation prefixes only)::

    [mn VM] a0 192.0.2.10 ---- r-a 192.0.2.1    [tbvm-r]   r-c 203.0.113.1 ---- c0 [cn VM]
            b0 198.51.100.10 -- r-b 198.51.100.1                             203.0.113.10

Both VMs boot once per module. tcpdump runs on r-c (every mn<->cn packet crosses it once).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.sctp import SCTPChunkAbort, SCTPChunkInit, SCTPChunkParamRandom
from scapy.utils import rdpcap

from testbed.errors import TestbedError
from testbed.host import netns as ns
from testbed.mobility.protocol import Add, Delete, Primary, Status, encode
from testbed.runtimes.kernels import resolve
from testbed.runtimes.qemu import QemuConfig, QemuNode
from testbed.sctp.traffic import REFUSED
from tests.support.asconf_trace import AsconfEvent, read_events

pytestmark = [pytest.mark.integration, pytest.mark.vm]

NS_MN, NS_R, NS_CN = "tbvm-mn", "tbvm-r", "tbvm-cn"
A1, A2, CN = "192.0.2.10", "198.51.100.10", "203.0.113.10"
PY = sys.executable
CONTROL = "/run/tbvm-client.sock"  # inside the mn guest (tmpfs /run)


@dataclass
class Lab:
    mn: QemuNode
    cn: QemuNode
    state: Path
    measured: dict[str, Any]


def _sh(netns: str | None, *argv: str) -> None:
    ns.run(netns, list(argv))


def _build_namespaces() -> None:
    for n in (NS_MN, NS_R, NS_CN):
        if ns.exists(n):  # leftovers of an aborted run: ours by prefix
            ns.kill_all(n, grace=0.5)
            _sh(None, "ip", "netns", "del", n)
        _sh(None, "ip", "netns", "add", n)
    _sh(None, "ip", "link", "add", "a0", "netns", NS_MN, "type", "veth", "peer", "r-a", "netns", NS_R)
    _sh(None, "ip", "link", "add", "b0", "netns", NS_MN, "type", "veth", "peer", "r-b", "netns", NS_R)
    _sh(None, "ip", "link", "add", "c0", "netns", NS_CN, "type", "veth", "peer", "r-c", "netns", NS_R)
    ns.run(
        None,
        ["ip", "-n", NS_R, "-batch", "-"],
        input="\n".join(
            [
                "addr add 192.0.2.1/24 dev r-a",
                "addr add 198.51.100.1/24 dev r-b",
                "addr add 203.0.113.1/24 dev r-c",
                "link set lo up",
                "link set r-a up",
                "link set r-b up",
                "link set r-c up",
            ]
        )
        + "\n",
    )
    _sh(NS_R, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")


def _teardown_namespaces() -> None:
    for n in (NS_MN, NS_R, NS_CN):
        if ns.exists(n):
            ns.kill_all(n, grace=1.0)
            ns.run(None, ["ip", "netns", "del", n], check=False)


def _require_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, TAPs)")
    for tool, pkg in (
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("tcpdump", "tcpdump"),
        ("busybox", "busybox-static"),
    ):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: install the Debian package {pkg} (make setup)")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _require_tools()
    try:
        kernel = resolve()
    except TestbedError as e:
        pytest.fail(str(e))
    state = tmp_path_factory.mktemp("tbvm")
    _build_namespaces()
    mn = QemuNode(QemuConfig("mn", NS_MN, state / "mn", nics=["a0", "b0"], kernel=kernel))
    cn = QemuNode(QemuConfig("cn", NS_CN, state / "cn", nics=["c0"], kernel=kernel))
    errors: list[BaseException] = []

    def boot(vm: QemuNode) -> None:
        try:
            vm.start()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    try:
        th = threading.Thread(target=boot, args=(cn,))
        th.start()
        boot(mn)
        th.join()
        if errors:
            raise errors[0]
        mn.run(
            ["ip", "-batch", "-"],
            input=(
                f"link set a0 up\nlink set b0 up\naddr add {A1}/24 dev a0\n"
                "route add default via 192.0.2.1 metric 100\n"
            ),
        )
        cn.run(
            ["ip", "-batch", "-"],
            input=(f"link set c0 up\naddr add {CN}/24 dev c0\nroute add default via 203.0.113.1\n"),
        )
        measured = {
            "boot_s": {"mn": round(mn.boot_seconds, 2), "cn": round(cn.boot_seconds, 2)},
            "qemu_rss_mib": {"mn": mn.qemu_rss_kib() // 1024, "cn": cn.qemu_rss_kib() // 1024},
            "kernel": mn.kernel().release,
        }
        yield Lab(mn, cn, state, measured)
        (state / "measured.json").write_text(json.dumps(measured, indent=1))
        print("\nmeasured:", json.dumps(measured))
    finally:
        mn.shutdown()
        cn.shutdown()
        _teardown_namespaces()


class Capture:
    """tcpdump on the router's cn-side port, stopped with SIGINT + wait (so nothing is lost)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.proc = ns.spawn(
            NS_R,
            [
                "tcpdump",
                "-i",
                "r-c",
                "-n",
                "-Z",
                "root",
                "--immediate-mode",
                "-U",
                "-w",
                str(path),
                "sctp or icmp",
            ],
            log=path.with_suffix(".log"),
        )
        _until(lambda: "listening on" in _text(path.with_suffix(".log")), 10, "tcpdump start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=10)


def _text(p: Path) -> str:
    return p.read_text(errors="replace") if p.exists() else ""


def _until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``pred`` until truthy (event we cannot subscribe to), bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _json(p: Path) -> dict[str, Any]:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _acked(pcap: Path, kind: str) -> list[AsconfEvent]:
    """ASCONF of ``kind`` plus its ASCONF-ACK, once both are in the capture."""
    evs = read_events(pcap) if pcap.exists() else []
    req = [e for e in evs if e.kind == "ASCONF" and any(k == kind for k, _ in e.params)]
    if not req:
        return []
    ack = [e for e in evs if e.kind == "ASCONF-ACK" and e.seq == req[0].seq]
    return [req[0], ack[0]] if ack else []


def _ping_rtt_ms(vm: QemuNode, src: str, dst: str) -> float:
    out = vm.run(["ping", "-n", "-c", "5", "-i", "0.2", "-I", src, dst]).stdout
    return float(out.strip().splitlines()[-1].split("=")[1].split("/")[1])  # avg


def _icmp_rtts_ms(pcap: Path) -> list[float]:
    """Echo request -> reply times seen at the router (same hop as the ASCONF timing)."""
    from scapy.layers.inet import ICMP

    sent: dict[int, float] = {}
    rtts = []
    for p in rdpcap(str(pcap)):
        if ICMP in p and p[ICMP].type == 8:
            sent[p[ICMP].seq] = float(p.time)
        elif ICMP in p and p[ICMP].type == 0 and p[ICMP].seq in sent:
            rtts.append(round((float(p.time) - sent[p[ICMP].seq]) * 1e3, 2))
    return rtts


def _start_pair(lab: Lab, tag: str, port: int, rate: int = 20) -> tuple[int, int, Path, Path]:
    srv_stats, cli_stats = lab.state / "cn" / f"{tag}-server.json", lab.state / "mn" / f"{tag}-client.json"
    srv = lab.cn.spawn(
        [PY, "-m", "testbed.sctp.traffic", "server", "--port", str(port), "--stats", str(srv_stats)],
        log=lab.state / "cn" / f"{tag}-server.log",
    )
    _until(lambda: srv_stats.exists(), 30, "traffic server listening")
    cli = lab.mn.spawn(
        [
            PY,
            "-m",
            "testbed.sctp.traffic",
            "client",
            "--local",
            A1,
            "--server",
            CN,
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--size",
            "200",
            "--control",
            CONTROL,
            "--stats",
            str(cli_stats),
        ],
        log=lab.state / "mn" / f"{tag}-client.log",
    )
    return srv, cli, srv_stats, cli_stats


def test_trash_binding_updates_move_the_association(lab: Lab) -> None:
    mn, cn = lab.mn, lab.cn
    pcap = lab.state / "trash.pcap"
    cap = Capture(pcap)
    srv = cli = 0
    try:
        srv, cli, srv_stats, cli_stats = _start_pair(lab, "trash", 5001)

        def status() -> dict[str, Any]:
            if mn.wait(cli, 0) is not None:
                raise AssertionError("client died: " + _text(lab.state / "mn/trash-client.log"))
            try:
                return mn.unix_request(CONTROL, encode(Status()))
            except TestbedError:
                return {}  # control socket not up yet

        _until(lambda: status().get("state") == "ESTABLISHED", 30, "association")
        _until(lambda: _json(srv_stats).get("received", 0) >= 10, 20, "first messages")

        # A2 appears on the second access link (what DHCP + the lab would do), preferred route
        mn.run(
            ["ip", "-batch", "-"],
            input=(f"addr add {A2}/24 dev b0\nroute add default via 198.51.100.1 metric 50\n"),
        )
        lab.measured["ping_rtt_ms_via_A2"] = _ping_rtt_ms(mn, A2, CN)

        steps = [(Add(A2), "ADD_IP"), (Primary(A2), "SET_PRIMARY"), (Delete(A1), "DELETE_IP")]
        for cmd, kind in steps:
            r = mn.unix_request(CONTROL, encode(cmd))
            assert r["ok"], r
            _until(lambda kind=kind: _acked(pcap, kind), 15, f"{kind} ASCONF-ACK")
        before = _json(srv_stats).get("received", 0)
        _until(lambda: _json(srv_stats).get("received", 0) >= before + 20, 20, "messages after DEL")
        st = mn.unix_request(CONTROL, encode(Status()))
        assert st["state"] == "ESTABLISHED" and st["local"] == [A2], st

        mn.stop(cli)  # SIGTERM: the client closes gracefully, the server sees the end
        _until(lambda: _json(srv_stats).get("closed"), 20, "server saw SHUTDOWN")
        assert cn.wait(srv, 10) == 0
    finally:
        for vm, pid in ((mn, cli), (cn, srv)):
            if pid and vm.wait(pid, 0) is None:
                vm.stop(pid)
        cap.stop()
        mn.run(
            ["ip", "-batch", "-"],
            check=False,
            input=(f"route del default via 198.51.100.1 metric 50\naddr del {A2}/24 dev b0\n"),
        )

    # --- the wire: ADD_IP, SET_PRIMARY, DELETE_IP in order, each ASCONF with AUTH, each ACKed
    evs = read_events(pcap)
    asconfs = [e for e in evs if e.kind == "ASCONF"]
    assert [e.params for e in asconfs] == [(("ADD_IP", A2),), (("SET_PRIMARY", A2),), (("DELETE_IP", A1),)]
    assert all(e.authenticated for e in asconfs)
    acks = {e.seq: e for e in evs if e.kind == "ASCONF-ACK"}
    assert all(e.seq in acks and acks[e.seq].t >= e.t for e in asconfs)
    assert [e.seq for e in asconfs] == sorted(e.seq for e in asconfs)
    assert asconfs[0].src == A1 and asconfs[2].src == A2  # DELETE_IP not sent from A1
    add = asconfs[0]
    lab.measured["asconf_add_to_ack_ms_at_router"] = round((acks[add.seq].t - add.t) * 1e3, 2)
    lab.measured["ping_rtt_ms_at_router"] = _icmp_rtts_ms(pcap)

    # --- the stream: no gap, no duplicate, and its source moved from A1 to A2 once
    stats = _json(srv_stats)
    assert stats["missing"] == 0 and stats["gaps"] == [] and stats["duplicates"] == []
    assert stats["received"] == _json(cli_stats)["sent"]
    assert [(s["from"], s["to"]) for s in stats["source_switches"]] == [(A1, A2)]
    assert stats["messages"][0][2] == A1 and stats["messages"][-1][2] == A2
    log = {e["op"]: e for e in _json(cli_stats)["driver_log"]}
    lab.measured["driver_call_ms"] = {k: round(v["dt"] * 1e3, 2) for k, v in log.items()}


def test_no_auth_means_no_asconf_association_refused(lab: Lab) -> None:
    """auth_enable=0 with addip_noauth_enable=0: measured behaviour of Linux 6.1 is that the
    INIT offers ASCONF (supported-extensions) without AUTH parameters and the peer, which must
    not run ASCONF unauthenticated, ABORTs the INIT: connect fails, no ASCONF ever appears."""
    mn, cn = lab.mn, lab.cn
    for vm in (mn, cn):
        vm.set_sysctl("net.sctp.auth_enable", "0")
        assert vm.sctp_sysctls()["addip_noauth_enable"] == 0
    pcap = lab.state / "noauth.pcap"
    cap = Capture(pcap)
    srv = 0
    try:
        srv, cli, _srv_stats, cli_stats = _start_pair(lab, "noauth", 5002)
        assert mn.wait(cli, 30) == REFUSED
        refused = _json(cli_stats)
        assert refused["refused"] and "ConnectionRefusedError" in refused["error"]
    finally:
        if srv and cn.wait(srv, 0) is None:
            cn.stop(srv)
        cap.stop()
        for vm in (mn, cn):
            vm.set_sysctl("net.sctp.auth_enable", "1")
    pkts = [p for p in rdpcap(str(pcap)) if IP in p and p[IP].proto == 132]
    inits = [p for p in pkts if SCTPChunkInit in p]
    offered = [type(x) for p in inits for x in p[SCTPChunkInit].params]
    assert inits and SCTPChunkParamRandom not in offered  # no AUTH (RANDOM/HMAC/CHUNKS) offered
    aborts = [p for p in pkts if SCTPChunkAbort in p]
    assert aborts and all(p[IP].src == CN for p in aborts)
    assert read_events(pcap) == []  # never an ASCONF
