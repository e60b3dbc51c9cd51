"""A short fuzz of the checker (the long one is ``make soak``): mutated captures never crash
it, and every outcome is one of the CLI's exit codes."""

from __future__ import annotations

from pathlib import Path

from tests.support import fuzz


def test_mutated_captures_never_crash_the_checker(tmp_path: Path) -> None:
    stats = fuzz.run(1500, seed=12, workdir=tmp_path)
    assert not stats.crashes, stats.crashes[0]
    assert stats.inputs == 1500 and sum(stats.exits.values()) == 1500
    assert stats.exits[0] and stats.exits[1] and stats.exits[2]  # the mutations reach each outcome


def test_the_cli_maps_a_mutated_capture_to_0_1_or_2(tmp_path: Path) -> None:
    import io
    import random

    from rich.console import Console

    from testbed.conformance import main
    from tests.support import synth

    rng = random.Random(3)
    for _ in range(30):
        synth.write_pcap(tmp_path / "m.pcap", fuzz.mutate(rng, rng.choice(fuzz.corpus())))
        code = main([str(tmp_path / "m.pcap")], console=Console(file=io.StringIO()))
        assert code in (0, 1, 2)
