"""Whether a mobile node's binding updates are done: its agent's state matches its attachments
and its binding process has acted on every event up to that state.

The lab asks from outside (``MobileNode.wait_settled``); a deployed MN is asked on the host,
``python -m testbed.mobility.settle --state S --socket B --up IF… --down IF… --timeout T``,
which waits until it is so (or ``T`` passes) and prints ``{"done": bool, "seconds": …}``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from testbed.host.poll import poll_until


def settled(state: dict[str, Any], up: Iterable[str], down: Iterable[str], seen: int | None) -> bool:
    """``state``: the agent's (``interfaces``, ``seq``); ``up``: the interfaces attached, each up
    with its networks configured; ``down``: every other access interface, none up; ``seen``: the
    last event the binding process acted on (None: it did not answer)."""
    ifaces = state.get("interfaces", {})
    if any(ifaces.get(i, {}).get("link") == "up" for i in down):
        return False
    for i in up:
        nets = ifaces.get(i, {}).get("networks") or [{}]  # none yet: not configured
        if ifaces.get(i, {}).get("link") != "up" or not all(n.get("configured") for n in nets):
            return False
    return isinstance(seen, int) and seen >= int(state.get("seq", 0))


def wait(read_state: Callable[[], dict[str, Any] | None], read_seen: Callable[[], int | None],
         up: Iterable[str], down: Iterable[str], timeout: float) -> bool:
    """Until ``settled`` (polled: neither file nor socket notifies), False once ``timeout`` passed."""
    up, down = list(up), list(down)

    def done() -> bool:
        st = read_state()
        return st is not None and settled(st, up, down, read_seen())

    return bool(poll_until(done, timeout, interval=0.02, backoff=1.5, max_interval=0.2))


def read_state(path: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):  # being replaced (it is rewritten atomically)
        return None


def read_seen(socket: str | Path) -> int | None:
    from testbed.host import jsonlines
    from testbed.mobility.protocol import ProtocolError, State, Status, decode_reply, encode

    try:
        reply = decode_reply(jsonlines.request(str(socket), encode(Status()), 2.0))
    except (OSError, ProtocolError, ValueError):
        return None
    seen = reply.detail.get("seen") if isinstance(reply, State) else None
    return seen if isinstance(seen, int) else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testbed.mobility.settle", description=__doc__.splitlines()[0])
    p.add_argument("--state", required=True, type=Path, help="the agent's state file")
    p.add_argument("--socket", required=True, type=Path, help="the binding process's status socket")
    p.add_argument("--up", default="", help="the attached access interfaces, comma-separated")
    p.add_argument("--down", default="", help="the other access interfaces")
    p.add_argument("--timeout", type=float, required=True)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    done = wait(lambda: read_state(a.state), lambda: read_seen(a.socket), [i for i in a.up.split(",") if i],
                [i for i in a.down.split(",") if i], a.timeout)
    print(json.dumps({"done": done, "seconds": round(time.monotonic() - t0, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
