#!/usr/bin/python
"""Ansible module: a node's layer 3 as the lab plans it, changed only where the host differs.

Written for testbed (ansible-core has no module for addresses, routes and Linux bridges, and
ansible.posix's sysctl would be a vendored collection for one setting): it reads the host's
state with ``ip -j`` and /proc/sys and applies, in one ``ip -batch``, only the bridges,
addresses, routes and link states that are missing, and writes only the sysctls that differ.
A second run on a converged host reports changed=false.
"""

from __future__ import annotations

import json
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: testbed_network
short_description: bridges, addresses, routes, sysctls and link states of a testbed node
options:
  bridges: {type: list, elements: dict, default: []}
  addresses: {type: dict, default: {}}
  routes: {type: list, elements: dict, default: []}
  sysctls: {type: dict, default: {}}
  optimistic_dad: {type: list, elements: str, default: [], description: interfaces to give RFC 4429
    optimistic DAD, or no DAD where the kernel lacks it}
  up: {type: list, elements: str, default: []}
  down: {type: list, elements: str, default: []}
  sctp: {type: bool, default: false, description: load the sctp module where /proc/sys/net/sctp is absent}
  packages: {type: list, elements: str, default: [], description: Debian packages to report as missing}
"""


def ip_json(*args: str) -> list[dict]:
    cp = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(cp.stdout or "[]")


def sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def main() -> None:
    m = AnsibleModule(argument_spec={
        "bridges": {"type": "list", "elements": "dict", "default": []},
        "addresses": {"type": "dict", "default": {}},
        "routes": {"type": "list", "elements": "dict", "default": []},
        "sysctls": {"type": "dict", "default": {}},
        "optimistic_dad": {"type": "list", "elements": "str", "default": []},
        "up": {"type": "list", "elements": "str", "default": []},
        "down": {"type": "list", "elements": "str", "default": []},
        "sctp": {"type": "bool", "default": False},
        "packages": {"type": "list", "elements": "str", "default": []},
    }, supports_check_mode=True)
    p = m.params
    done: list[str] = []
    missing_packages = [pkg for pkg in p["packages"] if subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status}", pkg], capture_output=True, text=True,
        check=False).stdout.strip() != "installed"]
    if p["sctp"] and not os.path.isdir("/proc/sys/net/sctp"):
        done.append("modprobe sctp")
        if not m.check_mode:
            cp = subprocess.run(["modprobe", "sctp"], capture_output=True, text=True, check=False)
            if cp.returncode != 0:
                m.fail_json(msg=f"this kernel has no SCTP (modprobe sctp: {cp.stderr.strip()}): "
                                "a correspondent and a mobile node need CONFIG_IP_SCTP")
    links = {link["ifname"]: link for link in ip_json("link", "show")}
    cmds: list[str] = []
    for b in p["bridges"]:
        if b["name"] not in links:
            cmds.append(f"link add {b['name']} type bridge forward_delay 0 stp_state 0 mcast_snooping 0")
        for port in b.get("ports", []):
            if links.get(port, {}).get("master") != b["name"]:
                cmds.append(f"link set dev {port} master {b['name']}")
    missing = [i for i in [*p["addresses"], *p["up"], *p["down"]]
               if i not in links and i not in {b["name"] for b in p["bridges"]}]
    if missing:
        m.fail_json(msg=f"no interface {', '.join(missing)} on this host (the inventory names the "
                        "topology's interfaces: rename the host's to match)")
    # sysctls first: an interface's IPv6 settings apply before its addresses come up
    sysctls = dict(p["sysctls"])
    for ifname in p["optimistic_dad"]:
        base = f"net.ipv6.conf.{ifname}"
        if os.path.exists(sysctl_path("net.ipv6.conf.default.optimistic_dad")):
            sysctls |= {f"{base}.optimistic_dad": "1", f"{base}.use_optimistic": "1"}
        else:  # a kernel without CONFIG_IPV6_OPTIMISTIC_DAD (Debian's UML build): skip DAD
            sysctls[f"{base}.accept_dad"] = "0"
    pending_sysctls = {}
    for key, value in sysctls.items():
        path = sysctl_path(key)
        if not os.path.exists(path):
            pending_sysctls[key] = str(value)  # a bridge this run makes: set once it exists
            continue
        try:
            with open(path) as f:
                current = f.read().strip()
        except OSError as e:
            m.fail_json(msg=f"sysctl {key}: {e.strerror}")
        if current != str(value):
            done.append(f"sysctl {key}={value}")
            if not m.check_mode:
                with open(path, "w") as f:
                    f.write(str(value))
    addrs = {a["ifname"]: {f"{i['local']}/{i['prefixlen']}" for i in a.get("addr_info", [])}
             for a in ip_json("addr", "show")}
    for ifname, wanted in p["addresses"].items():
        for a in wanted:
            if a not in addrs.get(ifname, set()):
                cmds.append(f"addr add {a} dev {ifname}" + (" nodad" if ":" in a else ""))
    for ifname in p["up"]:
        if "UP" not in links.get(ifname, {}).get("flags", []):
            cmds.append(f"link set dev {ifname} up")
    for ifname in p["down"]:
        if "UP" in links.get(ifname, {}).get("flags", []):
            cmds.append(f"link set dev {ifname} down")
    routes = {(r["dst"], r.get("gateway"), r.get("dev")) for fam in ("-4", "-6")
              for r in ip_json(fam, "route", "show")}
    for r in p["routes"]:
        dst = "default" if r["dst"] in ("0.0.0.0/0", "::/0") else r["dst"]
        if (dst, r["via"], r["dev"]) not in routes:
            cmds.append(f"route replace {r['dst']} via {r['via']} dev {r['dev']}")
    done += cmds
    if cmds and not m.check_mode:
        cp = subprocess.run(["ip", "-batch", "-"], input="\n".join(cmds) + "\n", capture_output=True,
                            text=True, check=False)
        if cp.returncode != 0:
            m.fail_json(msg=f"ip -batch: {cp.stderr.strip()}", commands=cmds)
    for key, value in pending_sysctls.items():
        done.append(f"sysctl {key}={value}")
        if m.check_mode:
            continue
        try:
            with open(sysctl_path(key), "w") as f:
                f.write(value)
        except OSError as e:
            m.fail_json(msg=f"sysctl {key}: {e.strerror} (does this kernel have it?)", done=done)
    m.exit_json(changed=bool(done), done=done, missing_packages=missing_packages,
                optimistic_dad_supported=os.path.exists(sysctl_path("net.ipv6.conf.default.optimistic_dad")))


if __name__ == "__main__":
    main()
