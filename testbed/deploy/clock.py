"""Each deployed host's clock against the controller's, and captures put on the controller's clock.

The checker merges the pcaps of several hosts on their timestamps, and the agent's events (on the
mobile node's clock) anchor the budgets: a host whose clock is off by more than a round trip
reorders the ladder. Before a run, one SSH session per host answers a few requests with its
``time.time()``; for each, ``offset = remote - (sent + received) / 2``, wrong by at most half the
round trip. The sample with the shortest round trip is kept (as NTP's clock filter does).

An offset larger than its uncertainty is corrected: the host's pcap timestamps and event times
are moved by ``-offset`` (``shift_pcap``); a smaller one is left alone (a correction would only
add noise). A host whose uncertainty exceeds ``max_error`` (a slow or jittery path) fails the
run before anything starts: its packets could land anywhere within that window.
"""

from __future__ import annotations

import shlex
import struct
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from testbed.errors import TestbedError
from testbed.host.tools import require

SAMPLES = 8
MAX_ERROR = 0.02  # seconds: a tenth of the shortest budget step, far above a LAN's half round trip
CONNECT_TIMEOUT = 60.0  # an SSH login to a User-Mode Linux host: ~1 s, more on a loaded box
# the host's side: one line in, its wall clock out, until the controller closes stdin
ECHO = "import sys,time\nfor _ in sys.stdin: sys.stdout.write(repr(time.time()) + '\\n'); sys.stdout.flush()"


class ClockError(TestbedError):
    """A host's clock cannot be read, or not precisely enough."""


@dataclass(frozen=True)
class Offset:
    host: str
    offset_s: float  # the host's clock minus the controller's
    uncertainty_s: float  # half the round trip of the sample kept
    samples: int

    @property
    def corrected(self) -> bool:
        return abs(self.offset_s) > self.uncertainty_s

    @property
    def correction(self) -> float:
        """Seconds to add to the host's timestamps to put them on the controller's clock."""
        return -self.offset_s if self.corrected else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**{k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()},
                "corrected": self.corrected}


def ssh_argv(name: str, hv: dict[str, Any]) -> list[str]:
    """``ssh`` to an inventory host as Ansible would (address, user, port, key, common args)."""
    argv = [require("ssh", "openssh-client"), "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={int(CONNECT_TIMEOUT)}"]
    if hv.get("ansible_port"):
        argv += ["-p", str(hv["ansible_port"])]
    if hv.get("ansible_ssh_private_key_file"):
        argv += ["-i", str(hv["ansible_ssh_private_key_file"])]
    argv += shlex.split(str(hv.get("ansible_ssh_common_args") or ""))
    user = hv.get("ansible_user")
    host = str(hv.get("ansible_host") or name)
    return [*argv, f"{user}@{host}" if user else host]


def measure(name: str, hv: dict[str, Any], samples: int = SAMPLES) -> Offset:
    """The host's offset from ``samples`` round trips over one SSH session."""
    python = str(hv.get("ansible_python_interpreter") or "python3")
    argv = [*ssh_argv(name, hv), f"{python} -u -c {shlex.quote(ECHO)}"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1)
    best: tuple[float, float] | None = None  # (round trip, offset)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        for i in range(samples + 1):  # the first answer waits for the login: not a sample
            t0 = time.time()
            proc.stdin.write("\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            t1 = time.time()
            if not line:
                break
            if i == 0:
                continue
            rtt, off = t1 - t0, float(line) - (t0 + t1) / 2
            if best is None or rtt < best[0]:
                best = (rtt, off)
    except (OSError, ValueError) as e:
        raise ClockError(f"{name}: reading its clock over SSH failed: {e}") from e
    finally:
        try:  # closes stdin: the host's loop ends
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    if best is None:
        raise ClockError(f"{name}: no clock reading over SSH ({' '.join(err.split())[:300] or 'no output'}); "
                         "check the inventory's ansible_host, user and key")
    return Offset(name, best[1], best[0] / 2, samples)


def measure_all(hosts: dict[str, dict[str, Any]], max_error: float = MAX_ERROR,
                timeout: float = CONNECT_TIMEOUT + 30) -> dict[str, Offset]:
    """Every host's offset, in parallel; a host that cannot be read, or only with an uncertainty
    above ``max_error``, fails with its name."""
    with ThreadPoolExecutor(max_workers=min(16, len(hosts)) or 1) as pool:
        futures = {n: pool.submit(measure, n, hv) for n, hv in hosts.items()}
        out = {n: f.result(timeout=timeout) for n, f in futures.items()}
    for o in out.values():
        if o.uncertainty_s > max_error:
            raise ClockError(f"{o.host}: clock offset {o.offset_s * 1e3:+.1f} ms known only to "
                             f"±{o.uncertainty_s * 1e3:.1f} ms (max ±{max_error * 1e3:g} ms): its packets "
                             "could reorder the ladder; run the controller nearer the hosts or raise "
                             "--max-clock-error")
    return out


# ----------------------------------------------------------------------------- pcap timestamps
MAGICS = {0xA1B2C3D4: 1_000_000, 0xA1B23C4D: 1_000_000_000}  # microsecond, nanosecond pcap


def shift_pcap(path: Path, seconds: float) -> int:
    """Add ``seconds`` to every packet's timestamp of a pcap file (libpcap format, either byte
    order, micro- or nanosecond); returns the packets shifted."""
    data = bytearray(path.read_bytes())
    if len(data) < 24:
        return 0
    for endian in ("<", ">"):
        (magic,) = struct.unpack_from(endian + "I", data, 0)
        if magic in MAGICS:
            break
    else:
        raise ClockError(f"{path}: not a libpcap file (pcapng is not shifted): capture with tcpdump -w")
    scale = MAGICS[magic]
    shift = round(seconds * scale)
    hdr = struct.Struct(endian + "IIII")
    pos, n = 24, 0
    while pos + hdr.size <= len(data):
        sec, frac, incl, orig = hdr.unpack_from(data, pos)
        total = sec * scale + frac + shift
        hdr.pack_into(data, pos, total // scale, total % scale, incl, orig)
        pos += hdr.size + incl
        n += 1
    path.write_bytes(bytes(data))
    return n
