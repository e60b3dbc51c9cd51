"""The binding-driver protocol: the commands a binding process sends a transport's driver and
the replies it gets, as frozen dataclasses with one versioned wire schema.

On the wire every message is one JSON object carrying the protocol version ``v`` and the
command's ``op``; a reply also carries ``ok``::

    {"v": 1, "op": "add", "address": "198.51.100.10", "ifname": "mn-ar2"}
    <- {"v": 1, "ok": true, "op": "add", "address": "198.51.100.10", "t": 1700000000.5,
        "dt": 0.0004, "skipped": "", "acked": true, "ack_s": 0.012, "peer": "", "detail": {}}
    {"v": 1, "op": "primary", "address": "198.51.100.10"}            <- Done
    {"v": 1, "op": "delete", "address": "192.0.2.10"}                <- Done
    {"v": 1, "op": "status"}  <- {"v": 1, "ok": true, "op": "status", "state": "ESTABLISHED",
                                  "local": [...], "peer": [...], "primary": "...", ...}
    any of them               <- {"v": 1, "ok": false, "op": "add", "error": "..."}

A message of another version, with a field missing, unknown or of the wrong type is refused
with a ``ProtocolError`` whose one line names the field and the fix. Standard library only:
the drivers run inside guests' traffic clients.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

VERSION = 1

ActionOp = Literal["add", "primary", "delete"]


class ProtocolError(ValueError):
    """A message that is not this version of the protocol; the text is one line."""


# ----------------------------------------------------------------------------- commands
@dataclass(frozen=True)
class Add:
    """Put ``address`` into the connection (SCTP ASCONF ADD_IP; MPTCP MP_JOIN + ADD_ADDR).
    ``ifname``: the interface holding it, "" to let the driver find it."""

    OP: ClassVar[str] = "add"
    address: str
    ifname: str = ""


@dataclass(frozen=True)
class Primary:
    """Make ``address`` the one the connection's data goes over (SCTP SET_PRIMARY; MPTCP
    MP_PRIO: its subflow active, every other backup)."""

    OP: ClassVar[str] = "primary"
    address: str


@dataclass(frozen=True)
class Delete:
    """Take ``address`` out of the connection (SCTP ASCONF DELETE_IP; MPTCP REMOVE_ADDR)."""

    OP: ClassVar[str] = "delete"
    address: str


@dataclass(frozen=True)
class Status:
    """Ask for the connection's state; its answer is also the endpoint's readiness."""

    OP: ClassVar[str] = "status"


Command = Add | Primary | Delete | Status


# ----------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class Done:
    """What a driver did for an add, primary or delete: the binding process orders its next
    step on it, and the driver's log keeps it."""

    op: ActionOp
    address: str
    t: float  # the driver's wall clock when the call began
    dt: float | None = None  # how long the call took; None when nothing was called
    skipped: str = ""  # why nothing was called (a mode that leaves it to the kernel)
    acked: bool | None = None  # the peer acknowledged it (SCTP ASCONF-ACK); None: not awaited
    ack_s: float | None = None  # from the call to that acknowledgement
    peer: str = ""  # primary: the peer address this end now sends to, when the driver chose one
    detail: dict[str, Any] = field(default_factory=dict)  # the transport's own facts (JSON)


@dataclass(frozen=True)
class State:
    """The answer to ``Status``: the connection's addresses as the transport sees them."""

    OP: ClassVar[str] = "status"
    state: str  # the transport's word for it (SCTP "ESTABLISHED", MPTCP "connected")
    local: tuple[str, ...] = ()  # this end's addresses in the connection
    peer: tuple[str, ...] = ()
    primary: str = ""  # where data goes now, "" when the transport does not say
    families: tuple[int, ...] = ()  # address families the binding may add; () leaves it to it
    mode: str = ""  # the driver's mode (trash, auto_asconf, auto)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """A command the endpoint could not carry out, or did not understand."""

    op: str
    error: str


Reply = Done | State | Failed
Message = Command | Reply

COMMANDS: dict[str, type[Command]] = {c.OP: c for c in (Add, Primary, Delete, Status)}
REPLIES: dict[str, type[Done] | type[State]] = {"add": Done, "primary": Done, "delete": Done, "status": State}


# ----------------------------------------------------------------------------- wire
def encode(msg: Message) -> dict[str, Any]:
    """The wire form of ``msg`` (every field, tuples as lists)."""
    out: dict[str, Any] = {"v": VERSION}
    if isinstance(msg, Done | State | Failed):
        out["ok"] = not isinstance(msg, Failed)
    op = getattr(msg, "OP", None)
    if op is not None:
        out["op"] = op
    for f in fields(msg):
        value = getattr(msg, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


def decode_command(obj: object) -> Command:
    """The command ``obj`` (a parsed JSON line) carries; ProtocolError when it is none."""
    body = _envelope(obj, "command")
    if "ok" in body:
        raise ProtocolError("a reply where a command was expected (field \"ok\")")
    op = body.pop("op", None)
    cls = COMMANDS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"unknown op {op!r} (field \"op\": one of {', '.join(COMMANDS)})")
    return _build(cls, body, str(op))


def decode_reply(obj: object) -> Reply:
    """The reply ``obj`` (a parsed JSON line) carries; ProtocolError when it is none."""
    body = _envelope(obj, "reply")
    ok = body.pop("ok", None)
    if not isinstance(ok, bool):
        raise ProtocolError(f"field \"ok\": expected true or false, got {ok!r}")
    if not ok:
        return _build(Failed, body, "reply")
    op = body.get("op")
    cls = REPLIES.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"reply to unknown op {op!r} (field \"op\": one of {', '.join(REPLIES)})")
    if cls is State:
        body.pop("op")
    return _build(cls, body, str(op))


def _envelope(obj: object, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object as a {what}, got {type(obj).__name__}")
    body = dict(obj)
    v = body.pop("v", None)
    if v is None:
        raise ProtocolError(f"no protocol version (field \"v\"; this end speaks {VERSION})")
    if v != VERSION:
        raise ProtocolError(f"protocol version {v!r} (field \"v\"), this end speaks {VERSION}: "
                            "run the same testbed version at both ends")
    return body


_HINTS: dict[type, dict[str, Any]] = {}


def _build(cls: type, body: dict[str, Any], where: str) -> Any:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(body) - set(names))
    if unknown:
        raise ProtocolError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(names) or 'none'})")
    try:
        values = {k: _check(f"{where}.{k}", hints[k], v) for k, v in body.items()}
        return cls(**values)
    except TypeError as e:  # a required field absent
        missing = [f.name for f in fields(cls) if f.name not in body]
        raise ProtocolError(f"{where}: missing field {missing[0]!r}" if missing else f"{where}: {e}") from e


def _check(name: str, hint: Any, value: Any) -> Any:
    """``value`` as a field of type ``hint`` (lists become tuples); ProtocolError when not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check(name, inner, value)
    if origin is Literal:
        if value in args:
            return value
        raise ProtocolError(f"{name}: {value!r} is none of {', '.join(map(repr, args))}")
    if origin is tuple:
        if not isinstance(value, list):
            raise ProtocolError(f"{name}: expected a list, got {value!r}")
        return tuple(_check(f"{name}[{i}]", args[0], x) for i, x in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(f"{name}: expected an object, got {value!r}")
        return dict(value)
    ok = (isinstance(value, bool) if hint is bool else
          isinstance(value, int | float) and not isinstance(value, bool) if hint is float else
          isinstance(value, int) and not isinstance(value, bool) if hint is int else
          isinstance(value, hint))
    if not ok:
        raise ProtocolError(f"{name}: expected {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value
