"""Scenario files: a topology, a seed, a repeat count, budgets and a list of typed steps.

Steps are written as one-key mappings (``- move: {to: ar2, overlap: 1}``, ``- wait: 2``,
``- traffic: start``, ``- depart: {}``) and parsed once into a discriminated union of step
models. A bad file is one line naming the file, the field and the fix, like a topology.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator

from testbed.errors import ConfigError
from testbed.model.topology import Strict

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "topologies" / "scenarios"
DEFAULT_SCENARIO = "trash-handover"
MoveModeName = Literal["make-before-break", "break-before-make"]


class Move(Strict):
    kind: Literal["move"] = "move"
    to: str
    mode: MoveModeName = "make-before-break"
    overlap: float = Field(0.0, ge=0)  # seconds attached to both networks
    gap: float = Field(0.0, ge=0)  # seconds attached to none (break-before-make)


class PingPong(Strict):
    """Moves round the access routers of ``between`` in order (two or more), ``times`` moves
    in all, starting after the one the MN is attached to."""

    kind: Literal["ping_pong"] = "ping_pong"
    between: tuple[str, ...] = Field(min_length=2)
    times: int = Field(2, ge=1)
    dwell: float = Field(1.0, ge=0)  # seconds on each network
    mode: MoveModeName = "make-before-break"
    overlap: float = Field(0.0, ge=0)  # make-before-break: seconds attached to both
    gap: float = Field(0.0, ge=0)  # break-before-make: seconds attached to none

    def targets(self, attached: list[str]) -> list[str]:
        """The access routers moved to, in order, from where the MN is attached now."""
        here = next((self.between.index(a) for a in attached if a in self.between), -1)
        n = len(self.between)
        return [self.between[(here + 1 + i) % n] for i in range(self.times)]


class Metric(Strict):
    kind: Literal["metric"] = "metric"
    ifname: str
    name: str = "signal"
    value: float


class Wait(Strict):
    kind: Literal["wait"] = "wait"
    seconds: float = Field(ge=0)


class TrafficStep(Strict):
    kind: Literal["traffic"] = "traffic"
    action: Literal["start", "stop"]


class Depart(Strict):
    kind: Literal["depart"] = "depart"


KINDS = ("move", "ping_pong", "metric", "wait", "traffic", "depart")


def _step_dict(raw: Any) -> Any:
    """The YAML shorthand (one key naming the step) as the union's tagged form."""
    if isinstance(raw, BaseModel) or isinstance(raw, dict) and "kind" in raw:
        return raw
    if not isinstance(raw, dict) or len(raw) != 1:
        raise ValueError(f"a step is a mapping with one key ({', '.join(KINDS)})")
    (kind, arg), = raw.items()
    if kind not in KINDS:
        raise ValueError(f"unknown step {kind!r} (one of {', '.join(KINDS)})")
    if kind == "wait":
        return {"kind": kind, "seconds": arg}
    if kind == "traffic":
        return {"kind": kind, "action": arg}
    if arg is None:
        arg = {}
    if not isinstance(arg, dict):
        raise ValueError(f"{kind} takes a mapping of its options")
    return {"kind": kind, **arg}


Step = Annotated[
    Annotated[Move | PingPong | Metric | Wait | TrafficStep | Depart, Field(discriminator="kind")],
    BeforeValidator(_step_dict),
]


class Traffic(Strict):
    """Traffic parameters for ``traffic`` steps."""

    rate: float = Field(50.0, gt=0)  # messages per second
    size: int = Field(200, ge=16, le=60000)  # bytes per message
    echo: bool = True  # the CN answers each message: DATA toward the MN shows its primary path
    # who updates the association's addresses: the TraSH binding process (ADD_IP, SET_PRIMARY,
    # DELETE_IP in Appendix-A order), or the kernel's own auto_asconf, for comparison
    binding: Literal["trash", "auto_asconf"] = "trash"
    peer: str | None = None  # the correspondent node; default: the first host with SCTP
    # address families of the association: [4], [6] or [4, 6] (dual stack: both ends bind an
    # address of each family, the sockets are AF_INET6 and carry IPv4 as v4-mapped)
    families: tuple[Literal[4, 6], ...] = Field((4,), min_length=1, max_length=2)

    @field_validator("families")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError("list each family once: [4], [6] or [4, 6]")
        return tuple(sorted(v))


class Scenario(Strict):
    name: str
    description: str = ""
    topology: str = "two-ar"
    seed: int = 1  # recorded with the run: events.jsonl's "start" step and verdict.json's lab block
    repeat: int = Field(1, ge=1)
    traffic: Traffic | None = None
    rules: str | None = None  # checker rule groups; default: all that apply
    budgets: dict[str, float] = Field(default_factory=dict)  # timeline phase -> seconds
    # what the lab should show, rule id -> pass | fail (an attack refused, a NAT that breaks a
    # binding update): the run passes when every expectation is met, a skip meets none
    expect: dict[str, Literal["pass", "fail"]] = Field(default_factory=dict)
    steps: list[Step]

    def moves(self) -> list[Move]:
        return [s for s in self.steps if isinstance(s, Move)]

    @property
    def uses_traffic(self) -> bool:
        return any(isinstance(s, TrafficStep) for s in self.steps)

    def kernel_features(self) -> tuple[str, ...]:
        """Kernel options (CONFIG_ names) the scenario's transport needs on its nodes' kernel."""
        return ("CONFIG_IP_SCTP",) if self.uses_traffic else ()


def resolve(name_or_path: str | Path | None) -> Path:
    p = Path(name_or_path or DEFAULT_SCENARIO)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return SCENARIO_DIR / f"{p}.yaml"


def _field(loc: tuple[Any, ...]) -> str:
    """pydantic's location as the YAML path: the union's tag stands where the step's key is."""
    parts = [str(x) for x in loc]
    scalar = {"wait": ["seconds"], "traffic": ["action"]}  # steps written as `wait: 2`
    if len(parts) >= 3 and parts[0] == "steps" and scalar.get(parts[2]) == parts[3:]:
        parts = parts[:3]
    return ".".join(parts) or "-"


def load(name_or_path: str | Path | None = None) -> Scenario:
    path = resolve(name_or_path)
    src = str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ConfigError(src, "-", f"cannot read: {e.strerror}", "give a path or a name in "
                          "topologies/scenarios/") from e
    except yaml.YAMLError as e:
        raise ConfigError(src, "-", f"invalid YAML: {e}".splitlines()[0], "fix the YAML syntax") from e
    try:
        return Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(src, _field(tuple(err["loc"])), msg,
                          "see topologies/scenarios/trash-handover.yaml") from e
