"""Docker backend: every node a container of its role's image, links veth pairs between them.

* Containers run with ``network_mode: none``; the backend makes each link a veth pair created
  straight into the two containers' network namespaces (``ip link add … netns A type veth peer
  … netns B``), so no end ever exists in the root namespace and no Docker network is made.
* Each container's namespace is pinned as ``<lab>-<node>`` (``ip netns attach``) and its
  loopback carries the lab's label, as on the mininet backend: ``ip netns exec <lab>-<node>``,
  capture, probes and the L3 set-up (``l3``) work unchanged.
* Containers carry ``testbed.lab``, ``testbed.run_root``, ``testbed.node`` and
  ``testbed.role``; teardown and ``clean`` remove by those labels and nothing else, so a
  container started by hand survives.
* The lab's run dir is bind-mounted at the same path (configs written on the host are read in
  the container, logs and sockets written there are read on the host), and the node's
  ``/etc/netns/<lab>-<node>/resolv.conf`` over ``/etc/resolv.conf``: the node resolves through
  the lab's named.
* Capabilities instead of ``--privileged``: NET_ADMIN and NET_RAW (addresses, routes, raw
  ICMPv6/DHCP sockets), SYS_ADMIN (dhcpcd's private mount namespace). ``/proc/sys`` is left
  writable (no read-only or masked paths): the mobility agent sets per-interface sysctls.
  (A privileged container asks for every capability, which fails where the host's bounding
  set lacks one, as here: CAP_SYS_RESOURCE.)
* Nodes of an SCTP topology get an exec-able tmpfs at ``/run/uml`` as ``TMPDIR`` (Docker's
  ``/dev/shm`` is 64 MiB and noexec; User-Mode Linux maps its memory file from ``TMPDIR``)
  and ``/dev/net/tun``.
* A kernel-SCTP node (``stack: uml``) runs its User-Mode Linux kernel inside its container:
  the supervisor is started with the engine's exec (``kernel_host``), so UML is a process of the
  container, its NICs raw sockets on the container's veth ends, its guest root the image's
  filesystem over hostfs (the image's python, package and ``uml-init.sh``, named by the image's
  labels), its memory file on the container's ``/run/uml``. UML traces its guest processes
  with ptrace, which Docker's default seccomp profile allows (since kernel 4.8), so these
  containers keep that profile and get no SYS_PTRACE: a process may trace its own children.
  QEMU nodes are refused (they would need their TAPs and bridges inside the container too).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testbed.backends import engine, images, l3
from testbed.errors import ConfigError, TestbedError
from testbed.host import netns
from testbed.model.addressing import LabPlan
from testbed.model.topology import Role, Topology
from testbed.progress import Progress
from testbed.runtimes.container import ContainerNode
from testbed.runtimes.kernel_nodes import KernelHost, stack_of
from testbed.runtimes.node_root import NodeRoot
from testbed.state import LabState, lab_of_label, namespace_label, run_root

UML_TMPFS = "/run/uml"
UML_TMPFS_MB = 1024  # a limit, not a reservation: >= guest memory plus the kernel's own
CAPS = ["NET_ADMIN", "NET_RAW", "SYS_ADMIN"]
PARALLEL = 6  # engine requests in flight while creating or removing a lab's containers
CHECKED = images.STORE / "image-checks"  # one empty file per (image id, check script) that passed
# an image's testbed.* labels a node's record keeps: where its package and UML init are
PACKAGE_LABELS = ("python", "pythonpath", "uml_init")

# what a role's image must hold: (binary, Debian package); every node also runs sh and timeout
NEEDS: dict[Role, tuple[tuple[str, str], ...]] = {
    Role.DNS: (("named", "bind9"), ("named-checkconf", "bind9-utils")),
    Role.ACCESS_ROUTER: (("radvd", "radvd"), ("dhcpd", "isc-dhcp-server")),
    Role.MOBILE: (("dhcpcd", "dhcpcd-base"), ("unshare", "util-linux")),
    Role.HOST: (),
    Role.ROUTER: (),
}
COMMON_NEEDS = (("sh", "dash"), ("timeout", "coreutils"))
# a kernel node's image boots UML over its own root: the kernel, modprobe, util-linux's mount
KERNEL_NEEDS = (("linux.uml", "user-mode-linux"), ("modprobe", "kmod"), ("mount", "mount"))
SIG0_MIN = (9, 20)


def labels(lab: str, node: str = "", role: str = "") -> dict[str, str]:
    out = {"testbed.lab": lab, "testbed.run_root": str(run_root())}
    if node:
        out |= {"testbed.node": node, "testbed.role": role}
    return out


def check_script(role: Role, python: str, agent: bool, uml_init: str | None = None) -> str:
    """A shell script printing one ``missing <binary>`` line per absent need, ``named -v``
    on a DNS node, and ``no-package`` when the MN's interpreter cannot import the agent.
    ``uml_init`` (a kernel node's): the image must also boot UML, with that init."""
    needs = COMMON_NEEDS + NEEDS[role] + (KERNEL_NEEDS if uml_init is not None else ())
    names = [b for b, _ in needs]
    lines = [f'for b in {" ".join(names)}; do command -v "$b" >/dev/null 2>&1 || echo "missing $b"; done']
    if role is Role.DNS:
        lines.append("named -v 2>/dev/null")
    if role is Role.MOBILE and agent:
        lines.append(f'"{python or "python3"}" -c "import testbed.mobility.agent" >/dev/null 2>&1 '
                     '|| echo no-package')
    if uml_init is not None:
        lines.append(f'test -x "{uml_init}" || echo no-uml-init')
    return "\n".join(lines)


def check_output(node: str, role: Role, image: str, output: str, source: str) -> None:
    """Turn a node's check output into one error naming the fix, or nothing."""
    field = f"nodes.{node}.image"
    packages = dict(COMMON_NEEDS + NEEDS[role] + KERNEL_NEEDS)
    for line in output.splitlines():
        if line.startswith("missing "):
            b = line.split()[1]
            raise ConfigError(source, field, f"image {image} lacks {b}, which role {role.value} runs",
                              f"install the Debian package '{packages.get(b, b)}' in it, or drop "
                              f"{field} to use testbed's image")
        if line == "no-uml-init":
            raise ConfigError(source, field, f"image {image} has no UML init script, which a kernel "
                              "node boots", "build it FROM the testbed/mn or testbed/cn image, or set "
                              "its testbed.uml_init label to a copy of images/uml-init.sh in it")
        if line == "no-package":
            raise ConfigError(source, field, f"image {image} cannot import the testbed package "
                              "(the mobility agent)", "build it FROM the testbed/mn image, or set its "
                              "testbed.python label to an interpreter that has the package")
        if line.startswith("BIND "):
            ver = tuple(int(x) for x in line.split()[1].split("-")[0].split(".")[:2])
            if ver < SIG0_MIN:
                raise ConfigError(source, field, f"image {image} has {line.split('(')[0].strip()}, "
                                  "too old for SIG(0) updates (BIND >= 9.20)",
                                  "install bind9 from bookworm-backports, as images/dns/Dockerfile "
                                  "does")


class DockerBackend:
    """Builds a lab plan into containers and veth links; records each before creating it."""

    name = "docker"

    def __init__(self) -> None:
        # one runtime per node and container in this process: each holds its engine connections
        self._runtimes: dict[tuple[str, str, str], ContainerNode] = {}

    # ------------------------------------------------------------------ build
    def build(self, plan: LabPlan, state: LabState, progress: Progress,
              kernel_nodes: frozenset[str] = frozenset()) -> None:
        topo = plan.topology
        for n in sorted(kernel_nodes):
            if stack_of(topo.nodes[n].sctp) == "qemu":
                raise ConfigError(state.topology_file, f"nodes.{n}.sctp.stack",
                                  "QEMU nodes do not run on the docker backend",
                                  "use stack: uml (or auto) for it, or backend: mininet")
        for name in plan.nodes:
            if netns.exists(state.ns(name)):
                raise TestbedError(f"netns {state.ns(name)} already exists: another lab? run `testbed clean`")
        with engine.using() as eng:
            state.engine = eng.url
            state.save()
            chosen = self._images(eng, topo, state, progress)
            self._remove_orphans(eng, state.lab, progress)
            progress("containers")
            for name in plan.nodes:  # write-ahead: a crash from here on leaves a record
                ref, found = chosen[name]
                state.containers.append({"node": name, "name": state.ns(name), "id": "", "image": ref,
                                         **{k: found.get(f"testbed.{k}", "") for k in PACKAGE_LABELS}})
            state.save()
            with ThreadPoolExecutor(PARALLEL) as pool:
                made = list(pool.map(lambda n: self._create(eng, topo, state, n, chosen[n][0]),
                                     list(plan.nodes)))
            for rec, (cid, pid, image_id) in zip(state.containers, made, strict=True):
                rec["id"], rec["image_id"], rec["pid"] = cid, image_id, str(pid)
                ns = state.ns(rec["node"])
                state.netns.append(ns)
                state.save()
                netns.run(None, ["ip", "netns", "attach", ns, str(pid)])
                netns.run(None, ["ip", "-n", ns, "link", "set", "dev", "lo", "alias",
                                 namespace_label(state.lab)])
            progress("checking images")
            self._check_images(topo, state, kernel_nodes)
        progress("links")
        cmds = [f"link add name {v.a_ifname} netns {state.ns(v.a)} index {v.a_index} type veth peer "
                f"name {v.b_ifname} netns {state.ns(v.b)} index {v.b_index}" for v in plan.veths]
        if cmds:
            netns.run(None, ["ip", "-batch", "-"], input="\n".join(cmds) + "\n")
        progress("addresses and routes")
        l3.configure_all(plan, state, kernel_nodes)

    def _images(self, eng: engine.Engine, topo: Topology, state: LabState,
                progress: Progress) -> dict[str, tuple[str, dict[str, str]]]:
        """node -> (image ref, its labels): a node's own ``image:``, else its role's image,
        built first if the engine lacks the current one."""
        roles = [spec.role for spec in topo.nodes.values() if not spec.image]
        built: dict[Role, images.RoleImage] = {}
        if roles:
            progress("images")
            build_client = engine.client(eng.url, timeout=engine.BUILD_TIMEOUT)
            try:
                built = images.ensure(eng.client, roles, topo.images.base, progress,
                                      build_client=build_client)
            finally:
                build_client.close()
        out = {}
        for name, spec in topo.nodes.items():
            if spec.image:
                try:
                    im = eng.client.images.get(spec.image)
                except Exception as e:  # noqa: BLE001 - ImageNotFound, or an unusable reference
                    raise ConfigError(state.topology_file, f"nodes.{name}.image",
                                      f"image {spec.image!r} is not in the Docker engine ({eng.kind})",
                                      "build or load it first (`docker build`, `docker load`)") from e
                out[name] = (spec.image, dict(im.labels or {}))
            else:
                out[name] = (built[spec.role].ref, built[spec.role].labels())
        return out

    def _create(self, eng: engine.Engine, topo: Topology, state: LabState, node: str,
                image: str) -> tuple[str, int, str]:
        """Create and start one node's container; returns its id, its init's host pid and its
        image's id."""
        api = eng.client.api
        spec = topo.nodes[node]
        sctp = spec.sctp.stack != "none"
        binds = {
            str(state.dir): {"bind": str(state.dir), "mode": "rw"},
            str(netns.NETNS_ETC_DIR / state.ns(node) / "resolv.conf"): {"bind": "/etc/resolv.conf",
                                                                         "mode": "ro"},
        }
        state.dir.joinpath(node).mkdir(parents=True, exist_ok=True)
        hc = api.create_host_config(
            network_mode="none", cap_add=CAPS, security_opt=["apparmor=unconfined"], init=True,
            binds=binds,
            tmpfs={UML_TMPFS: f"rw,exec,nosuid,size={UML_TMPFS_MB}m"} if sctp else None,
            devices=["/dev/net/tun:/dev/net/tun:rwm"] if sctp else None,
            # the engine turns IPv6 off in a container whose Docker network has none, which is
            # every one here: the lab's links are dual stack
            sysctls={"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.default.disable_ipv6": "0"},
        )
        hc["MaskedPaths"], hc["ReadonlyPaths"] = [], []  # the API has them; the SDK has no keyword
        import docker.errors

        try:
            created = api.create_container(
                image, ["sleep", "infinity"], name=state.ns(node), hostname=node,
                labels=labels(state.lab, node, spec.role.value), host_config=hc,
                environment={"TMPDIR": UML_TMPFS} if sctp else None,
            )
        except docker.errors.APIError as e:
            if e.status_code == 409:  # a container of that name, not this lab's (ours are gone)
                raise TestbedError(f"a container named {state.ns(node)} exists and does not belong to "
                                   f"lab {state.lab}: remove or rename it, or use another --lab") from e
            raise
        cid = created["Id"]
        api.start(cid)
        info = api.inspect_container(cid)
        pid = int(info["State"]["Pid"])
        if pid <= 0:
            raise TestbedError(f"container {state.ns(node)} ({image}) exited at once")
        return cid, pid, str(info["Image"])

    def _check_images(self, topo: Topology, state: LabState, kernel_nodes: frozenset[str]) -> None:
        """Each node's image holds what its role runs (and a DNS node's named does SIG(0),
        a kernel node's image boots UML). An image is immutable: a check it passed is
        remembered by image id and script."""
        def one(rec: dict[str, str]) -> tuple[dict[str, str], str, Path]:
            uml_init = (rec.get("uml_init") or images.IMAGE_UML_INIT) if rec["node"] in kernel_nodes else None
            script = check_script(topo.nodes[rec["node"]].role, rec["python"], topo.mobile.agent, uml_init)
            mark = CHECKED / hashlib.sha256(f"{rec['image_id']}\0{script}".encode()).hexdigest()[:32]
            if mark.exists():
                return rec, "", mark
            return rec, self.runtime(state, rec["node"]).run(["sh", "-c", script], check=False,
                                                             timeout=20).stdout, mark

        with ThreadPoolExecutor(PARALLEL) as pool:
            results = list(pool.map(one, state.containers))
        for rec, output, mark in results:
            check_output(rec["node"], topo.nodes[rec["node"]].role, rec["image"], output,
                         state.topology_file)
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.touch()

    def _remove_orphans(self, eng: engine.Engine, lab: str, progress: Progress) -> None:
        """Containers of this lab name and run root with no state (their run dir is gone, e.g.
        after a reboot emptied /run): left by a crash, never by a running lab."""
        gone = self._remove_labelled(eng, lab)
        if gone:
            progress(f"removed leftover containers {', '.join(gone)}")

    # ------------------------------------------------------------------ use
    @staticmethod
    def _record(state: LabState, node: str) -> dict[str, str]:
        rec = next((r for r in state.containers if r["node"] == node), None)
        if rec is None:
            raise TestbedError(f"lab {state.lab!r} has no container for {node!r}")
        return rec

    def runtime(self, state: LabState, node: str) -> ContainerNode:
        rec = self._record(state, node)
        key = (state.lab, node, rec["id"] or rec["name"])
        if key not in self._runtimes:
            self._runtimes[key] = ContainerNode(node, state.ns(node), key[2], _api_factory(state.engine),
                                                python=rec.get("python", ""))
        return self._runtimes[key]

    def kernel_host(self, state: LabState, node: str) -> KernelHost:
        """A kernel node's UML runs in its container: started with the engine's exec, over the
        image's root (its interpreter, package and init from the image's labels), its memory
        file on the container's exec-able tmpfs."""
        rec = self._record(state, node)
        root = NodeRoot(python=rec.get("python") or images.IMAGE_PYTHON,
                        package_root=Path(rec.get("pythonpath") or images.IMAGE_PYTHONPATH),
                        init_script=Path(rec.get("uml_init") or images.IMAGE_UML_INIT),
                        mem_parent=Path(UML_TMPFS), pid=int(rec["pid"]))
        return KernelHost(self.runtime(state, node), root)

    def terminal_argv(self, state: LabState, node: str, argv: list[str], tty: bool) -> list[str]:
        """A command on a node with the caller's terminal (``testbed exec``): ``docker exec``."""
        rt = self.runtime(state, node)
        return ["docker", "-H", state.engine, "exec", "-i", *(["-t"] if tty else []), rt.container,
                *rt.argv(argv)]

    def info(self, state: LabState) -> dict[str, Any]:
        """For ``testbed status``: the engine and each node's container and image."""
        eng = engine.at(state.engine) if state.engine else None
        try:
            desc = eng.describe() if eng else {"url": state.engine, "kind": "", "version": "not answering"}
        finally:
            if eng:
                eng.client.close()
        return {"engine": desc,
                "nodes": {r["node"]: {"container": r["id"], "image": r["image"]} for r in state.containers}}

    # ------------------------------------------------------------------ removal
    def teardown(self, state: LabState, progress: Progress) -> None:
        for key in [k for k in self._runtimes if k[0] == state.lab]:
            self._runtimes.pop(key).close()
        progress("removing containers")
        eng = engine.at(state.engine) if state.engine else None
        if eng is not None:
            try:
                self._remove_labelled(eng, state.lab)
            finally:
                eng.client.close()
        progress("removing namespaces")
        for ns in state.netns:
            netns.remove(ns)
        engine.stop_if_idle()

    def labs(self) -> set[str]:
        """Labs of this run root with a container on the running engine (none started)."""
        eng = engine.find()
        if eng is None:
            return set()
        try:
            found = eng.client.api.containers(all=True, filters={"label": f"testbed.run_root={run_root()}"})
        finally:
            eng.client.close()
        return {c["Labels"]["testbed.lab"] for c in found if (c.get("Labels") or {}).get("testbed.lab")}

    def sweep(self, lab: str) -> list[str]:
        gone: list[str] = []
        eng = engine.find()  # an engine that is not running holds no running container
        if eng is not None:
            try:
                gone += self._remove_labelled(eng, lab)
            finally:
                eng.client.close()
        for ns in netns.list_names():
            if ns.startswith(f"{lab}-") and lab_of_label(netns.label_of(ns)) == lab:
                netns.remove(ns)
                gone.append(ns)
        engine.stop_if_idle()
        return gone

    def _remove_labelled(self, eng: engine.Engine, lab: str) -> list[str]:
        """Remove (force) every container labelled with ``lab`` and this run root."""
        want = labels(lab)
        found = eng.client.api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in want.items()]})
        # the filter is exact per label; check again anyway: nothing unlabelled is ever removed
        mine = [c for c in found if all((c.get("Labels") or {}).get(k) == v for k, v in want.items())]

        def remove(c: dict[str, Any]) -> str:
            eng.client.api.remove_container(c["Id"], force=True, v=True)
            return (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")

        with ThreadPoolExecutor(PARALLEL) as pool:
            return list(pool.map(remove, mine))


def _api_factory(url: str) -> Callable[[float], Any]:
    def connect(timeout: float) -> Any:
        if not url:
            raise TestbedError("the lab's state names no Docker engine; run `testbed clean`")
        return engine.client(url, timeout=timeout).api

    return connect

