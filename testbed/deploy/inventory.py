"""An Ansible inventory for a topology's nodes (``testbed inventory TOPOLOGY``).

One host per node, named after it, in the group of its role (``dns_servers``,
``access_routers``, ``mobile_nodes``, ``correspondents``: the first host that speaks the MN's
transport, ``routers``, ``hosts``, ``attackers``: a host on an access network beside the MN);
the topology itself is the ``testbed_topology`` variable, from which the playbooks render
every file. ``ansible_host`` is the node's name (resolve it, or edit it), or, for a bare lab
that is up, the node's management address, with the lab's SSH key.
Interfaces keep the topology's names (``<node>-<peer>``): a real host's must be named so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from testbed.deploy.render import capture_links, correspondent_of, needs_package
from testbed.errors import ConfigError
from testbed.model.topology import Role, Topology

GROUPS = {Role.DNS: "dns_servers", Role.ACCESS_ROUTER: "access_routers", Role.MOBILE: "mobile_nodes",
          Role.ROUTER: "routers", Role.HOST: "hosts"}


def build(topo: Topology, bare: dict[str, Any] | None = None,
          known_hosts: Path | None = None, source: str | None = None) -> dict[str, Any]:
    """The inventory as a dict (YAML-ready). ``bare``: a bare lab's record (``lab.bare``)."""
    data = topo.model_dump(mode="json")
    try:
        cn = correspondent_of(topo)
    except ValueError:
        cn = None
    groups: dict[str, dict[str, Any]] = {g: {"hosts": {}} for g in
                                         ["dns_servers", "access_routers", "mobile_nodes", "correspondents",
                                          "routers", "hosts", "attackers"]}
    mgmt = (bare or {}).get("management", {}).get("hosts", {})
    for name, spec in topo.nodes.items():
        host: dict[str, Any] = {"testbed_node": name, "ansible_host": mgmt.get(name, name).split("/")[0]}
        if needs_package(topo, name):
            host["testbed_package"] = True
        links = capture_links(data, name)
        if links:
            host["testbed_capture"] = links
        group = "correspondents" if name == cn else GROUPS[spec.role]
        if spec.role is Role.HOST and spec.attach and name != cn:
            group = "attackers"  # beside the MN on an access network: where attacks come from
        groups[group]["hosts"][name] = host
    all_vars: dict[str, Any] = {
        "ansible_user": (bare or {}).get("user", "root"),
        "testbed_topology": data,
        "testbed_mobile": topo.mobile.node,
        "testbed_correspondent": cn,
    }
    if bare:
        all_vars["ansible_ssh_private_key_file"] = bare["ssh_key"]
        kh = known_hosts or Path(bare["ssh_key"]).parent / "known_hosts"
        all_vars["ansible_ssh_common_args"] = \
            f"-o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={kh}"
    return {"all": {"vars": all_vars, "children": {g: v for g, v in groups.items() if v["hosts"]}}}


def write(inventory: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by `testbed inventory`; edit ansible_host for real hosts\n"
                    + yaml.safe_dump(inventory, sort_keys=False))


def load(path: Path) -> dict[str, Any]:
    """An inventory file as written here (YAML), checked for what testbed reads from it."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(str(path), "-", f"cannot read: {e.strerror}", "give the file `testbed "
                          "inventory` wrote") from e
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "-", f"invalid YAML: {e}".splitlines()[0], "fix the YAML") from e
    if not isinstance(data, dict) or "testbed_topology" not in (data.get("all", {}).get("vars") or {}):
        raise ConfigError(str(path), "all.vars.testbed_topology", "missing", "write the inventory with "
                          "`testbed inventory TOPOLOGY`, which puts the topology there")
    return data


PACKAGED = ("mobile_nodes", "correspondents")  # the groups site.yml installs the package on by default


def packaged(inventory: dict[str, Any]) -> set[str]:
    """The hosts the package is deployed on (their version is checked before a run): those
    with ``testbed_package``, by default the mobile nodes and the correspondents."""
    out = set()
    for g, group in (inventory["all"].get("children") or {}).items():
        for name, hv in (group.get("hosts") or {}).items():
            if (hv or {}).get("testbed_package", g in PACKAGED):
                out.add(name)
    return out


def groups(inventory: dict[str, Any]) -> dict[str, list[str]]:
    """Group name -> its hosts."""
    children = inventory["all"].get("children") or {}
    return {g: list(group.get("hosts") or {}) for g, group in children.items()}


def hosts(inventory: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Host name -> its variables (with the group's), over every group."""
    out: dict[str, dict[str, Any]] = {}
    for group in (inventory["all"].get("children") or {}).values():
        for name, hv in (group.get("hosts") or {}).items():
            out[name] = {**(group.get("vars") or {}), **(hv or {})}
    return out
