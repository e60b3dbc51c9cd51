"""SCTP settings of an interop matrix: per-netns sysctls on both endpoints, who updates the
association's addresses, and what the checker should then show (scenario expectations).

Built in (``BUILTIN``); a YAML file adds more or replaces one by name::

    settings:
      cn-noauth:                       # MN with AUTH, CN accepting ASCONF without it
        description: the CN accepts unauthenticated ASCONF
        sysctls: {addip_noauth_enable: 1}
        cn: {auth_enable: 0}           # one side only (over ``sysctls``)
        binding: trash                 # trash | auto_asconf (default: the scenario's)
        expect: {asconf.auth: fail}    # rule id -> pass | fail
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from testbed.conformance.quic_rules import QUIC_RULE_IDS
from testbed.conformance.rules import RULE_IDS
from testbed.errors import ConfigError
from testbed.model.topology import SctpSettings, Strict
from testbed.runtimes.guest import SCTP_SYSCTLS
from testbed.scenario.quic_traffic import TIMER_RULE

SysctlName = Literal["addip_enable", "auth_enable", "addip_noauth_enable", "default_auto_asconf"]
Sysctls = dict[SysctlName, Literal[0, 1]]
assert set(SysctlName.__args__) == set(SCTP_SYSCTLS)  # type: ignore[attr-defined]
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,31}$"


class Setting(Strict):
    """One column group of the matrix: the same scenario under these SCTP settings."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    sysctls: Sysctls = Field(default_factory=dict)  # net.sctp.<name> on both endpoints
    mn: Sysctls = Field(default_factory=dict)  # the mobile node only, over ``sysctls``
    cn: Sysctls = Field(default_factory=dict)  # the correspondent only, over ``sysctls``
    binding: Literal["trash", "auto_asconf"] | None = None  # None: the scenario's
    expect: dict[str, Literal["pass", "fail"]] = Field(default_factory=dict)

    @field_validator("expect")
    @classmethod
    def _rule_ids(cls, v: dict[str, str]) -> dict[str, str]:
        known = (*RULE_IDS, *QUIC_RULE_IDS, TIMER_RULE)
        for rid in v:
            if rid not in known and not rid.startswith("timeline."):
                raise ValueError(f"unknown rule {rid!r} (one of {', '.join(known)})")
        return v

    def values(self, side: Literal["mn", "cn"]) -> dict[str, int]:
        """Every SCTP sysctl of one endpoint: the lab's defaults, then ``sysctls``, then the
        side's own (each is set explicitly: a namespace starts at the kernel's defaults)."""
        base = SctpSettings()
        return {k: int(getattr(base, k)) for k in SCTP_SYSCTLS} | self.sysctls | getattr(self, side)


BUILTIN: dict[str, Setting] = {s.name: s for s in (
    Setting(name="default", description="ASCONF with AUTH (RFC 5061, RFC 4895), TraSH binding",
            sysctls={"addip_enable": 1, "auth_enable": 1}),
    Setting(name="noauth", description="AUTH off, unauthenticated ASCONF allowed "
            "(addip_noauth_enable): the handover works, its ASCONFs carry no AUTH",
            sysctls={"auth_enable": 0, "addip_noauth_enable": 1},
            expect={"asconf.auth": "fail"}),
    # RFC 5061 §4.1.1 wants every ASCONF authenticated. Linux enforces it at set-up: unless
    # addip_noauth_enable, it answers an INIT that lists ASCONF without AUTH with ABORT (seen on
    # 6.1 and 6.12), so the association itself is refused and no ASCONF is ever sent.
    Setting(name="auth-off", description="AUTH off, unauthenticated ASCONF refused: the peer "
            "ABORTs the INIT (ASCONF offered without AUTH), no association forms",
            sysctls={"auth_enable": 0, "addip_noauth_enable": 0},
            expect={"continuity.association": "fail"}),
    Setting(name="auto-asconf", description="the kernel's own auto_asconf (wildcard bind, "
            "default_auto_asconf=1) instead of TraSH: ADD_IP and DELETE_IP, no SET_PRIMARY",
            sysctls={"default_auto_asconf": 1}, binding="auto_asconf",
            expect={"order.trash": "fail"}),
)}  # fmt: skip


def load_file(path: str | Path) -> dict[str, Setting]:
    """Settings from a YAML file (``settings: {name: {...}}``); errors name the file and field."""
    src = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(src, "-", f"cannot read: {e.strerror}", "give the path of a YAML file") from e
    except yaml.YAMLError as e:
        raise ConfigError(src, "-", f"invalid YAML: {e}".splitlines()[0], "fix the YAML syntax") from e
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or set(data) - {"settings"}:
        raise ConfigError(src, "settings", "expected one mapping `settings: {name: {...}}`",
                          "see testbed/interop/settings.py for the form")
    out: dict[str, Setting] = {}
    for name, body in data["settings"].items():
        try:
            out[str(name)] = Setting.model_validate({"name": str(name), **(body or {})})
        except (ValidationError, TypeError) as e:
            if isinstance(e, TypeError):
                raise ConfigError(src, f"settings.{name}", "a setting is a mapping",
                                  "give sysctls, expect, ...") from e
            err = e.errors()[0]
            field = ".".join(str(x) for x in ("settings", name, *err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            raise ConfigError(src, field, msg, {"extra_forbidden": "remove it or check its spelling"}
                              .get(err["type"], "see testbed/interop/settings.py")) from e
    return out


def select(names: list[str], extra: dict[str, Setting] | None = None) -> list[Setting]:
    """The named settings, in the order given (built-ins, overridden or extended by ``extra``)."""
    known = BUILTIN | (extra or {})
    out = []
    for n in names:
        if n not in known:
            raise ConfigError("--settings", n, "unknown setting",
                              f"one of {', '.join(known)}, or add it with --settings-file")
        if known[n] not in out:
            out.append(known[n])
    if not out:
        raise ConfigError("--settings", "-", "no setting given", f"one of {', '.join(known)}")
    return out
