"""Benchmark: the checker's QUIC decryption beside tshark's, on one ≥100k-packet QUIC capture.

    .venv/bin/python bench/bench_quic.py [--packets 100000] [--keep DIR] [--no-tshark]

The capture is real QUIC: an aioquic 1.7.2 client and server linked in memory
(``tests.support.quic_synth``), the client streaming numbered messages and the server echoing
them, with migrations to new addresses and key updates each way on the way. The checker
(``testbed.conformance.check --rules quic``, in a fresh interpreter) and ``tshark -o
tls.keylog_file:…`` each decrypt it with the run's keylog; both times, packet rates and the
packets each decrypted are printed (a packet counts for tshark when it shows its packet number,
which needs its keys). The checker must decrypt at least every packet tshark decrypts: the
benchmark exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, run as a script
PER_MESSAGE = 14  # datagrams per 12 kB message and its echo, as measured


def generate(out: Path, packets: int, moves: int) -> dict[str, int]:
    from tests.support.quic_synth import quic_run

    messages = packets // PER_MESSAGE + 1
    step = messages // (moves + 1)
    addrs = tuple((k * step, (f"198.51.100.{20 + k}", 50000 + k)) for k in range(1, moves + 1))
    updates = tuple(k * step + step // 2 for k in range(moves + 1))
    while True:
        run = quic_run(messages=messages, interval=0.002, size=12000, moves=addrs, key_update_at=updates)
        if run.datagrams >= packets:
            break
        messages = int(messages * packets / run.datagrams) + 50
    run.write(out)
    return {"datagrams": run.datagrams, "migrations": len(run.migrations), "key_updates": len(updates)}


def check_only(path: str) -> None:
    """Child mode: judge the capture once, print timing and counts as JSON."""
    from testbed.conformance import check

    t0 = time.perf_counter()
    v = check(path, rules="quic")
    secs = time.perf_counter() - t0
    s = v.stats
    print(json.dumps({"seconds": secs, "packets": s["quic_packets"], "decrypted": s["quic_decrypted"],
                      "failed": s["quic_failed"], "statuses": v.statuses(),
                      "datagrams": s["quic_datagrams"]}))


def tshark_decrypted(tshark: str, pcap: Path, keylog: Path, out: Path) -> tuple[float, int, int]:
    """(seconds, packets with a packet number, datagrams) as tshark decrypts the capture."""
    t0 = time.perf_counter()
    with open(out, "wb") as f:
        subprocess.run([tshark, "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", "-T", "fields",
                        "-e", "quic.packet_number"], stdout=f, stderr=subprocess.DEVNULL, check=True)
    secs = time.perf_counter() - t0
    decrypted = rows = 0
    with open(out, "rb") as f:
        for line in f:
            rows += 1
            line = line.strip()
            if line:
                decrypted += line.count(b",") + 1
    return secs, decrypted, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--moves", type=int, default=4)
    ap.add_argument("--keep", type=Path, help="write the capture and keylog here and keep them")
    ap.add_argument("--no-tshark", action="store_true")
    ap.add_argument("--check-only", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.check_only:
        check_only(args.check_only)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench_quic_"))
    try:
        out = args.keep or tmp / "run"
        t0 = time.perf_counter()
        made = generate(out, args.packets, args.moves)
        pcap, keylog = out / "mn.pcap", out / "keylog.txt"
        print(f"generated {made['datagrams']:,} QUIC datagrams ({pcap.stat().st_size / 1e6:.0f} MB, "
              f"{made['migrations']} migrations, {made['key_updates']} key updates requested) in "
              f"{time.perf_counter() - t0:.1f}s: {pcap}")
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        child = subprocess.run([sys.executable, __file__, "--check-only", str(out)], capture_output=True,
                               text=True, check=True, env=env)
        res = json.loads(child.stdout.strip().splitlines()[-1])
        load = os.getloadavg()
        rate = res["packets"] / res["seconds"]
        print(f"checker: {res['seconds']:.2f}s ({rate / 1e3:.1f}k QUIC packets/s), "
              f"{res['decrypted']:,} of {res['packets']:,} packets decrypted, {res['failed']} failed")
        bad = {k: v for k, v in res["statuses"].items() if v != "pass"}
        if bad:
            print(f"  rules not passing: {bad}")
        if args.no_tshark:
            print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            return 0
        tshark = shutil.which("tshark")
        if tshark is None:
            print("tshark not found: apt-get install -y tshark", file=sys.stderr)
            return 2
        secs, decrypted, rows = tshark_decrypted(tshark, pcap, keylog, tmp / "tshark.txt")
        load = os.getloadavg()
        print(f"tshark:  {secs:.2f}s ({decrypted / secs / 1e3:.1f}k QUIC packets/s), {decrypted:,} packets "
              f"decrypted in {rows:,} frames")
        print(f"ratio tshark/checker: {secs / res['seconds']:.1f}x; load average {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f} (2 cores)")
        if res["decrypted"] < decrypted:
            print(f"checker decrypted {res['decrypted']:,} packets, fewer than tshark's {decrypted:,}",
                  file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
