"""Scenario files: a topology, a seed, a repeat count, budgets and a list of typed steps.

Steps are written as one-key mappings (``- move: {to: ar2, overlap: 1}``, ``- wait: 2``,
``- traffic: start``, ``- depart: {}``) and parsed once into a discriminated union of step
models. A bad file is one line naming the file, the field and the fix, like a topology.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, Field, ValidationError, field_validator, model_validator

from testbed.errors import ConfigError
from testbed.model.topology import PolicySettings, Strict, TraceSource

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "topologies" / "scenarios"
DEFAULT_SCENARIO = "trash-handover"
MoveModeName = Literal["make-before-break", "break-before-make"]


Mobiles = Literal["all"] | list[str]


class Move(Strict):
    """Move mobile nodes to ``to``: all of them (``mobiles: all``, the default) or those listed,
    at once, one after another ``stagger`` seconds apart (in the order given), or each at a
    random moment within ``spread`` seconds, drawn from the scenario's seed."""

    kind: Literal["move"] = "move"
    to: str
    mode: MoveModeName = "make-before-break"
    overlap: float = Field(0.0, ge=0)  # seconds attached to both networks
    gap: float = Field(0.0, ge=0)  # seconds attached to none (break-before-make)
    timeout: float = Field(20.0, gt=0)  # for the MN to be configured there (a fault may prevent it)
    mobiles: Mobiles = "all"
    stagger: float = Field(0.0, ge=0)
    spread: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_timing(self) -> Move:
        if self.stagger and self.spread:
            raise ValueError("give stagger (one after another) or spread (at random), not both")
        return self


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
    mobile: str | None = None  # default: the topology's mobile.node

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
    mobile: str | None = None


class Attach(Strict):
    """Attach the MN to ``to`` as well, keeping what it is attached to: which network its
    transports use is then the policy's to decide (``mobile.policy``)."""

    kind: Literal["attach"] = "attach"
    to: str
    timeout: float = Field(20.0, gt=0)
    mobile: str | None = None


class Wait(Strict):
    kind: Literal["wait"] = "wait"
    seconds: float = Field(ge=0)


class TrafficStep(Strict):
    kind: Literal["traffic"] = "traffic"
    action: Literal["start", "stop"]


class Depart(Strict):
    kind: Literal["depart"] = "depart"
    mobile: str | None = None


Label = Annotated[str, Field(pattern=r"^[a-z0-9_]{0,24}$")]


class Leave(Strict):
    """The MN drops off every access network. ``notice: false`` (a power loss): its agent is
    killed first, so nothing withdraws its name (§4's stale record); ``notice: true``: the
    agent sees the links go and publishes what is left (no address: the records go)."""

    kind: Literal["leave"] = "leave"
    notice: bool = False


class Impostor(Strict):
    """A host on the MN's old access network takes the MN's address by DHCP, presenting the
    MN's identity as it captured it (``listen`` first): its client identifier, else its
    hardware address; then it answers on that address."""

    kind: Literal["impostor"] = "impostor"
    node: str


class Probe(Strict):
    """A correspondent resolves the MN's name and sends to it (rule ``attack.stale_dns[.label]``:
    passes when no impostor answers)."""

    kind: Literal["probe"] = "probe"
    node: str = "cn"
    label: Label = ""

    @property
    def rule_id(self) -> str:
        return "attack.stale_dns" + (f".{self.label}" if self.label else "")


class Listen(Strict):
    """An attacker node starts capturing on its access interfaces (what it sees: everything on a
    shared medium, its own and broadcast traffic on a switched one)."""

    kind: Literal["listen"] = "listen"
    node: str


class ForgeUpdate(Strict):
    """An attacker node sends a forged UPDATE for the MN's name (rule
    ``attack.update.<form>[.<label>]``: passes when the server refuses it and the zone keeps
    the MN's records)."""

    kind: Literal["forge_update"] = "forge_update"
    node: str
    form: Literal["unsigned", "own-key", "other-name", "replay"]
    label: Label = ""
    target: str = "cn"  # other-name: the zone label whose records the MN's key tries to change

    @property
    def rule_id(self) -> str:
        return f"attack.update.{self.form.replace('-', '_')}" + (f".{self.label}" if self.label else "")


class ForgeAsconf(Strict):
    """An attacker node injects ASCONF ADD_IP + SET_PRIMARY of its own address into the MN's
    association, with no AUTH, a made-up HMAC or the HMAC computed from the captured INIT and
    INIT-ACK (rule ``attack.asconf.<label or auth>``: passes when the correspondent refuses it,
    no ASCONF-ACK and no DATA to the attacker)."""

    kind: Literal["forge_asconf"] = "forge_asconf"
    node: str
    auth: Literal["none", "wrong", "computed"] = "computed"
    label: Label = ""
    listen: float = Field(3.0, gt=0, le=60)  # seconds it answers HEARTBEATs and takes DATA

    @property
    def rule_id(self) -> str:
        return f"attack.asconf.{self.label or self.auth}"


class RogueRouter(Strict):
    """An attacker node on the MN's access network sends Router Advertisements for a prefix of
    its own (rule ``attack.rogue_ra[.label]``: passes when the MN does not bind to it: its agent
    reports the network untrusted, and no address in it is configured or published)."""

    kind: Literal["rogue_ra"] = "rogue_ra"
    node: str
    prefix: str = "2001:db8:bad::/64"
    count: int = Field(3, ge=1, le=50)
    label: Label = ""

    @property
    def rule_id(self) -> str:
        return "attack.rogue_ra" + (f".{self.label}" if self.label else "")


KillTarget = Literal["named", "dhcpd", "radvd", "dhcpcd", "agent", "binding", "node"]


class Fault(Strict):
    """A fault injected mid-scenario (rule ``fault.<what>``, which names it and what the lab
    showed after it). One of: ``kill`` a daemon (``node``: on which node, for an AR's dhcpd or
    radvd) or a kernel node (``kill: node``, ``node: cn``); ``flap`` the MN's link to an AR
    ``times`` times, ``period`` s down then up; ``vanish``: an AR disappears (its daemons die
    and every link of it loses carrier)."""

    kind: Literal["fault"] = "fault"
    kill: KillTarget | None = None
    node: str | None = None
    flap: str | None = None
    times: int = Field(3, ge=1, le=100)
    period: float = Field(0.3, gt=0, le=30)
    vanish: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Fault:
        given = [k for k in ("kill", "flap", "vanish") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a fault is one of kill, flap or vanish")
        if self.kill in ("dhcpd", "radvd", "node") and not self.node:
            which = "the kernel node" if self.kill == "node" else "the access router"
            raise ValueError(f"kill: {self.kill} needs node: ({which})")
        return self

    @property
    def rule_id(self) -> str:
        if self.kill is not None:
            return f"fault.kill.{self.kill}" + (f".{self.node}" if self.node else "")
        return f"fault.flap.{self.flap}" if self.flap else f"fault.vanish.{self.vanish}"


KINDS = ("move", "attach", "ping_pong", "metric", "wait", "traffic", "depart", "leave", "listen",
         "forge_update", "forge_asconf", "impostor", "probe", "rogue_ra", "fault")


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
    Annotated[Move | Attach | PingPong | Metric | Wait | TrafficStep | Depart | Leave | Listen | ForgeUpdate
              | ForgeAsconf | Impostor | Probe | RogueRouter | Fault, Field(discriminator="kind")],
    BeforeValidator(_step_dict),
]


Transport = Literal["sctp", "mptcp", "quic", "tcp"]
# who updates the connection's addresses, per transport: TraSH's binding process (every
# transport), or what the kernel does by itself, for comparison; for QUIC on an ngtcp2 mobile
# node, gtlsclient's own timer (one migration, not driven by the agent's events)
BINDINGS: dict[str, tuple[str, ...]] = {"sctp": ("trash", "auto_asconf"), "mptcp": ("trash", "auto"),
                                        "quic": ("trash", "timer"), "tcp": ("trash",)}
# what a transport needs of the kernel under its nodes (a UML lab machine checks its build);
# QUIC runs over UDP in user space
KERNEL_FEATURES: dict[str, tuple[str, ...]] = {"sctp": ("CONFIG_IP_SCTP",), "mptcp": ("CONFIG_MPTCP",),
                                               "quic": (), "tcp": ()}


class Traffic(Strict):
    """Traffic parameters for ``traffic`` steps."""

    # sctp: one multi-homed association; mptcp: one Multipath TCP connection; quic: one QUIC
    # connection, migrated (RFC 9000 §9); tcp: a plain TCP connection, the baseline that a move
    # breaks
    transport: Transport = "sctp"
    rate: float = Field(50.0, gt=0)  # messages per second
    size: int = Field(200, ge=16, le=60000)  # bytes per message
    echo: bool = True  # the CN answers each message: data toward the MN shows its primary path
    # trash: the binding process (ADD_IP/SET_PRIMARY/DELETE_IP, or MP_JOIN+ADD_ADDR/MP_PRIO/
    # REMOVE_ADDR, or a QUIC migration); auto_asconf (sctp): the kernel's auto_asconf; auto
    # (mptcp): the in-kernel path manager, given only endpoints; timer (quic): gtlsclient's own
    binding: Literal["trash", "auto_asconf", "auto", "timer"] = "trash"
    # quic, binding timer (gtlsclient on the MN): seconds after the handshake at which it moves
    # once to the source address the routing table gives then (its --change-local-addr)
    migrate_after: float = Field(8.0, gt=0, le=600)
    peer: str | None = None  # the correspondent node; default: the first host of the transport
    # tcp: seconds of unacknowledged data after which a connection gives up (TCP_USER_TIMEOUT
    # on both ends); Linux's own retransmission timeout would take ~15 minutes
    user_timeout: float = Field(3.0, gt=0, le=600)
    # address families of the association (sctp): [4], [6] or [4, 6] (dual stack: both ends
    # bind an address of each family, the sockets are AF_INET6 and carry IPv4 as v4-mapped)
    families: tuple[Literal[4, 6], ...] = Field((4,), min_length=1, max_length=2)

    @field_validator("families")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError("list each family once: [4], [6] or [4, 6]")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _binding_fits(self) -> Traffic:
        if self.binding not in BINDINGS[self.transport]:
            raise ValueError(f"binding {self.binding} is not one of {self.transport}'s "
                             f"({', '.join(BINDINGS[self.transport])})")
        return self


class CompareEntry(Strict):
    """What one transport's run of ``testbed compare`` expects (its rules, budgets and
    expectations instead of the scenario's own), and traffic settings of that transport alone
    (``user_timeout`` for tcp)."""

    rules: str | None = None
    budgets: dict[str, float] = Field(default_factory=dict)
    expect: dict[str, Literal["pass", "fail"]] = Field(default_factory=dict)
    traffic: dict[str, Any] = Field(default_factory=dict)

    @field_validator("traffic")
    @classmethod
    def _own_settings(cls, v: dict[str, Any]) -> dict[str, Any]:
        shared = {"transport", "rate", "size", "echo", "families", "peer"}
        if shared & set(v):
            raise ValueError(f"{', '.join(sorted(shared & set(v)))}: the same for every transport "
                             "(set it in the scenario's traffic)")
        return v


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
    # `testbed compare`: per transport, what its run expects (default: the scenario's own
    # rules, budgets and expectations for its own transport, none for the others)
    compare: dict[Transport, CompareEntry] = Field(default_factory=dict)
    # access router -> the trace its network replays during the run (over the topology's)
    networks: dict[str, TraceSource] = Field(default_factory=dict)
    # the mobile nodes' policy for this run, over the topology's mobile.policy
    policy: PolicySettings | None = None
    steps: list[Step]

    def moves(self) -> list[Move]:
        return [s for s in self.steps if isinstance(s, Move)]

    @property
    def uses_traffic(self) -> bool:
        return any(isinstance(s, TrafficStep) for s in self.steps)

    @property
    def transport(self) -> str:
        return (self.traffic or Traffic()).transport

    def traffic_seconds(self) -> float:
        """An upper bound of how long traffic runs: from the first ``traffic: start`` to the last
        ``traffic: stop`` (or the end), each step at its longest (a move until its timeout),
        over every repetition."""
        steps = self.steps
        starts = [i for i, s in enumerate(steps) if isinstance(s, TrafficStep) and s.action == "start"]
        stops = [i for i, s in enumerate(steps) if isinstance(s, TrafficStep) and s.action == "stop"]
        if not starts:
            return 0.0
        end = stops[-1] if stops and stops[-1] > starts[0] else len(steps)
        return self.repeat * sum(_longest(s) for s in steps[starts[0]:end])

    def kernel_features(self) -> tuple[str, ...]:
        """Kernel options (CONFIG_ names) the scenario's transport needs on its nodes' kernel."""
        return KERNEL_FEATURES[self.transport] if self.uses_traffic else ()


OTHER_STEP_SECONDS = 30.0  # an attack or fault step's bound


def _longest(step: Any) -> float:
    if isinstance(step, Wait):
        return step.seconds
    if isinstance(step, Move):
        return step.overlap + step.gap + step.timeout + step.spread + step.stagger * 100
    if isinstance(step, PingPong):
        return step.times * (step.dwell + step.overlap + step.gap + Move(to="-").timeout)
    if isinstance(step, TrafficStep | Metric | Depart):
        return 1.0
    return OTHER_STEP_SECONDS


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
        sc = Scenario.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(src, _field(tuple(err["loc"])), msg,
                          "see topologies/scenarios/trash-handover.yaml") from e
    if sc.networks:  # trace files named relative to the scenario; a bad one fails here
        from testbed.model import trace

        base = path.resolve().parent
        sc = sc.model_copy(update={"networks": {ar: t.resolved(base) for ar, t in sc.networks.items()}})
        for t in sc.networks.values():
            trace.network_trace(t, trace.read_file)
    return sc
