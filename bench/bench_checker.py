"""Benchmark: the conformance checker vs tshark on a synthetic million-packet capture.

    .venv/bin/python bench/bench_checker.py [--packets 1000000] [--handovers 5] [--keep DIR]

Generates one pcap of mostly SCTP DATA/SACK with a few TraSH ladders (ASCONF + AUTH, DNS
UPDATE with SIG(0)), times ``testbed.conformance.check`` on it in a fresh interpreter (so its
peak RSS is the checker's own), then times the tshark command of the brief on the same file
and prints both times, the ratio and the checker's peak RSS.

Bulk packets come from byte templates, not scapy (1M scapy builds take minutes). CRC32c stays
correct without computing it per packet: CRC is affine over GF(2), so for a message whose only
varying field is the TSN, crc(msg) = crc(msg with TSN 0) XOR L(TSN), and L is a XOR of four
per-byte tables (computed once with scapy's crc32c).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TSHARK_FIELDS = [
    "-T", "fields", "-e", "sctp.chunk_type", "-e", "sctp.parameter_type",
    "-e", "sctp.asconf_seq_nr_number", "-e", "dns.flags.opcode", "-o", "sctp.checksum:CRC-32C",
]  # fmt: skip
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support.synth, run as a script
START = 1_700_000_000.0
GAP = 10e-6  # seconds between bulk packets


class Template:
    """An Ethernet frame whose 32-bit field at ``field_off`` (in the SCTP part) varies."""

    def __init__(self, frame: bytes, field_off: int) -> None:
        import struct

        from scapy.layers.sctp import crc32c

        self.head = bytearray(frame)
        self.sctp_off = 34  # Ethernet 14 + IPv4 20 (the templates are IPv4 without options)
        self.field = self.sctp_off + field_off
        sctp = bytearray(frame[self.sctp_off :])
        sctp[8:12] = b"\0\0\0\0"
        sctp[field_off : field_off + 4] = b"\0\0\0\0"
        self.base = crc32c(bytes(sctp))
        zero = crc32c(bytes(len(sctp)))
        self.tables = []
        for i in range(4):
            row = []
            for v in range(256):
                z = bytearray(len(sctp))
                z[field_off + i] = v
                row.append(crc32c(bytes(z)) ^ zero)
            self.tables.append(row)
        self.pack = struct.Struct(">I").pack_into

    def frame(self, value: int) -> bytes:
        t = self.tables
        crc = (
            self.base
            ^ t[0][value >> 24]
            ^ t[1][(value >> 16) & 0xFF]
            ^ t[2][(value >> 8) & 0xFF]
            ^ t[3][value & 0xFF]
        )
        self.pack(self.head, self.field, value)
        self.pack(self.head, self.sctp_off + 8, crc)
        return bytes(self.head)


def generate(path: Path, packets: int, handovers: int) -> dict[str, int]:
    """Write the capture; return what it contains (for cross-checking the tools)."""
    import struct

    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.sctp import SCTPChunkData, SCTPChunkSACK

    from tests.support.synth import Assoc, dns_update, dns_update_response

    addrs = [f"198.51.100.{10 + i}" for i in range(handovers + 1)]
    cn, dns_srv = "203.0.113.1", "203.0.113.53"
    a = Assoc(addrs[0], cn)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    rec = struct.Struct("<IIII")
    counts = {"packets": 0, "asconf": 0, "dns": 0}
    out = open(path, "wb")  # noqa: SIM115 - closed below
    out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    buf: list[bytes] = []
    t = START

    def emit(ts: float, frame: bytes) -> None:
        sec = int(ts)
        buf.append(rec.pack(sec, int((ts - sec) * 1e6), len(frame), len(frame)) + frame)
        counts["packets"] += 1
        if len(buf) >= 4096:
            out.write(b"".join(buf))
            buf.clear()

    def templates(mn: str) -> tuple[Template, Template]:
        data = a.from_cn(mn, [SCTPChunkData(tsn=0, data=b"d" * 64, beginning=1, ending=1)])
        sack = a.from_mn(mn, [SCTPChunkSACK(cumul_tsn_ack=0, a_rwnd=65536)])
        return Template(data, 16), Template(sack, 16)  # TSN / cum TSN after header + chunk hdr

    init, init_ack = a.init()
    emit(t, init)
    emit(t + 0.001, init_ack)
    t += 0.01
    ladder_pkts = 3 * 2 + 2 + 0  # per handover: 3 ASCONF/ACK pairs + DNS pair
    bulk_total = packets - 2 - handovers * ladder_pkts
    per_phase = bulk_total // (handovers + 1)
    tsn = a.cn_itsn
    for phase in range(handovers + 1):
        mn = addrs[phase]
        dt, st = templates(mn)
        n = per_phase if phase < handovers else bulk_total - per_phase * handovers
        for i in range(n):
            if i % 3 == 2:
                emit(t, st.frame((tsn - 1) & 0xFFFFFFFF))
            else:
                emit(t, dt.frame(tsn & 0xFFFFFFFF))
                tsn += 1
            t += GAP
        if phase == handovers:
            break
        new = addrs[phase + 1]
        a.cn_tsn = tsn
        for kind, src, addr in (("add", mn, new), ("set_primary", mn, new)):
            pkt, serial, _c = a.asconf(src, kind, addr)
            emit(t, pkt)
            emit(t + 0.002, a.asconf_ack(src, serial))
            t += 0.005
            counts["asconf"] += 1
        upd = dns_update(phase + 1, "mobile.test", "mn.mobile.test", new, signer="mn.mobile.test")
        emit(t, bytes(eth / IP(src=new, dst=dns_srv) / UDP(sport=40000, dport=53) / upd))
        resp = dns_update_response(phase + 1, "mobile.test")
        emit(t + 0.002, bytes(eth / IP(src=dns_srv, dst=new) / UDP(sport=53, dport=40000) / resp))
        counts["dns"] += 2
        t += 0.005
        pkt, serial, _c = a.asconf(new, "delete", mn)
        emit(t, pkt)
        emit(t + 0.002, a.asconf_ack(new, serial))
        counts["asconf"] += 1
        t += 0.005
    out.write(b"".join(buf))
    out.close()
    return counts


def _peak_rss_kib() -> int:
    """VmHWM of this process image; ru_maxrss would include the forking parent's pages."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def check_only(path: str) -> None:
    """Child mode: run the checker once, print timing and peak RSS as JSON."""
    from testbed.conformance import check

    t0 = time.perf_counter()
    v = check(path, mn_name="mn.mobile.test")
    secs = time.perf_counter() - t0
    rss_kib = _peak_rss_kib()
    print(
        json.dumps(
            {
                "seconds": secs,
                "peak_rss_kib": rss_kib,
                "passed": v.passed,
                "statuses": v.statuses(),
                "packets": v.stats["packets"],
                "asconf": v.stats["asconf"],
                "handovers": v.stats["handovers"],
            }
        )
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--handovers", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="write the capture here and keep it")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--check-only", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.check_only:
        check_only(args.check_only)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_checker_"))
    try:
        path = (args.keep or tmp) / "bench.pcap"
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        counts = generate(path, args.packets, args.handovers)
        gen = time.perf_counter() - t0
        size = path.stat().st_size
        print(f"generated {counts['packets']:,} packets ({size / 1e6:.0f} MB) in {gen:.1f}s: {path}")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        child = subprocess.run(
            [sys.executable, __file__, "--check-only", str(path)],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        res = json.loads(child.stdout.strip().splitlines()[-1])
        rate = res["packets"] / res["seconds"]
        print(
            f"checker: {res['seconds']:.2f}s ({rate / 1e3:.0f}k packets/s),"
            f" peak RSS {res['peak_rss_kib'] / 1024:.0f} MiB, passed={res['passed']},"
            f" ASCONF {res['asconf']}/{counts['asconf']}, handovers {res['handovers']}"
        )
        bad = {k: v for k, v in res["statuses"].items() if v != "pass"}
        if bad:
            print(f"  rules not passing: {bad}")
        if args.no_tshark:
            return 0
        tshark = shutil.which("tshark")
        if tshark is None:
            print("tshark not found: apt-get install -y tshark", file=sys.stderr)
            return 2
        out = tmp / "tshark.txt"
        t0 = time.perf_counter()
        with open(out, "wb") as f:
            subprocess.run(
                [tshark, "-r", str(path), *TSHARK_FIELDS],
                stdout=f, stderr=subprocess.DEVNULL, check=True,
            )  # fmt: skip
        ts = time.perf_counter() - t0
        lines = asconf_rows = 0
        with open(out, "rb") as f:
            for line in f:
                lines += 1
                if b"193" in line.split(b"\t")[0].split(b","):
                    asconf_rows += 1
        print(
            f"tshark:  {ts:.2f}s ({lines / ts / 1e3:.0f}k packets/s), {lines:,} rows,"
            f" ASCONF rows {asconf_rows}"
        )
        print(f"ratio tshark/checker: {ts / res['seconds']:.1f}x")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
