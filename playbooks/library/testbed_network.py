#!/usr/bin/python
"""Ansible module: a node's layer 3 as the lab plans it, changed only where the host differs.

Written for testbed (ansible-core has no module for addresses, routes and Linux bridges, and
ansible.posix's sysctl would be a vendored collection for one setting): it reads the host's
state with ``ip -j`` and /proc/sys and applies, in one ``ip -batch``, only the bridges,
addresses, routes and link states that are missing, and writes only the sysctls that differ.
It also sets an MPTCP node's path-manager limits (``ip mptcp limits``), an access router's
nftables tables (NAT, ingress filter: each table replaced whole when its rules differ from those
last applied) and each shaped interface's egress (netem where the kernel has it, else a tbf rate
and an nftables loss rule; delay or jitter without netem fails, naming the interface and the
topology's field). A second run on a converged host reports changed=false.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
  mptcp: {type: dict, description: the path manager's limits (subflows, add_addr_accepted)}
  nft: {type: str, default: "", description: nftables commands of the node's middlebox tables}
  shaping: {type: list, elements: dict, default: [], description: shaped interfaces
    (testbed.deploy.render.shape_spec)}
"""

STATE = "/var/lib/testbed/network"  # what was applied last: the tables' and qdiscs' checksums


def run(m: AnsibleModule, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    cp = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if cp.returncode != 0:
        m.fail_json(msg=f"`{' '.join(argv[:6])}` exited {cp.returncode}: {cp.stderr.strip()}")
    return cp


def applied(name: str, spec: str, record: bool) -> bool:
    """Was ``spec`` the last applied as ``name``? ``record``: it is now."""
    digest = hashlib.sha256(spec.encode()).hexdigest()
    path = os.path.join(STATE, name)
    try:
        with open(path) as f:
            if f.read().strip() == digest:
                return True
    except OSError:
        pass
    if record:
        os.makedirs(STATE, exist_ok=True)
        with open(path, "w") as f:
            f.write(digest + "\n")
    return False


def nft_tables(rules: str) -> list[str]:
    """``family name`` of every table the rules add."""
    return re.findall(r"^add table (\S+ \S+)$", rules, flags=re.M)


def present_tables(m: AnsibleModule) -> set[str]:
    out = run(m, ["nft", "list", "tables"]).stdout
    return {line.removeprefix("table ").strip() for line in out.splitlines()}


def apply_nft(m: AnsibleModule, rules: str, done: list[str]) -> None:
    """The middlebox tables, each replaced whole when the rules differ from those applied."""
    tables, present = nft_tables(rules), present_tables(m)
    if all(t in present for t in tables) and applied("nft", rules, record=False):
        return
    done.append("nftables " + ", ".join(tables))
    if m.check_mode:
        return
    drop = "".join(f"delete table {t}\n" for t in tables if t in present)
    run(m, ["nft", "-f", "-"], drop + rules)
    applied("nft", rules, record=True)


def has_netem() -> bool:
    """Can this kernel make a netem qdisc? Probed in a throwaway network namespace."""
    argv = ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    cp = subprocess.run(argv, capture_output=True, text=True, check=False)
    return cp.returncode == 0


def apply_shaping(m: AnsibleModule, specs: list[dict], done: list[str]) -> None:
    """Each shaped interface's egress: netem, else tbf and an nftables loss rule."""
    if not specs:
        return
    netem = has_netem()
    for sp in specs:
        if not netem and sp["needs_netem"]:
            m.fail_json(msg=f"{sp['field']}: delay/jitter on {sp['ifname']} needs netem, which this "
                            "host's kernel lacks (CONFIG_NET_SCH_NETEM): keep rate and loss only")
        name = f"shape-{sp['ifname']}"
        spec = json.dumps(sp, sort_keys=True) + f" netem={netem}"
        root = json.loads(run(m, ["tc", "-j", "qdisc", "show", "dev", sp["ifname"], "root"]).stdout or "[]")
        kind = root[0].get("kind") if root else None
        want = "netem" if netem else "tbf" if sp["tbf"] else kind
        if kind == want and applied(name, spec, record=False):
            continue
        done.append(f"shape {sp['ifname']}")
        if m.check_mode:
            continue
        if netem:
            run(m, sp["netem"])
        else:
            if sp["tbf"]:
                run(m, sp["tbf"])
            if sp["loss"]:
                table = nft_tables(sp["loss"])[0]
                chain = re.search(r"^add chain \S+ \S+ (\S+)", sp["loss"], flags=re.M).group(1)
                if table in present_tables(m):  # the chain again, with this loss
                    subprocess.run(["nft", "delete", "chain", *table.split(), chain],
                                   capture_output=True, check=False)
                run(m, ["nft", "-f", "-"], sp["loss"])
        applied(name, spec, record=True)


def apply_mptcp(m: AnsibleModule, limits: dict, done: list[str]) -> None:
    """The in-kernel path manager's limits, where they differ."""
    words = run(m, ["ip", "mptcp", "limits", "show"]).stdout.split()  # "add_addr_accepted 0 subflows 2"
    now = dict(zip(words[::2], words[1::2], strict=False))
    if all(int(now.get(k, -1)) == int(v) for k, v in limits.items()):
        return
    done.append("mptcp limits " + " ".join(f"{k} {v}" for k, v in sorted(limits.items())))
    if not m.check_mode:
        run(m, ["ip", "mptcp", "limits", "set", *(str(x) for k, v in sorted(limits.items()) for x in (k, v))])


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
        "mptcp": {"type": "dict", "default": None},
        "nft": {"type": "str", "default": ""},
        "shaping": {"type": "list", "elements": "dict", "default": []},
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
    if p["mptcp"]:
        apply_mptcp(m, p["mptcp"], done)
    if p["nft"]:
        apply_nft(m, p["nft"], done)
    apply_shaping(m, p["shaping"], done)
    m.exit_json(changed=bool(done), done=done, missing_packages=missing_packages,
                optimistic_dad_supported=os.path.exists(sysctl_path("net.ipv6.conf.default.optimistic_dad")))


if __name__ == "__main__":
    main()
