"""Why the lab turns UDP segmentation offload off on an ngtcp2 node: gtlsserver sends with UDP
GSO, and a veth hands the buffer to its peer whole, so a capture on the other end sees UDP
packets longer than any datagram on a wire; with ``tx-udp-segmentation`` off on the sender's
interface (``testbed.host.offload``) the kernel cuts them before the device, and the capture
sees one packet per datagram. Two namespaces of their own, one veth, removed after."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

from testbed.host import netns
from testbed.host.offload import disable_udp_segmentation, udp_segmentation
from testbed.pytest_plugin import lab_name, require_lab_prerequisites
from testbed.quic import stacks
from testbed.quic.certs import self_signed

pytestmark = pytest.mark.integration
SERVER, CLIENT = "192.0.2.1", "192.0.2.2"
BODY = 400_000  # bytes of gtlsserver's generated content for the path /400000


def _ns(name: str, *argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True, **kw)


def _download(srv: str, cli: str, tmp: Path, tag: str) -> list[int]:
    """One GET of BODY bytes from gtlsserver; the UDP payload sizes captured at the client."""
    pcap = tmp / f"{tag}.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", cli, "tcpdump", "-i", "b0", "-U", "--immediate-mode",
                             "-w", str(pcap), "udp", "port", "4433"], stderr=subprocess.PIPE, text=True)
    assert dump.stderr is not None
    dump.stderr.readline()  # "listening on b0": the capture is up
    server = subprocess.Popen(["ip", "netns", "exec", srv, str(stacks.GTLSSERVER), "-q", "--htdocs", str(tmp),
                               SERVER, "4433", str(tmp / "key.pem"), str(tmp / "cert.pem")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _ns(srv, "ss", "-Hlun", "sport = :4433").stdout.strip():
            assert time.monotonic() < deadline, "gtlsserver did not listen"
            time.sleep(0.05)  # polled: ss has nothing to wait on
        cp = _ns(cli, str(stacks.GTLSCLIENT), "-q", "--exit-on-all-streams-close", f"--download={tmp / tag}",
                 SERVER, "4433", f"https://{SERVER}:4433/{BODY}", timeout=30)
        assert (tmp / tag / str(BODY)).stat().st_size == BODY, cp.stderr[-500:]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(5)
        dump.send_signal(signal.SIGINT)
        dump.wait(5)
    return [len(p[UDP].payload) for p in rdpcap(str(pcap)) if UDP in p and p[UDP].sport == 4433]


def test_segmentation_offload_off_gives_one_packet_per_datagram(tmp_path):
    require_lab_prerequisites()
    srv, cli = lab_name("gsoa"), lab_name("gsob")
    for n in (srv, cli):
        subprocess.run(["ip", "netns", "add", n], check=True)
    try:
        subprocess.run(["ip", "-n", srv, "link", "add", "a0", "type", "veth", "peer", "name", "b0",
                        "netns", cli], check=True)
        for n, dev, addr in ((srv, "a0", SERVER), (cli, "b0", CLIENT)):
            subprocess.run(["ip", "-n", n, "addr", "add", f"{addr}/24", "dev", dev], check=True)
            subprocess.run(["ip", "-n", n, "link", "set", dev, "up"], check=True)
        self_signed("cn", [SERVER], tmp_path / "cert.pem", tmp_path / "key.pem")
        (tmp_path / "on").mkdir()
        (tmp_path / "off").mkdir()
        assert netns.call_in(srv, udp_segmentation, "a0") is True  # a veth offers it
        on = _download(srv, cli, tmp_path, "on")
        assert max(on) > 1472  # GSO buffers crossed the veth whole
        assert netns.call_in(srv, disable_udp_segmentation, ["a0"]) == ["a0"]
        off = _download(srv, cli, tmp_path, "off")
        assert len([n for n in off if n > 1000]) >= 50 and max(off) <= 1472  # a packet per datagram
    finally:
        for n in (srv, cli):
            subprocess.run(["ip", "netns", "del", n], check=False)
