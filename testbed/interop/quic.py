"""The QUIC pairs of an interop run (``testbed interop --transport quic --stacks aioquic,ngtcp2``):
each stack as the mobile node and as the correspondent, every pair but ngtcp2 on both ends
(whose examples carry no message stream of the lab's).

A stack is a row and a column of the matrix as a kernel is for SCTP (a ``KernelChoice`` whose
``stack`` names it). An aioquic MN plays the run's scenario (default ``quic-handover``), migrated
by the binding process; a gtlsclient MN migrates on its own timer, so its cells play
``quic-gtlsclient-handover``, whose move spans that timer.
"""

from __future__ import annotations

from testbed.errors import ConfigError
from testbed.interop.kernels import KernelChoice
from testbed.interop.settings import Setting
from testbed.model.topology import Role
from testbed.quic import stacks
from testbed.scenario import model
from testbed.scenario.model import Scenario

STACKS = ("aioquic", "ngtcp2")
DEFAULT_SCENARIO = "quic-handover"
TIMER_SCENARIO = "quic-gtlsclient-handover"  # a gtlsclient MN's cells
SETTING = Setting(name="default", description="connection migration (RFC 9000 §9): the MN's new "
                  "path probed on an unused connection ID, validated, the old ID retired")


def parse_stacks(text: str) -> list[KernelChoice]:
    """``aioquic,ngtcp2`` as choices, each installed for both roles (or one line saying what
    to install)."""
    out: list[KernelChoice] = []
    for label in (s.strip() for s in text.split(",")):
        if label not in STACKS:
            raise ConfigError("--stacks", label or "-", "not a QUIC stack of the lab",
                              f"give {', '.join(STACKS)}")
        field = f"--stacks {label}"
        if label == "aioquic":
            release = f"aioquic {stacks.aioquic_info(field).version}"
        else:
            versions = {stacks.ngtcp2_info(field, role).version for role in (Role.MOBILE, Role.HOST)}
            release = f"ngtcp2 {' / '.join(sorted(versions))}"
        choice = KernelChoice(label, label, None, release)
        if choice not in out:
            out.append(choice)
    if not out:
        raise ConfigError("--stacks", "-", "no stack given", f"give {', '.join(STACKS)}")
    return out


def playable(mn: KernelChoice, cn: KernelChoice) -> bool:
    return not (mn.stack == "ngtcp2" and cn.stack == "ngtcp2")


def scenario_of(sc: Scenario, mn: KernelChoice) -> Scenario:
    """What a cell plays: the run's scenario, or the timer scenario for a gtlsclient MN."""
    return model.load(TIMER_SCENARIO) if mn.stack == "ngtcp2" else sc
