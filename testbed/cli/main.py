"""The ``testbed`` command. Every sub-command rebuilds the lab from its state file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from testbed import warning_filters
from testbed.errors import TestbedError
from testbed.state import DEFAULT_LAB

console = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 160)
out_console = out


@contextmanager
def progress(title: str) -> Iterator:
    """A spinner naming the current step (anything here may take over a second)."""
    with console.status(title) as status:

        def step(msg: str) -> None:
            status.update(f"{title}: {msg}")
            if not console.is_terminal:
                console.print(f"[dim]{title}: {msg}[/dim]")

        yield step


def print_json(data: object) -> None:
    """Machine output: JSON on stdout alone (colours on a terminal only), whatever goes to
    stderr."""
    if sys.stdout.isatty():
        out.print_json(data=data)
    else:
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        sys.stdout.flush()


def cmd_up(a: argparse.Namespace) -> int:
    from testbed.lab import Lab

    if a.machine == "uml":
        return _machine_up(a)
    with progress(f"lab {a.lab} up") as step:
        lab = Lab.up(a.topology, a.lab, step, backend=a.backend, bare=a.bare)
    for w in lab.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    console.print(f"[green]lab {a.lab} is up[/green] ({lab.topo.name}); run dir {lab.state.dir}")
    return 0


def cmd_down(a: argparse.Namespace) -> int:
    from testbed.lab import Lab

    lab = Lab.open(a.lab)
    with progress(f"lab {a.lab} down") as step:
        lab.down(step)
    console.print(f"lab {a.lab} is down")
    return 0


def cmd_clean(a: argparse.Namespace) -> int:
    from testbed.lab import clean

    with progress("clean") as step:
        removed = clean(step, force=a.all)
    console.print(f"removed: {', '.join(removed) or 'nothing'}")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    from testbed.status import collect, render

    st = collect(a.lab)
    if a.json:
        print_json(st)
    else:
        render(st, out)
    return 0


def cmd_exec(a: argparse.Namespace) -> int:
    from testbed.lab import Lab

    argv = a.argv[1:] if a.argv and a.argv[0] == "--" else a.argv
    if not argv:
        raise TestbedError("exec: give a command after --, e.g. `testbed exec mn -- ip addr`")
    lab = Lab.open(a.lab)
    rt = lab.runtime(a.node)
    if not rt.own_kernel:  # the host kernel: hand the terminal over, interactive commands work
        full = lab.backend.terminal_argv(lab.state, a.node, argv, sys.stdin.isatty())
        os.execvp(full[0], full)
    cp = rt.run(argv, check=False, timeout=a.timeout)
    sys.stdout.write(cp.stdout)
    sys.stderr.write(cp.stderr)
    return cp.returncode


def cmd_move(a: argparse.Namespace) -> int:
    from testbed.lab import Lab

    lab = Lab.open(a.lab)
    lab.mobile_node(a.node)  # a clear error for a node that is not a mobile node
    with progress(f"move {a.node} to {a.to}") as step:
        times = lab.move(a.to, a.mode, overlap=a.overlap, gap=a.gap, progress=step, mn=a.node)
    st = lab.access_state(a.to, a.node)
    console.print(
        f"{a.node} on {a.to} ({a.mode}): IPv4 {', '.join(st.ipv4)}; IPv6 {', '.join(st.ipv6)}; "
        + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items())
    )
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    import time as _time
    from pathlib import Path

    from testbed.conformance.cli import render
    from testbed.scenario import model, runner

    sc = model.load(a.scenario)
    if a.backend:  # for a lab the run brings up itself
        os.environ["TESTBED_BACKEND"] = a.backend
    out = Path(a.out or f"out/{sc.name}-{_time.strftime('%Y%m%d-%H%M%S')}")
    if a.inventory:
        from testbed.deploy import clock
        from testbed.deploy.target import HostTarget

        inv = Path(a.inventory)
        with progress(f"{sc.name} on deployed hosts") as step:
            target = HostTarget(inv, step, a.max_clock_error if a.max_clock_error is not None
                                else clock.MAX_ERROR)
            result = runner.Runner(sc, target, out, step, title=f"{sc.name} on the hosts of {inv.name}").run()
        render(result.verdict, out_console)
        console.print(f"results: {result.out}; report: {result.out / 'report.html'}")
        return 0 if result.passed else 1
    if a.machine == "uml":
        return _machine_run(a, sc, out)
    with progress(f"scenario {sc.name}") as step:
        result = runner.run(sc, out, a.lab, step)
    render(result.verdict, out_console)
    report = result.out / "report.html"
    console.print(f"results: {result.out}" + (f"; report: {report}" if report.exists() else ""))
    return 0 if result.passed else 1


def _forward(machine, args) -> int:
    return machine.forward(args, write=lambda t: (sys.stdout.write(t), sys.stdout.flush()),
                           write_err=lambda t: (sys.stderr.write(t), sys.stderr.flush())).returncode


def _machine_up(a: argparse.Namespace) -> int:
    from testbed.machine import commands
    from testbed.model import loader

    path = loader.resolve(a.topology)
    with progress(f"lab {a.lab} up in a UML machine") as step:
        m = commands.boot(a.lab, path, step)
    rc = 1
    try:
        rc = _forward(m, ["up", commands.visible_path(m, path)])
    finally:
        commands.finish(m, rc == 0)
    return rc


def _machine_run(a: argparse.Namespace, sc, out) -> int:
    from testbed.machine import commands
    from testbed.model import loader
    from testbed.scenario import model

    machine = commands.machine_of(a.lab)
    booted = machine is None
    if booted:
        with progress(f"lab {a.lab}: booting a UML machine") as step:
            machine = commands.boot(a.lab, loader.resolve(sc.topology), step, sc.kernel_features())
    rc = 1
    try:
        machine.share(out)
        rc = _forward(machine, ["run", commands.visible_path(machine, model.resolve(a.scenario)),
                                "--out", str(out.resolve())])
    finally:
        if booted:  # the lab the run brought up stays up, as on the host
            commands.finish(machine, up_inside(machine))
    return rc


def up_inside(machine) -> bool:
    import io

    buf = io.StringIO()
    return machine.forward(["status", "--json"], write=buf.write, write_err=buf.write).returncode == 0


def cmd_images(a: argparse.Namespace) -> int:
    from testbed.backends import engine, images
    from testbed.model import loader

    base = a.base
    if a.topology:
        topo = loader.load(a.topology)
        base = base or topo.images.base
    with progress("images") as step, engine.using() as eng:
        step(f"engine: {eng.kind} ({eng.url})")
        build_client = engine.client(eng.url, timeout=engine.BUILD_TIMEOUT)
        try:
            built = images.ensure(eng.client, [*images.ROLE_DIRS, images.BARE_HOST], base, step,
                                  force=a.force, build_client=build_client)
        finally:
            build_client.close()
        pruned = images.prune(eng.client, [i.ref for i in built.values()])
    for img in built.values():
        out.print(f"{images.image_dir(img.role):14} {img.ref}")
    if pruned:
        console.print(f"removed older images: {', '.join(pruned)}")
    engine.stop_if_idle()
    return 0


def cmd_inventory(a: argparse.Namespace) -> int:
    """An inventory for the topology's nodes; a bare lab of it that is up gives the hosts'
    management addresses and SSH key."""
    from testbed.deploy import inventory
    from testbed.lab import bare
    from testbed.model import loader
    from testbed.state import LabState

    topo = loader.load(a.topology)
    found = None
    if LabState.exists(a.lab):
        st = LabState.load(a.lab)
        if bare.info(st) and st.topology.get("name") == topo.name:
            found = bare.info(st)
    inv = inventory.build(topo, found, source=str(loader.resolve(a.topology)))
    if a.output:
        inventory.write(inv, Path(a.output))
        console.print(f"inventory for {topo.name} ({len(topo.nodes)} hosts"
                      f"{', bare lab ' + a.lab if found else ''}): {a.output}")
    else:
        import yaml

        sys.stdout.write(yaml.safe_dump(inv, sort_keys=False))
    return 0


def cmd_deploy(a: argparse.Namespace) -> int:
    import time as _time

    from testbed.deploy.deploy import deploy

    out = Path(a.out or f"out/deploy-{_time.strftime('%Y%m%d-%H%M%S')}")

    def line(msg: str) -> None:
        console.print(f"[dim]{msg}[/dim]", highlight=False, soft_wrap=True)

    result = deploy(Path(a.inventory), out, a.limit, line)
    for host, h in sorted(result.hosts.items()):
        colour = "green" if h.good else "red"
        console.print(f"[{colour}]{host:8}[/{colour}] ok={h.ok} changed={h.changed} failed={h.failed} "
                      f"unreachable={h.unreachable}" + (f"  {h.error}" if h.error else ""),
                      highlight=False, soft_wrap=True)
    console.print(f"deploy {'done' if result.ok else 'FAILED'} in {result.seconds:.1f} s; summary "
                  f"{out / 'summary.json'}; runner artifacts {result.artifacts}")
    return 0 if result.ok else 1


def _mobile_lab(a: argparse.Namespace):
    from testbed.lab import Lab

    lab = Lab.open(a.lab)
    lab.mobile_node(a.node)  # a clear error for a node that is not a mobile node
    return lab


def cmd_mobility(a: argparse.Namespace) -> int:
    lab = _mobile_lab(a)
    if a.action == "state":
        # the pollable state (§3): the agent rewrites this file atomically on every event
        print_json(json.loads((lab.wiring.for_mobile(a.node).agent_dir / "state.json").read_text()))
        return 0
    if a.action == "events":
        # the agent's events log: the same JSON lines it streams, readable from the host even
        # when the MN is a VM (whose Unix socket the host cannot reach)
        import time as _time

        from testbed.host import jsonlines

        tail = jsonlines.Tail(lab.wiring.for_mobile(a.node).agent_dir / "events.jsonl")
        tail.offset = 0  # the whole history first
        try:
            while True:
                for e in tail.read():
                    if a.since is None or e.get("seq", 0) > a.since:
                        print(json.dumps(e), flush=True)
                if not a.follow:
                    return 0
                _time.sleep(0.2)  # tailing a file: no change notification worth the code here
        except (KeyboardInterrupt, BrokenPipeError):
            return 0
    if a.action == "set-metric":
        r = lab.mobile_node(a.node).agent_request({"cmd": "set-metric", "ifname": a.ifname,
                                                   "name": a.name, "value": a.value})
        if not r.get("ok"):
            raise TestbedError(f"set-metric: {r.get('error')}")
        return 0
    if a.action == "depart":
        results = lab.mobile_node(a.node).depart()
        for r in results:
            console.print(f"location {r['op']}: {r['rcode']} after {r['attempts']} attempt(s)")
        return 0 if results and all(r.get("ok") for r in results) else 1
    raise AssertionError(a.action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    p.add_argument(
        "--lab",
        default=os.environ.get("TESTBED_LAB", DEFAULT_LAB),
        help="lab name; namespaces are <lab>-<node> (default: %(default)s)",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    backend_help = "mininet (named namespaces) or docker (containers); default: the topology's"

    s = sub.add_parser("up", help="build the lab and start its daemons")
    s.add_argument("topology", nargs="?", help="topology name in topologies/ or a YAML path")
    s.add_argument("--machine", choices=["host", "uml"], default="host",
                   help="uml: run the whole lab inside one User-Mode-Linux kernel (its SCTP, netem)")
    s.add_argument("--backend", choices=["mininet", "docker"], help=backend_help)
    s.add_argument("--bare", action="store_true",
                   help="hosts for `testbed deploy`: containers of the bare host image, sshd and a "
                        "management network, nothing configured (docker backend)")
    s.set_defaults(fn=cmd_up)

    s = sub.add_parser("down", help="stop the lab and remove everything it created")
    s.set_defaults(fn=cmd_down)

    s = sub.add_parser("clean", help="remove what crashed labs left behind (and only that)")
    s.add_argument("--all", action="store_true", help="also remove labs that are up")
    s.set_defaults(fn=cmd_clean)

    s = sub.add_parser("status", help="nodes, interfaces, addresses, services and their health")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_status)

    s = sub.add_parser("exec", help="run a command on a node: testbed exec NODE -- CMD...")
    s.add_argument("node")
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)
    s.set_defaults(fn=cmd_exec)

    s = sub.add_parser("move", help="attach the mobile node to another access router")
    s.add_argument("node")
    s.add_argument("--to", required=True, help="access router to move to")
    s.add_argument("--mode", choices=["make-before-break", "break-before-make"], default="make-before-break")
    s.add_argument("--overlap", type=float, default=0.0, help="seconds on both networks")
    s.add_argument("--gap", type=float, default=0.0, help="seconds on no network")
    s.set_defaults(fn=cmd_move)

    s = sub.add_parser("run", help="run a scenario (default: one TraSH handover) and judge it")
    s.add_argument("scenario", nargs="?", help="scenario name in topologies/scenarios/ or a path")
    s.add_argument("--out", help="output directory (default: out/<scenario>-<time>)")
    s.add_argument("--machine", choices=["host", "uml"], default="host",
                   help="uml: run the lab inside one User-Mode-Linux kernel (when it is not up yet)")
    s.add_argument("--backend", choices=["mininet", "docker"], help=backend_help)
    s.add_argument("--inventory", help="run on the hosts of this inventory (deployed with `testbed "
                   "deploy`) over SSH instead of on a lab")
    s.add_argument("--max-clock-error", type=float, default=None, metavar="S",
                   help="with --inventory: refuse a host whose clock offset is known only to ±S "
                   "seconds (default 0.02)")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("inventory", help="write an Ansible inventory for a topology's nodes")
    s.add_argument("topology", help="topology name in topologies/ or a YAML path")
    s.add_argument("-o", "--output", help="file to write (default: stdout)")
    s.set_defaults(fn=cmd_inventory)

    s = sub.add_parser("deploy", help="deploy the architecture to an inventory's hosts (Ansible)")
    s.add_argument("inventory", help="an inventory `testbed inventory` wrote (then edited)")
    s.add_argument("--limit", help="only these hosts or groups (Ansible's --limit)")
    s.add_argument("--out", help="results: summary.json, ansible/ (default: out/deploy-<time>)")
    s.set_defaults(fn=cmd_deploy)

    s = sub.add_parser("images", help="the docker backend's images: build them (cached by content)")
    m = s.add_subparsers(dest="action", required=True)
    x = m.add_parser("build", help="build every role's image whose inputs changed")
    x.add_argument("--force", action="store_true",
                   help="rebuild everything, the base too, without the layer cache")
    x.add_argument("--base", help="build FROM this image (in the engine already), e.g. debian:bookworm")
    x.add_argument("--topology", help="take images.base from this topology")
    s.set_defaults(fn=cmd_images)

    sub.add_parser("check", help="judge captures against Appendix A (testbed check --help)",
                   add_help=False)

    from testbed.cli import compare, interop

    interop.add_parser(sub)
    compare.add_parser(sub)

    s = sub.add_parser("mobility", help="the mobility agent on the MN: state, events, departure")
    m = s.add_subparsers(dest="action", required=True)
    x = m.add_parser("state", help="the pollable state (per interface: link, networks, addresses)")
    x.add_argument("node")
    x = m.add_parser("events", help="the event stream as JSON lines (history, or --follow)")
    x.add_argument("node")
    x.add_argument("--follow", action="store_true")
    x.add_argument("--since", type=int, default=None, help="only events after this seq")
    x = m.add_parser("set-metric", help="set a link metric (stands in for signal strength)")
    x.add_argument("node")
    x.add_argument("ifname")
    x.add_argument("name")
    x.add_argument("value", type=float)
    x = m.add_parser("depart", help="announced departure: withdraw the MN's DNS records")
    x.add_argument("node")
    s.set_defaults(fn=cmd_mobility)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    warning_filters.install()  # before any sub-command imports a dependency that warns
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:  # the checker needs no lab: its own parser, its own exit codes
        from testbed.conformance.cli import main as check_main

        return check_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        forwarded = _in_machine(args, argv)
        if forwarded is not None:
            return forwarded
        return args.fn(args)
    except TestbedError as e:
        console.print(f"[red]testbed {args.cmd}: {e}[/red]", soft_wrap=True, highlight=False)
        return e.exit_code
    except KeyboardInterrupt:
        console.print(f"testbed {args.cmd}: interrupted; {_after_interrupt(args)}")
        return 130


def _after_interrupt(args: argparse.Namespace) -> str:
    """What an interrupted command left: the user's next step depends on it."""
    from testbed.state import LabState

    if args.cmd == "up":
        return "the lab removed what it had built"
    if args.cmd == "run":
        where = (f"lab {args.lab} stays up (`testbed down` removes it)" if LabState.exists(args.lab)
                 else f"lab {args.lab}, which this run brought up, removed")
        return f"capture and traffic stopped; {where}"
    return f"lab {args.lab} as it was at the interruption"


# clean removes machines from the host; check, inventory and deploy need no lab; interop and
# compare run labs of their own
ON_THE_HOST = ("clean", "check", "inventory", "deploy", "interop", "compare")


def _in_machine(args: argparse.Namespace, argv: list[str]) -> int | None:
    """A command on a lab that runs in a UML machine is run there (``down`` then removes the
    machine); None when the lab runs on this host."""
    from testbed.machine import commands

    if args.cmd in ON_THE_HOST or getattr(args, "inventory", None):  # run --inventory: no lab
        return None
    machine = commands.machine_of(args.lab)
    if machine is None:
        return None
    if args.cmd == "up":
        raise TestbedError(f"lab {args.lab!r} is already up (in a UML machine); `testbed down` first")
    if args.cmd == "down":
        return commands.down(machine, lambda a: _forward(machine, a))
    rest = _drop_options(argv, ("--lab", "--machine"))
    if args.cmd == "run":  # paths as the machine sees them; results written through a share
        from testbed.scenario import model

        out = Path(args.out or f"out/{model.load(args.scenario).name}").resolve()
        machine.share(out)
        rest = [x for x in _drop_options(rest, ("--out",)) if x != args.scenario]
        rest += [commands.visible_path(machine, model.resolve(args.scenario)), "--out", str(out)]
    return _forward(machine, rest)


def _drop_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the options named (``--x V`` and ``--x=V`` forms)."""
    out: list[str] = []
    skip = False
    for x in argv:
        if skip:
            skip = False
        elif x in names:
            skip = True
        elif not x.startswith(tuple(f"{n}=" for n in names)):
            out.append(x)
    return out


if __name__ == "__main__":
    sys.exit(main())
