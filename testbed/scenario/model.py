"""Scenario files: a topology, a seed, a repeat count, budgets and a list of steps.

Steps are one-key mappings, e.g. ``- move: {to: ar2, mode: make-before-break, overlap: 1}``.
They are validated like topologies: a bad file is one line naming the file, field and fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from testbed.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "topologies" / "scenarios"
DEFAULT_SCENARIO = "trash-handover"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Move(Strict):
    to: str
    mode: Literal["make-before-break", "break-before-make"] = "make-before-break"
    overlap: float = Field(0.0, ge=0)  # seconds attached to both networks
    gap: float = Field(0.0, ge=0)  # seconds attached to none (break-before-make)


class PingPong(Strict):
    between: tuple[str, str]
    times: int = Field(2, ge=1)
    dwell: float = Field(1.0, ge=0)  # seconds on each network
    mode: Literal["make-before-break", "break-before-make"] = "make-before-break"


class Metric(Strict):
    ifname: str
    name: str = "signal"
    value: float


class Traffic(Strict):
    rate: float = Field(50.0, gt=0)  # messages per second
    size: int = Field(200, ge=16, le=60000)  # bytes per message
    echo: bool = True  # the CN answers each message: DATA toward the MN shows its primary path
    # who updates the association's addresses: the TraSH binding process (ADD_IP, SET_PRIMARY,
    # DELETE_IP in Appendix-A order), or the kernel's own auto_asconf, for comparison
    binding: Literal["trash", "auto_asconf"] = "trash"


Step = Annotated[dict[str, Any], Field()]


class Scenario(Strict):
    name: str
    description: str = ""
    topology: str = "two-ar"
    seed: int = 1  # recorded with every run (events.jsonl "start" step) for reproducing it
    repeat: int = Field(1, ge=1)
    traffic: Traffic | None = None  # SCTP traffic parameters for traffic steps
    rules: str | None = None  # checker rule groups; default: all that apply
    budgets: dict[str, float] = Field(default_factory=dict)  # timeline phase -> seconds
    steps: list[Step]

    @model_validator(mode="after")
    def _steps(self) -> Scenario:
        for i, step in enumerate(self.steps):
            parse_step(step, f"steps.{i}")
        return self


KNOWN = ("move", "wait", "ping_pong", "metric", "traffic", "depart")


def parse_step(step: dict[str, Any], where: str) -> tuple[str, Any]:
    """(kind, typed arguments) of a step; ValueError naming the field when it is wrong."""
    if not isinstance(step, dict) or len(step) != 1:
        raise ValueError(f"{where}: a step is a mapping with one key ({', '.join(KNOWN)})")
    (kind, arg), = step.items()
    try:
        if kind == "move":
            return kind, Move.model_validate(arg)
        if kind == "ping_pong":
            return kind, PingPong.model_validate(arg)
        if kind == "metric":
            return kind, Metric.model_validate(arg)
        if kind == "wait":
            if not isinstance(arg, int | float) or arg < 0:
                raise ValueError(f"{where}.wait: takes a number of seconds >= 0")
            return kind, float(arg)
        if kind == "traffic":
            if arg not in ("start", "stop"):
                raise ValueError(f"{where}.traffic: takes start or stop")
            return kind, arg
        if kind == "depart":
            return kind, None
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"{where}.{kind}.{loc}: {err['msg']}") from None
    raise ValueError(f"{where}: unknown step {kind!r} (one of {', '.join(KNOWN)})")


def resolve(name_or_path: str | Path | None) -> Path:
    p = Path(name_or_path or DEFAULT_SCENARIO)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return SCENARIO_DIR / f"{p}.yaml"


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
        field = ".".join(str(x) for x in err["loc"]) or "-"
        if field == "-" and ": " in msg and msg.startswith("steps."):
            field, msg = msg.split(": ", 1)
        raise ConfigError(src, field, msg, "see topologies/scenarios/trash-handover.yaml") from e
