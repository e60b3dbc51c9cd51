"""Loading topologies from YAML: schema validation plus the cross-field checks a schema cannot do.

Every problem becomes a ``ConfigError`` naming the file, the field path and the fix, before
anything is created.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from testbed.errors import ConfigError
from testbed.model.topology import NAME_RE, Role, Topology

TOPOLOGY_DIR = Path(__file__).resolve().parents[2] / "topologies"
MAX_MOBILES = 100  # one DHCP pool of 100 addresses per access network by default
DEFAULT_TOPOLOGY = "two-ar"


def resolve(name_or_path: str | Path | None) -> Path:
    """A topology argument is a path, or the name of a file in ``topologies/``."""
    if name_or_path is None:
        name_or_path = DEFAULT_TOPOLOGY
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return TOPOLOGY_DIR / f"{name_or_path}.yaml"


def load(name_or_path: str | Path | None = None) -> Topology:
    path = resolve(name_or_path)
    src = str(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(
            src, "-", f"cannot read: {e.strerror}", "give a path or a name in topologies/"
        ) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "-"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(src, where, f"invalid YAML: {problem}", "fix the YAML syntax") from e
    topo = from_dict(data, src)
    check_traces(topo)
    return topo


def check_traces(topo: Topology) -> None:
    """Parse every access network's trace: a bad file fails here, naming its line."""
    from testbed.model import trace

    for acc in topo.access_networks:
        if acc.replay is not None:
            trace.network_trace(acc.replay, trace.read_file)


def resolve_traces(topo: Topology, source: str) -> Topology:
    """Trace files named relative to the topology file, made absolute (the lab's state keeps
    them so, whoever reads it from where)."""
    base = Path(source).resolve().parent
    accs = [a.model_copy(update={"replay": a.replay.resolved(base)}) if a.replay is not None else a
            for a in topo.access_networks]
    return topo.model_copy(update={"access_networks": accs})


def expand_mobiles(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The compact form for many mobile nodes: ``mobile.count: N`` replaces the node
    ``mobile.node`` (the template) by N copies ``<node>1`` … ``<node>N``, and ``mobile.node``
    then names the first. Done once: the result says ``count: 1`` with the N nodes in it."""
    mobile = data.get("mobile")
    if not isinstance(mobile, dict) or not isinstance(data.get("nodes"), dict):
        return data
    count = mobile.get("count", 1)
    if isinstance(count, int) and count > MAX_MOBILES:
        raise ConfigError(source, "mobile.count", f"{count} mobile nodes: at most {MAX_MOBILES}",
                          f"lower mobile.count to {MAX_MOBILES} or less")
    if not isinstance(count, int) or count <= 1:
        return data
    template = mobile.get("node", "mn")
    nodes = dict(data["nodes"])
    if template not in nodes:
        raise ConfigError(source, "mobile.node", f"count {count} copies node {template!r}, which is not "
                          "declared", f"declare {template} under nodes with role mobile")
    names = [f"{template}{i}" for i in range(1, count + 1)]
    if not NAME_RE.match(names[-1]):
        raise ConfigError(source, "mobile.count", f"{names[-1]!r} is no node name (1-7 lowercase letters "
                          "and digits)", "give the template node a shorter name")
    taken = [n for n in names if n in nodes]
    if taken:
        raise ConfigError(source, "nodes", f"{taken[0]} is both declared and a copy of {template}",
                          "rename it, or lower mobile.count")
    spec = nodes.pop(template)
    out: dict[str, Any] = {}
    for name, value in data["nodes"].items():  # the copies where the template was
        if name == template:
            out.update({n: spec for n in names})
        else:
            out[name] = value
    return {**data, "nodes": out, "mobile": {**mobile, "node": names[0], "count": 1}}


def from_dict(data: Any, source: str = "<topology>") -> Topology:
    if not isinstance(data, dict):
        raise ConfigError(source, "-", "top level must be a mapping", "see topologies/two-ar.yaml")
    data = expand_mobiles(data, source)
    try:
        topo = Topology.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(x) for x in err["loc"]) or "-"
        msg = err["msg"].removeprefix("Value error, ")
        fix = {
            "extra_forbidden": "remove it or check its spelling",
            "missing": "add it",
        }.get(err["type"], "see topologies/two-ar.yaml for the expected form")
        raise ConfigError(source, field, msg, fix) from e
    check(topo, source)
    if any(a.replay is not None for a in topo.access_networks) and Path(source).is_file():
        topo = resolve_traces(topo, source)
    return topo


def check(topo: Topology, source: str) -> None:
    """Cross-field rules: references, roles, uniqueness of addresses and prefixes."""
    nodes = topo.nodes

    def need(field: str, name: str, role: Role | None = None) -> None:
        if name not in nodes:
            raise ConfigError(
                source, field, f"unknown node {name!r}", f"declare it under nodes ({', '.join(nodes)})"
            )
        if role is not None and nodes[name].role is not role:
            raise ConfigError(source, field, f"node {name!r} must have role {role.value}")

    need("mobile.node", topo.mobile.node, Role.MOBILE)
    mobiles = set(topo.mobiles)
    need("dns.server", topo.dns.server, Role.DNS)
    for name, spec in nodes.items():
        if spec.sctp.stack != "none" and spec.role not in (Role.MOBILE, Role.HOST):
            raise ConfigError(source, f"nodes.{name}.sctp.stack",
                              "kernel SCTP endpoints are mobile or host nodes", "remove sctp here")
        if spec.sctp.stack == "usrsctp" and spec.role is not Role.HOST:
            raise ConfigError(source, f"nodes.{name}.sctp.stack",
                              "usrsctp is for a correspondent: it reads the node's addresses once, "
                              "at start, and has no public call to add one, so it cannot follow moves",
                              "use stack: uml or qemu on the mobile node")
        if spec.mptcp.enabled and spec.role not in (Role.MOBILE, Role.HOST):
            raise ConfigError(source, f"nodes.{name}.mptcp.enabled",
                              "MPTCP endpoints are mobile or host nodes", "remove mptcp here")
        if spec.mptcp.enabled and spec.sctp.stack in ("uml", "qemu", "vm"):
            raise ConfigError(source, f"nodes.{name}.mptcp.enabled", f"an MPTCP node runs on the host "
                              f"kernel, not on its own {spec.sctp.stack} kernel (Debian's UML build "
                              "has no MPTCP)", "use sctp stack auto or host on it, or another node")
        if spec.quic.enabled and spec.role not in (Role.MOBILE, Role.HOST):
            raise ConfigError(source, f"nodes.{name}.quic.stack", "QUIC endpoints are mobile or host nodes",
                              "remove quic here")
        if spec.quic.stack == "ngtcp2" and spec.sctp.stack in ("uml", "qemu", "vm"):
            raise ConfigError(source, f"nodes.{name}.quic.stack", f"ngtcp2 runs in a namespace on the "
                              f"host kernel here, not on its own {spec.sctp.stack} kernel (its UDP GSO "
                              "is turned off on the namespace's interfaces)", "use quic stack aioquic "
                              "on a kernel node")
    if topo.mobile.location == "sig0" and topo.mobile.sig0_algorithm not in topo.dns.sig0_algorithms:
        raise ConfigError(source, "mobile.sig0_algorithm",
                          f"{topo.mobile.sig0_algorithm} is not among dns.sig0_algorithms",
                          f"use one of {', '.join(topo.dns.sig0_algorithms)}")

    pairs: set[frozenset[str]] = set()
    for i, link in enumerate(topo.links):
        need(f"links.{i}.a", link.a)
        need(f"links.{i}.b", link.b)
        if link.a == link.b:
            raise ConfigError(source, f"links.{i}", "a link joins two different nodes")
        if mobiles & {link.a, link.b}:
            raise ConfigError(
                source, f"links.{i}", "the mobile node attaches through access_networks, not links"
            )
        pair = frozenset((link.a, link.b))
        if pair in pairs:
            raise ConfigError(source, f"links.{i}", f"second link between {link.a} and {link.b}")
        pairs.add(pair)

    served: set[str] = set()
    for i, acc in enumerate(topo.access_networks):
        need(f"access_networks.{i}.router", acc.router, Role.ACCESS_ROUTER)
        if acc.router in served:
            raise ConfigError(source, f"access_networks.{i}.router", f"{acc.router} already serves a network")
        served.add(acc.router)
    for name, spec in nodes.items():
        for j, ar in enumerate(spec.attach):
            if spec.role is not Role.HOST:
                raise ConfigError(source, f"nodes.{name}.attach", f"only host nodes sit on access "
                                  f"networks this way ({name} is {spec.role.value})", "remove attach")
            if ar not in served:
                raise ConfigError(source, f"nodes.{name}.attach.{j}", f"{ar!r} serves no access network",
                                  f"name an access router ({', '.join(sorted(served))})")
    coop = topo.mobile.cooperating
    if coop is not None and (coop not in topo.nodes or topo.nodes[coop].role is not Role.HOST):
        raise ConfigError(source, "mobile.cooperating", f"{coop!r} is not a host node",
                          "name a node of role host")
    for j, ar in enumerate(topo.mobile.attached):
        if ar not in served:
            raise ConfigError(
                source, f"mobile.attached.{j}", f"{ar!r} serves no access network", "name an access router"
            )

    # no two subnets may overlap: overlapping prefixes would mean duplicate addresses
    seen: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for field, net in _prefixes(topo):
        for other, ofield in seen:
            if net.version == other.version and net.overlaps(other):  # type: ignore[arg-type]
                raise ConfigError(
                    source,
                    field,
                    f"{net} overlaps {other} ({ofield}): duplicate addresses",
                    "give every link and access network its own prefix",
                )
        seen.append((net, field))


def _prefixes(topo: Topology):
    for i, link in enumerate(topo.links):
        yield f"links.{i}.ipv4", link.ipv4
        yield f"links.{i}.ipv6", link.ipv6
    for i, acc in enumerate(topo.access_networks):
        if acc.ipv4 is not None:
            yield f"access_networks.{i}.ipv4", acc.ipv4
        if acc.ipv6 is not None:
            yield f"access_networks.{i}.ipv6", acc.ipv6
