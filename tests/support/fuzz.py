"""Mutation fuzzing of the checker, in-process: real-shaped captures, mutated, judged.

The corpus is what the lab's captures hold (``synth``: the TraSH ladder over IPv4 and IPv6,
DHCP, RS/RA, a fragmented and a TCP-carried UPDATE; ``quic_synth``: a QUIC migration, whose
keylog lies beside each input so that mutated packets are decrypted too); each input is one capture file whose
frames (or whose file bytes) were mutated with a seeded RNG: bit flips, byte runs, length
fields set to edge values, truncation, splices between frames, reordering. ``judge`` maps the
checker's outcome to the CLI's exit codes; anything else (an exception) is a crash, reported
with the seed that reproduces it. Used by tests/unit/test_checker_fuzz.py (short) and
bench/fuzz_checker.py (``make soak``: 100,000 inputs and more).
"""

from __future__ import annotations

import random
import struct
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.l2 import Ether

from testbed.conformance import check
from testbed.decode.pcap import UnusableCapture
from tests.support import synth

EDGE16 = (0, 1, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF)


def corpus() -> list[list[tuple[float, bytes]]]:
    """Seed captures: the ladder (v4, v6), link set-up messages, reassembly cases."""
    seeds = [synth.trash_capture(synth.Knobs(v6=v6)).sorted_frames() for v6 in (False, True)]
    link = synth.Capture()
    synth.dhcp_exchange(link, 1.0, 7, "198.51.100.1", "198.51.100.10")
    link.add(1.1, synth.router_solicit())
    link.add(1.2, synth.router_advert("fe80::1", "2001:db8:2::"))
    seeds.append(link.sorted_frames())
    upd = synth.dns_update(0x77, "mobile.test.", "mn.mobile.test.", "198.51.100.10", signer="mn.mobile.test.")
    pkt = IP(src="198.51.100.10", dst="203.0.113.53", id=5) / UDP(sport=40000, dport=53) / upd
    frags = [(2.0 + i * 1e-4, bytes(Ether() / f)) for i, f in enumerate(fragment(pkt, fragsize=40))]
    ip = IP(src="198.51.100.10", dst="203.0.113.53")
    wire = len(upd).to_bytes(2, "big") + upd
    tcp = [(3.0, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="S", seq=9))),
           (3.1, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="PA", seq=10) / wire[:20])),
           (3.2, bytes(Ether() / ip / TCP(sport=41000, dport=53, flags="PA", seq=30) / wire[20:]))]
    seeds.append(frags + tcp)
    seeds.append(quic_seed()[0])
    return seeds


_QUIC: tuple[list[tuple[float, bytes]], str] | None = None


def quic_seed() -> tuple[list[tuple[float, bytes]], str]:
    """A short QUIC connection with a migration and a key update: its frames and its keylog."""
    global _QUIC
    if _QUIC is None:
        from tests.support.quic_synth import quic_run

        run = quic_run(messages=12, moves=((6, ("198.51.100.20", 50001)),), key_update_at=(3,))
        _QUIC = (run.client_frames, run.keylog)
    return _QUIC


def _mutate_bytes(rng: random.Random, b: bytes) -> bytes:
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    x = bytearray(b)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(x)) if x else 0
        if op == 0 and x:  # bit flips
            x[i] ^= 1 << rng.randrange(8)
        elif op == 1 and x:  # a run of one value
            v = rng.choice((0, 0xFF, rng.randrange(256)))
            n = rng.randrange(1, 16)
            x[i:i + n] = bytes([v]) * len(x[i:i + n])
        elif op == 2 and len(x) >= 2:  # a 16-bit length-like field at an edge value
            i = rng.randrange(len(x) - 1)
            struct.pack_into("!H", x, i, rng.choice(EDGE16))
        elif op == 3:  # truncate
            del x[rng.randrange(len(x) + 1):]
        elif op == 4:  # random bytes inserted
            x[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
        elif x:  # a slice deleted
            del x[i:i + rng.randrange(1, 24)]
    return bytes(x)


def mutate(rng: random.Random, frames: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """A mutated copy of one capture's frames."""
    out = list(frames)
    for _ in range(rng.randrange(1, 6)):
        k = rng.randrange(len(out))
        t, f = out[k]
        op = rng.randrange(10)
        if op < 7:
            out[k] = (t, _mutate_bytes(rng, f))
        elif op == 7:  # splice the head of one frame onto the tail of another
            _, g = rng.choice(out)
            cut = rng.randrange(len(f) + 1)
            out[k] = (t, f[:cut] + g[rng.randrange(len(g) + 1):])
        elif op == 8:  # a copy at another time (retransmission, duplicate)
            out.append((max(0.0, t + rng.uniform(-0.5, 0.5)), f))
        else:  # time goes backwards or jumps
            out[k] = (max(0.0, rng.choice((0.0, t - 1e6, t + 1e6, t))), f)
    return out


@dataclass
class FuzzStats:
    inputs: int = 0
    exits: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0, 2: 0})
    crashes: list[str] = field(default_factory=list)


def judge(pcap: Path) -> int:
    """The CLI's exit code for this capture: 0 passed, 1 a rule failed, 2 unusable."""
    try:
        verdict = check(pcap, mn_name="mn.mobile.test", events=synth.agent_events(),
                        budgets={"configured": 1.0})
    except UnusableCapture:
        return 2
    verdict.to_dict()  # the verdict must serialise too
    return 0 if verdict.passed else 1


def run(n: int, seed: int, workdir: Path, progress: Callable[[int], None] | None = None) -> FuzzStats:
    """``n`` mutated captures from ``seed``; every 16th also has its file bytes mutated, every
    64th its magic number."""
    rng = random.Random(seed)
    seeds = corpus()
    stats = FuzzStats()
    path = workdir / "fuzz.pcap"
    (workdir / "keylog.txt").write_text(quic_seed()[1])  # the QUIC seed's, found beside each input
    for i in range(n):
        frames = mutate(rng, rng.choice(seeds))
        pcapng = rng.random() < 0.3
        if pcapng:
            synth.write_pcapng(path, frames)
        else:
            synth.write_pcap(path, frames)
        if i % 16 == 0:
            raw = _mutate_bytes(rng, path.read_bytes())
            if i % 64 == 0:  # the magic itself: not a capture at all
                raw = bytes(rng.randrange(256) for _ in range(4)) + raw[4:]
            path.write_bytes(raw)
        stats.inputs += 1
        try:
            stats.exits[judge(path)] += 1
        except Exception:  # noqa: BLE001 - a crash is the finding, with what reproduces it
            kept = workdir / f"crash-{i}.pcap"
            kept.write_bytes(path.read_bytes())
            stats.crashes.append(f"input {i} (seed {seed}, kept as {kept}): {traceback.format_exc(limit=-6)}")
        if progress and i % 1000 == 0:
            progress(i)
    return stats
