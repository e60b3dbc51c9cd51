"""Kernel SCTP in two User-Mode Linux nodes, routed by a plain Linux netns: TraSH binding updates,
plus what the UML runtime promises (shared agent, carrier, clock, memory, clean teardown, errors).

Topology (all names tbu-*; documentation prefixes only)::

    [mn UML] a0 192.0.2.10 ---- r-a 192.0.2.1    [tbu-r]   r-c 203.0.113.1 ---- c0 [cn UML]
             b0 198.51.100.10 -- r-b 198.51.100.1                             203.0.113.10

Both nodes boot once per module (in parallel). tcpdump runs on r-c (every mn<->cn packet crosses
it once). Measured figures are printed and written to ``measured.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.errors import ConfigError, TestbedError
from testbed.host import netns as ns
from testbed.host.poll import poll_until
from testbed.mobility.protocol import Add, Delete, Primary, Status, encode
from testbed.runtimes import uml_kernels
from testbed.runtimes.guest import GuestBootError
from testbed.runtimes.uml import UmlConfig, UmlNode
from testbed.runtimes.uml_kernels import UmlKernel
from tests.support.asconf_trace import AsconfEvent, read_events

pytestmark = [pytest.mark.integration]

NS_MN, NS_R, NS_CN, NS_T = "tbu-mn", "tbu-r", "tbu-cn", "tbu-t"
A1, A2, CN = "192.0.2.10", "198.51.100.10", "203.0.113.10"
PY = sys.executable
CONTROL = "/run/tbu-client.sock"  # inside the mn guest (tmpfs /run)
LADDER = ((Add(A2), "ADD_IP"), (Primary(A2), "SET_PRIMARY"), (Delete(A1), "DELETE_IP"))  # TraSH order
MEASURED: dict[str, Any] = {}


@dataclass
class Lab:
    mn: UmlNode
    cn: UmlNode
    state: Path


def _ip(netns: str, *cmds: str) -> None:
    ns.run(None, ["ip", "-n", netns, "-batch", "-"], input="".join(c + "\n" for c in cmds))


def _fresh_netns(*names: str) -> None:
    for n in names:
        if ns.exists(n):  # leftovers of an aborted run: ours by prefix
            ns.kill_all(n, grace=0.5)
            ns.run(None, ["ip", "netns", "del", n])
        ns.run(None, ["ip", "netns", "add", n])


def _del_netns(*names: str) -> None:
    for n in names:
        if ns.exists(n):
            ns.kill_all(n, grace=1.0)
            ns.run(None, ["ip", "netns", "del", n], check=False)


def _build_namespaces() -> None:
    _fresh_netns(NS_MN, NS_R, NS_CN)
    for a, b, peer in (("a0", "r-a", NS_MN), ("b0", "r-b", NS_MN), ("c0", "r-c", NS_CN)):
        ns.run(None, ["ip", "link", "add", a, "netns", peer, "type", "veth", "peer", b, "netns", NS_R])
    _ip(NS_R, "addr add 192.0.2.1/24 dev r-a", "addr add 198.51.100.1/24 dev r-b",
        "addr add 203.0.113.1/24 dev r-c", "link set lo up", "link set r-a up", "link set r-b up",
        "link set r-c up")
    ns.run(NS_R, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])


def _kernel() -> UmlKernel:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces)")
    for tool, pkg in (("tcpdump", "tcpdump"), ("depmod", "kmod")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: install the Debian package {pkg} (make setup)")
    try:
        return uml_kernels.resolve()
    except TestbedError as e:
        pytest.fail(str(e))


def _live_pids(netns: str) -> list[int]:
    """Processes in the netns, ignoring zombies (this host's init reaps orphans late)."""
    out = []
    for pid in ns.pids(netns):
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                out.append(pid)
        except OSError:
            pass
    return out


def _fds_into(directory: Path) -> list[str]:
    """Open file descriptors anywhere on the host that point into ``directory``."""
    prefix, hits = str(directory) + "/", []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                    hits.append(f"{pid}/{fd}")
        except OSError:
            continue
    return hits


def assert_nothing_left(node: UmlNode, netns: str) -> None:
    """No process, socket, memory file or boot file of ``node`` remains on the host."""
    left = poll_until(lambda: not _live_pids(netns), 5.0)  # a SIGKILLed process leaves async
    assert left, f"processes left in {netns}: {_live_pids(netns)}"
    for pid in (node.relay_pid, node.uml_pid):
        assert not pid or not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not node.agent_socket.exists(), "agent socket left"
    assert not node.boot_dir.exists(), "boot files left"
    assert not (node.sock_dir / "umid").exists() if node.sock_dir else True, "umid dir left"
    if node.mem_dir is not None:
        assert not node.mem_dir.exists(), f"memory dir {node.mem_dir} left"
        assert not _fds_into(node.mem_dir), "a process still holds the memory file"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    kernel = _kernel()
    state = tmp_path_factory.mktemp("tbu")
    _build_namespaces()
    mn = UmlNode(UmlConfig("mn", NS_MN, state / "mn", nics=["a0", "b0"], kernel=kernel, boot_timeout=30))
    cn = UmlNode(UmlConfig("cn", NS_CN, state / "cn", nics=["c0"], kernel=kernel, boot_timeout=30))
    errors: list[BaseException] = []

    def boot(node: UmlNode) -> None:
        try:
            node.start()
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    try:
        th = threading.Thread(target=boot, args=(cn,))
        th.start()
        boot(mn)
        th.join()
        if errors:
            raise errors[0]
        for ifname in ("a0", "b0"):
            mn.set_link(ifname, True)
        mn.run(["ip", "-batch", "-"],
               input=f"addr add {A1}/24 dev a0\nroute add default via 192.0.2.1 metric 100\n")
        cn.set_link("c0", True)
        cn.run(["ip", "-batch", "-"], input=f"addr add {CN}/24 dev c0\nroute add default via 203.0.113.1\n")
        MEASURED.update(kernel=mn.kernel().release,
                        boot_s={"mn": round(mn.boot_seconds, 2), "cn": round(cn.boot_seconds, 2)})
        yield Lab(mn, cn, state)
    finally:
        for node in (mn, cn):
            node.shutdown()
        (state / "measured.json").write_text(json.dumps(MEASURED, indent=1))
        print("\nmeasured:", json.dumps(MEASURED))
        _del_netns(NS_MN, NS_R, NS_CN)
    for node, netns in ((mn, NS_MN), (cn, NS_CN)):
        assert_nothing_left(node, netns)


class Capture:
    """tcpdump on a router port, stopped with SIGINT + wait (so nothing is lost)."""

    def __init__(self, path: Path, ifname: str = "r-c", expr: str = "sctp or icmp") -> None:
        self.path, self.log = path, path.with_suffix(".log")
        self.proc = ns.spawn(NS_R, ["tcpdump", "-i", ifname, "-n", "-Z", "root", "--immediate-mode", "-U",
                                    "-w", str(path), expr], log=self.log)
        _until(lambda: "listening on" in _text(self.log), 10, "tcpdump start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=10)


def _text(p: Path) -> str:
    return p.read_text(errors="replace") if p.exists() else ""


def _until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    """A condition with no notification to wait on (files another process rewrites)."""
    v = poll_until(pred, timeout, interval=0.02, backoff=1.5, max_interval=0.2)
    if not v:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
    return v


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


def _start_pair(lab: Lab, tag: str, port: int) -> tuple[int, int, Path, Path]:
    srv_stats, cli_stats = lab.state / "cn" / f"{tag}-server.json", lab.state / "mn" / f"{tag}-client.json"
    srv = lab.cn.spawn([PY, "-m", "testbed.sctp.traffic", "server", "--port", str(port),
                        "--stats", str(srv_stats)], log=lab.state / "cn" / f"{tag}-server.log")
    _until(lambda: srv_stats.exists(), 30, "traffic server listening")
    cli = lab.mn.spawn([PY, "-m", "testbed.sctp.traffic", "client", "--local", A1, "--server", CN,
                        "--port", str(port), "--rate", "50", "--size", "200", "--control", CONTROL,
                        "--stats", str(cli_stats)], log=lab.state / "mn" / f"{tag}-client.log")
    return srv, cli, srv_stats, cli_stats


def test_trash_binding_updates_move_the_association(lab: Lab) -> None:
    """ADD_IP -> SET_PRIMARY -> DELETE_IP with real kernel SCTP (addip_enable=1, auth_enable=1):
    each ASCONF carries AUTH before it and is acknowledged; the stream survives the move."""
    mn, cn = lab.mn, lab.cn
    assert mn.sctp_sysctls()["auth_enable"] == 1 and cn.sctp_sysctls()["addip_enable"] == 1
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
        # A2 appears on the second access link (what DHCP would do), preferred route
        mn.run(["ip", "-batch", "-"],
               input=f"addr add {A2}/24 dev b0\nroute add default via 198.51.100.1 metric 50\n")
        for cmd, kind in LADDER:
            r = mn.unix_request(CONTROL, encode(cmd))
            assert r["ok"], r
            _until(lambda kind=kind: _acked(pcap, kind), 15, f"{kind} ASCONF-ACK")
        before = _json(srv_stats).get("received", 0)
        _until(lambda: _json(srv_stats).get("received", 0) >= before + 20, 20, "messages after DELETE_IP")
        st = mn.unix_request(CONTROL, encode(Status()))
        assert st["state"] == "ESTABLISHED" and st["local"] == [A2], st
        mn.stop(cli)  # SIGTERM: the client closes gracefully, the server sees the end
        _until(lambda: _json(srv_stats).get("closed"), 20, "server saw SHUTDOWN")
        assert cn.wait(srv, 10) == 0
    finally:
        for node, pid in ((mn, cli), (cn, srv)):
            if pid and node.wait(pid, 0) is None:
                node.stop(pid)
        cap.stop()
        mn.run(["ip", "-batch", "-"], check=False,
               input=f"route del default via 198.51.100.1 metric 50\naddr del {A2}/24 dev b0\n")

    evs = read_events(pcap)
    asconfs = [e for e in evs if e.kind == "ASCONF"]
    assert [e.params for e in asconfs] == [(("ADD_IP", A2),), (("SET_PRIMARY", A2),), (("DELETE_IP", A1),)]
    assert all(e.authenticated for e in asconfs), "an ASCONF without AUTH before it"
    acks = {e.seq: e for e in evs if e.kind == "ASCONF-ACK"}
    assert all(e.seq in acks and acks[e.seq].t >= e.t for e in asconfs)
    assert asconfs[0].src == A1 and asconfs[2].src == A2  # DELETE_IP not sent from A1
    MEASURED["asconf_to_ack_ms_at_router"] = {
        kind: round((acks[e.seq].t - e.t) * 1e3, 3) for (_, kind), e in zip(LADDER, asconfs, strict=True)}
    stats = _json(srv_stats)
    assert stats["missing"] == 0 and stats["gaps"] == [] and stats["duplicates"] == []
    assert stats["received"] == _json(cli_stats)["sent"]
    assert [(s["from"], s["to"]) for s in stats["source_switches"]] == [(A1, A2)]
    MEASURED["driver_call_ms"] = {e["op"]: round(e["dt"] * 1e3, 2) for e in _json(cli_stats)["driver_log"]}


ATTACH = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from testbed.runtimes import uml_kernels
    from testbed.runtimes.uml import UmlConfig, UmlNode
    rec = json.loads(sys.argv[1])
    node = UmlNode.attach(UmlConfig("mn", sys.argv[2], Path(sys.argv[3]), nics=["a0", "b0"],
                                    kernel=uml_kernels.resolve()), rec)
    t0 = time.time()
    host = node.run(["hostname"]).stdout.strip()
    info = node.agent.request("relay", timeout=5)
    t1 = time.time()
    node.close()
    print(json.dumps({"t0": t0, "t1": t1, "hostname": host, "clients": info["clients"]}))
""")


def test_two_host_processes_use_one_node_at_once(lab: Lab) -> None:
    """While this process waits on a slow guest command, another host process attaches to the
    same node, runs commands and leaves: the relay serves both at once."""
    slow: dict[str, float] = {}

    def sleeper() -> None:
        slow["t0"] = time.time()
        lab.mn.run(["sleep", "2"])
        slow["t1"] = time.time()

    th = threading.Thread(target=sleeper)
    th.start()
    cp = subprocess.run([PY, "-c", ATTACH, json.dumps(lab.mn.record()), NS_MN, str(lab.mn.state_dir)],
                        capture_output=True, text=True, timeout=60, check=False)
    th.join(30)
    assert cp.returncode == 0, cp.stderr
    other = json.loads(cp.stdout)
    assert other["hostname"] == "mn" and other["clients"] >= 2
    assert slow["t0"] < other["t0"] and other["t1"] < slow["t1"], (slow, other)  # inside, not after
    assert lab.mn.run(["true"]).returncode == 0  # this process's connection is unaffected


def test_set_link_is_carrier_for_the_peer_and_link_state_for_the_guest(lab: Lab) -> None:
    """Down: the router port loses carrier (and stays admin-up), the guest NIC goes down.
    Up: carrier back, the guest NIC up and passing traffic at once, also when the guest had
    brought the NIC up while the host side was down (the vector driver's stuck state)."""
    mn = lab.mn

    def peer_flags() -> list[str]:
        out = ns.run(None, ["ip", "-n", NS_R, "-j", "link", "show", "dev", "r-b"]).stdout
        return json.loads(out)[0]["flags"]

    def guest_up() -> bool:
        return "UP" in json.loads(mn.run(["ip", "-j", "link", "show", "dev", "b0"]).stdout)[0]["flags"]

    mn.run(["ip", "addr", "add", f"{A2}/24", "dev", "b0"])
    try:
        t = time.monotonic()
        mn.set_link("b0", False)
        down_ms = (time.monotonic() - t) * 1e3
        assert "LOWER_UP" not in peer_flags() and "UP" in peer_flags() and not guest_up()
        mn.run(["ip", "link", "set", "b0", "up"])  # as a lab's configure step may do: a dead open
        t = time.monotonic()
        mn.set_link("b0", True)
        up_ms = (time.monotonic() - t) * 1e3
        assert "LOWER_UP" in peer_flags() and guest_up()
        mn.run(["ping", "-n", "-c", "1", "-W", "2", "-I", "b0", "198.51.100.1"])  # first try: live
        mn.set_link("b0", True)  # idempotent while attached: no flap, still passing traffic
        mn.run(["ping", "-n", "-c", "1", "-W", "2", "-I", "b0", "198.51.100.1"])
        MEASURED["set_link_ms"] = {"down": round(down_ms, 1), "up": round(up_ms, 1)}
    finally:
        mn.run(["ip", "addr", "del", f"{A2}/24", "dev", "b0"], check=False)


def test_guest_clock_is_the_host_clock(lab: Lab) -> None:
    """UML boots a few ms behind the host's wall clock and then runs at its rate; start()
    stepped the offset away, so guest and host agree to the measurement's uncertainty."""
    for node in (lab.mn, lab.cn):
        off = node.clock_offset(samples=10)
        assert abs(off.offset_s) < off.uncertainty_s + 0.0005, (off, node.boot_clock_offset)
        boot = node.boot_clock_offset
        assert boot is not None and abs(boot.offset_s) < 0.05  # boot's offset: ms, not seconds
        MEASURED.setdefault("clock_offset_ms", {})[node.name] = {
            "at_boot": f"{boot.offset_s * 1e3:+.3f} +/- {boot.uncertainty_s * 1e3:.3f}",
            "after_sync": f"{off.offset_s * 1e3:+.3f} +/- {off.uncertainty_s * 1e3:.3f}"}


SINK = """
import socket, sys
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("listening", flush=True)
c, _ = s.accept()
n = 0
while chunk := c.recv(1 << 16):
    n += len(chunk)
print(n)
"""


def _truncated(node: UmlNode) -> int:
    """Frames the guest's IP layer found shorter than their header says (IpExtInTruncatedPkts)."""
    head, values = [line.split() for line in node.run(["cat", "/proc/net/netstat"]).stdout.splitlines()
                    if line.startswith("IpExt:")][:2]
    return int(dict(zip(head, values, strict=True))["InTruncatedPkts"])


def test_bulk_tcp_from_a_linux_peer_arrives_whole(lab: Lab) -> None:
    """A Linux sender on the segment (the router) hands veth GSO packets of many segments; the
    guest NIC takes them whole, so a bulk transfer arrives without truncated frames (with
    MTU-sized receive buffers every GSO frame was cut short and only retransmissions got in:
    4 MB took minutes)."""
    size, port = 4 << 20, 7711
    before = _truncated(lab.cn)
    log = lab.state / "cn" / "bulk-sink.log"
    lab.cn.spawn(["python3", "-c", SINK, str(port)], log=log)
    _until(lambda: "listening" in _text(log), 30, "the guest's TCP sink listening")
    send = f"import socket\nsocket.create_connection(('{CN}', {port}), timeout=5).sendall(bytes({size}))\n"
    ns.run(NS_R, [PY, "-c", send], timeout=120)
    _until(lambda: _text(log).split()[-1:] == [str(size)], 120, f"{size} bytes in the guest")
    assert _truncated(lab.cn) == before


def test_host_memory_per_node(lab: Lab) -> None:
    for node in (lab.mn, lab.cn):
        m = node.memory()
        assert m.processes >= 3  # relay, UML kernel process, stubs of guest processes
        assert 0 < m.memfile_kib <= node.cfg.memory_mb * 1024
        assert 10 * 1024 < m.total_kib < (node.cfg.memory_mb + 200) * 1024, m
        MEASURED.setdefault("host_memory_mib", {})[node.name] = {
            k: round(v / 1024, 1) if k.endswith("kib") else v for k, v in m.to_dict().items()}


# ---- teardown and faults (each in a namespace of its own) ----------------------------------------
@pytest.fixture
def one_nic_netns() -> Iterator[str]:
    _fresh_netns(NS_T)
    ns.run(None, ["ip", "-n", NS_T, "link", "add", "t0", "type", "veth", "peer", "t1"])
    yield NS_T
    _del_netns(NS_T)


def _node(tmp_path: Path, netns: str, kernel: UmlKernel, **kw: Any) -> UmlNode:
    return UmlNode(UmlConfig("t", netns, tmp_path / "t", nics=["t0"], kernel=kernel, **kw))


def test_shutdown_leaves_nothing(tmp_path: Path, one_nic_netns: str) -> None:
    node = _node(tmp_path, one_nic_netns, _kernel()).start()
    assert node.run(["hostname"]).stdout.strip() == "t"
    t = time.monotonic()
    node.shutdown()
    MEASURED["shutdown_s"] = round(time.monotonic() - t, 2)
    assert_nothing_left(node, one_nic_netns)
    assert json.loads((node.state_dir / "exit.json").read_text())["returncode"] == 0  # halted, not killed


def test_crash_teardown_leaves_nothing(tmp_path: Path, one_nic_netns: str) -> None:
    """What ``testbed down`` does after a crashed CLI: kill every process in the node's netns."""
    node = _node(tmp_path, one_nic_netns, _kernel()).start()
    node.close()
    node.proc = None  # this process is not the one cleaning up
    ns.kill_all(one_nic_netns, grace=1.0)
    assert_nothing_left(node, one_nic_netns)
    ns.run(None, ["ip", "netns", "del", one_nic_netns])
    assert not ns.exists(one_nic_netns)


def test_missing_binary_or_modules_fail_before_anything_is_made(tmp_path: Path, one_nic_netns: str) -> None:
    k = _kernel()
    for bad, needle in ((UmlKernel(k.release, tmp_path / "no-linux", k.modules_dir), "user-mode-linux"),
                        (UmlKernel(k.release, k.binary, tmp_path / "lib/modules/x"), "depmod")):
        node = _node(tmp_path, one_nic_netns, bad)
        with pytest.raises(ConfigError) as e:
            node.start()
        msg = str(e.value)
        assert msg.startswith("UML kernel ") and needle in msg and "\n" not in msg
        assert not node.state_dir.exists() and not _live_pids(one_nic_netns)


def _module_tree_without_sctp(k: UmlKernel, root: Path) -> Path:
    """The build's module tree (symlinked) minus net/sctp, with its own depmod."""
    dst = root / "lib" / "modules" / k.release
    shutil.copytree(k.modules_dir / "kernel", dst / "kernel", copy_function=os.symlink,
                    ignore=lambda d, names: ["sctp"] if d.endswith("/net") else [])
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (k.modules_dir / f).exists():
            shutil.copy(k.modules_dir / f, dst / f)
    ns.run(None, ["depmod", "-b", str(root), k.release], timeout=60)
    return dst


def test_kernel_without_sctp(tmp_path: Path, one_nic_netns: str) -> None:
    k = _kernel()
    nosctp = UmlKernel(k.release, k.binary, _module_tree_without_sctp(k, tmp_path / "mods"))
    node = _node(tmp_path, one_nic_netns, nosctp)
    with pytest.raises(GuestBootError) as e:
        node.start()
    msg = str(e.value)
    assert "\n" not in msg and f"UML kernel {k.release}" in msg and "no SCTP in the guest" in msg
    assert "CONFIG_IP_SCTP=m" in msg and "console:" in msg
    assert "modprobe" in msg  # the console tail shows the failed load
    assert_nothing_left(node, one_nic_netns)


def _wrapper(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_kernel_without_hostfs(tmp_path: Path, one_nic_netns: str) -> None:
    """Told by its configuration: refused before boot. Not told: the boot fails on the root
    mount, and the error says so with the kernel's panic from the console."""
    k = _kernel()
    no_config = _wrapper(tmp_path / "linux-nohostfs", f'if [ "$1" = --showconfig ]; then\n'
                         f'  {k.binary} --showconfig | grep -v "^CONFIG_HOSTFS="; exit 0\nfi\n'
                         f'exec {k.binary} "$@"\n')
    node = _node(tmp_path, one_nic_netns, UmlKernel(k.release, no_config, k.modules_dir))
    with pytest.raises(ConfigError, match=r"CONFIG_HOSTFS: is not set \(.*CONFIG_HOSTFS=y\)"):
        node.start()
    assert not node.state_dir.exists()
    # a build whose root mount fails at boot as one without hostfs does (unknown filesystem)
    no_root = _wrapper(tmp_path / "linux-noroot", 'for a; do shift; [ "$a" = rootfstype=hostfs ] && '
                       f'a=rootfstype=nosuchfs; set -- "$@" "$a"; done\nexec {k.binary} "$@"\n')
    node = _node(tmp_path, one_nic_netns, UmlKernel(k.release, no_root, k.modules_dir))
    with pytest.raises(GuestBootError) as e:
        node.start()
    msg = str(e.value)
    assert "\n" not in msg and "the kernel exited during boot" in msg
    assert "could not mount the host root over hostfs" in msg and "console:" in msg and "VFS" in msg
    assert_nothing_left(node, one_nic_netns)


def test_agent_silent_within_boot_timeout(tmp_path: Path, one_nic_netns: str) -> None:
    node = _node(tmp_path, one_nic_netns, _kernel(), boot_timeout=0.3)
    t = time.monotonic()
    with pytest.raises(GuestBootError, match=r"did not answer within boot_timeout=0.3 s") as e:
        node.start()
    assert time.monotonic() - t < 10
    assert "\n" not in str(e.value) and "UML kernel" in str(e.value) and "console:" in str(e.value)
    assert_nothing_left(node, one_nic_netns)
