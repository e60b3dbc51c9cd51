"""The mobile node's radio on a deployed host: a move is its access interfaces going up and down.

In the lab a move changes carrier from outside the MN (``lab.mobile``); on a real host the MN
itself takes an interface down or up, as a radio leaving or joining a network would. The order
of a move is the same for both (``choreograph``): make-before-break arrives, dwells ``overlap``
seconds on both networks, then leaves; break-before-make leaves, dwells ``gap`` seconds on none,
then arrives. Arriving waits on the mobility agent's ``wait-configured`` (an event, no polling).

``python -m testbed.mobility.radio move --attach IF [--detach IF …] --mode … --agent SOCKET``
runs one move on the MN and prints its phase times as JSON (the ``move`` playbook runs it; with
``--settle-*`` a make-before-break move keeps the old links until the binding process has acted
on the new address, as a lab's move does);
``address --ifname IF --network NET …`` prints the MN's addresses on IF inside those networks,
comma-separated (a run's traffic client starts from them).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import time
from collections.abc import Callable, Sequence

from testbed.host import jsonlines

CONFIGURE_TIMEOUT = 20.0


def choreograph(mode: str, arrive: Callable[[], None], leave: Callable[[], None],
                dwell: Callable[[float], None], overlap: float = 0.0, gap: float = 0.0) -> dict[str, float]:
    """Arrive and leave in the mode's order, with its dwell between; phase times from the start
    (``configured``: arrived and configured; ``detached``: left)."""
    t0 = time.monotonic()
    times: dict[str, float] = {}

    def arrived() -> None:
        arrive()
        times["configured"] = time.monotonic() - t0

    def left() -> None:
        leave()
        times["detached"] = time.monotonic() - t0

    first, then, pause = (arrived, left, overlap) if mode == "make-before-break" else (left, arrived, gap)
    first()
    if pause > 0:
        dwell(pause)
    then()
    return times


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def attach(ifname: str, agent: str, timeout: float = CONFIGURE_TIMEOUT,
           families: Sequence[int] = (4, 6)) -> None:
    """Up, then until the agent reports an address of each of its network's ``families`` on
    it (an IPv4 lease, a usable IPv6 address)."""
    _ip("link", "set", "dev", ifname, "up")
    r = jsonlines.request(agent, {"cmd": "wait-configured", "ifname": ifname, "families": list(families),
                                  "timeout": timeout}, timeout + 5)
    if not r.get("ok"):
        raise RuntimeError(f"{ifname} not configured within {timeout:g} s: {r.get('error', r)}")


def detach(ifname: str) -> None:
    """Down (the DHCP client drops its lease), and SLAAC's addresses flushed."""
    _ip("link", "set", "dev", ifname, "down")
    _ip("addr", "flush", "dev", ifname, "scope", "global")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.mobility.radio", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("move")
    m.add_argument("--attach", required=True, help="the access interface to bring up")
    m.add_argument("--detach", action="append", default=[], help="an access interface to take down")
    m.add_argument("--mode", choices=["make-before-break", "break-before-make"], default="make-before-break")
    m.add_argument("--overlap", type=float, default=0.0)
    m.add_argument("--gap", type=float, default=0.0)
    m.add_argument("--agent", required=True, help="the mobility agent's socket")
    m.add_argument("--timeout", type=float, default=CONFIGURE_TIMEOUT)
    m.add_argument("--families", default="4,6", help="the families the new network gives, e.g. 4,6")
    m.add_argument("--settle-state", help="make-before-break: the agent's state file; the old links stay "
                   "until the binding process has acted on the new address (testbed.mobility.settle)")
    m.add_argument("--settle-socket", help="the binding process's status socket")
    m.add_argument("--settle-timeout", type=float, default=0.0)
    ad = sub.add_parser("address")
    ad.add_argument("--ifname", required=True)
    ad.add_argument("--network", action="append", required=True, help="one per family, in order")
    a = p.parse_args(argv)
    if a.cmd == "address":
        found = addresses(a.ifname, a.network)
        print(",".join(found))
        return 0 if found else 1
    up = _is_up(a.attach)
    fams = [int(f) for f in a.families.split(",") if f]

    def arrive() -> None:
        if not up:
            attach(a.attach, a.agent, a.timeout, fams)
        old = [i for i in a.detach if _is_up(i)]
        if a.mode == "make-before-break" and old and a.settle_state and a.settle_socket:
            # the old link stays until the binding updates made on the new address are answered:
            # they may travel on it, and one lost there is retransmitted there (as in the lab)
            from testbed.mobility import settle

            settle.wait(lambda: settle.read_state(a.settle_state), lambda: settle.read_seen(a.settle_socket),
                        [a.attach, *old], [i for i in a.detach if i not in old], a.settle_timeout)

    times = choreograph(a.mode, arrive, lambda: [detach(i) for i in a.detach if _is_up(i)], time.sleep,
                        a.overlap, a.gap)
    print(json.dumps({"changed": not up or any(True for _ in a.detach), **times}))
    return 0


def addresses(ifname: str, networks: Sequence[str]) -> list[str]:
    """The first global address on ``ifname`` inside each of ``networks``, in their order."""
    cp = subprocess.run(["ip", "-j", "addr", "show", "dev", ifname], capture_output=True, text=True,
                        check=True, timeout=10)
    held = [ipaddress.ip_address(a["local"]) for i in json.loads(cp.stdout or "[]")
            for a in i.get("addr_info", []) if a.get("scope") == "global" and not a.get("tentative")]
    out = []
    for net in map(ipaddress.ip_network, networks):
        out += [str(ip) for ip in held if ip.version == net.version and ip in net][:1]
    return out


def _is_up(ifname: str) -> bool:
    cp = subprocess.run(["ip", "-j", "link", "show", "dev", ifname], capture_output=True, text=True,
                        check=True, timeout=10)
    return "UP" in (json.loads(cp.stdout or "[{}]")[0].get("flags") or [])


if __name__ == "__main__":
    raise SystemExit(main())
