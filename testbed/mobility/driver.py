"""The binding-driver interface every transport implements, its one dispatcher, and the
client end of the channel (``protocol`` is the wire schema both ends share).

A transport's driver lives in the process that owns the connection (socket options act on
that socket), so it is reached through a channel: a Unix socket (``serve``/``unix_channel``)
or, in the same process, ``loopback``, which carries the same JSON text a socket would.

``python -m testbed.mobility.driver status SOCKET`` asks an endpoint for its status: the
reply's wire form on stdout and exit 0, or one line naming the socket and what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from testbed.host import jsonlines
from testbed.mobility import protocol
from testbed.mobility.protocol import Add, Command, Delete, Done, Failed, Primary, Reply, State, Status


@runtime_checkable
class BindingDriver(Protocol):
    """Binding updates on one connection, in the transport's own terms. A call the transport
    refuses raises OSError (TimeoutError is one) or ValueError, which the dispatcher answers
    as ``Failed``; any other exception is a bug and propagates."""

    def add(self, address: str, ifname: str = "") -> Done: ...

    def primary(self, address: str) -> Done: ...

    def delete(self, address: str) -> Done: ...

    def status(self) -> State: ...


def dispatch(driver: BindingDriver, cmd: Command) -> Reply:
    """``cmd`` carried out by ``driver``."""
    try:
        match cmd:
            case Add():
                return driver.add(cmd.address, cmd.ifname)
            case Primary():
                return driver.primary(cmd.address)
            case Delete():
                return driver.delete(cmd.address)
            case Status():
                return driver.status()
    except (OSError, ValueError) as e:
        return Failed(cmd.OP, f"{type(e).__name__}: {e}")
    raise TypeError(f"not a command: {cmd!r}")


def answer(driver: BindingDriver, request: object) -> dict[str, Any]:
    """One request's wire form to its reply's (never raises for bad input: a request that is
    not this protocol gets a ``Failed`` saying why)."""
    try:
        cmd = protocol.decode_command(request)
    except protocol.ProtocolError as e:
        op = request.get("op") if isinstance(request, dict) else None
        return protocol.encode(Failed(op if isinstance(op, str) else "", str(e)))
    return protocol.encode(dispatch(driver, cmd))


def serve(path: Path, driver: BindingDriver) -> jsonlines.CommandServer:
    """``driver`` answering on the Unix socket ``path`` (from a daemon thread)."""
    return jsonlines.CommandServer(path, lambda req: answer(driver, req))


# ----------------------------------------------------------------------------- client end
Channel = Callable[[dict[str, Any]], dict[str, Any]]
"""One request's wire form to the reply's; raises ``NoAnswer`` when none came."""


class DriverError(Exception):
    """The endpoint did not answer in this protocol; the text is one line naming it."""


class NoAnswer(DriverError):
    """Nothing came back: the socket is absent, refused, timed out or closed."""


def unix_channel(path: str | Path, timeout: float = 10.0) -> Channel:
    def send(msg: dict[str, Any]) -> dict[str, Any]:
        try:
            return jsonlines.request(path, msg, timeout)
        except jsonlines.RequestError as e:
            raise NoAnswer(str(e)) from e
        except ValueError as e:  # not JSON
            raise DriverError(f"{path}: reply is not JSON: {e}") from e

    return send


def loopback(driver: BindingDriver) -> Channel:
    """``driver`` reached in memory, through the JSON text a socket would carry."""
    return lambda msg: json.loads(json.dumps(answer(driver, json.loads(json.dumps(msg)))))


def request(channel: Channel, cmd: Command, name: str) -> Reply:
    """``cmd``'s reply over ``channel``; DriverError (naming ``name``) when the endpoint
    answered in another protocol version, with a reply to another op, or not at all."""
    try:
        reply = protocol.decode_reply(channel(protocol.encode(cmd)))
    except NoAnswer as e:
        raise NoAnswer(f"binding driver {name}: no answer ({e})") from e
    except protocol.ProtocolError as e:
        raise DriverError(f"binding driver {name}: {e}") from e
    answered = reply.OP if isinstance(reply, State) else reply.op
    if answered != cmd.OP:
        raise DriverError(f"binding driver {name}: answered {answered!r} to {cmd.OP!r}")
    return reply


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m testbed.mobility.driver",
                                description="ask a binding-driver endpoint for its status")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("status", help="exit 0 once the endpoint answers a status request")
    s.add_argument("socket")
    s.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args(argv)
    try:
        reply = request(unix_channel(a.socket, a.timeout), Status(), f"at {a.socket}")
    except DriverError as e:
        print(e, file=sys.stderr)
        return 1
    sys.stdout.write(jsonlines.dumps(protocol.encode(reply)))
    return 0 if isinstance(reply, State) else 1


if __name__ == "__main__":
    raise SystemExit(main())
