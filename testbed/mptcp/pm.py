"""The MPTCP path manager over generic netlink (family ``mptcp_pm``, include/uapi/linux/mptcp_pm.h).

The in-kernel path manager takes endpoints and limits; the userspace one (``net.mptcp.pm_type=1``)
acts per connection, named by its token: ANNOUNCE (an ADD_ADDR), REMOVE (a REMOVE_ADDR),
SUBFLOW_CREATE (an MP_JOIN) and SET_FLAGS (an MP_PRIO); and the kernel reports connections and
subflows on the ``mptcp_pm_events`` multicast group. pyroute2 0.9's ``MPTCP`` socket has the
endpoint and limit commands, but its ``mptcp_msg`` maps only the first three attributes (no
token, local id or remote address), types the interface index as text (an endpoint bound to
an interface fails with a TypeError) and has no event message: ``PmMessage`` and
``EventMessage`` below are the nla maps those commands and events need, on pyroute2's
generic-netlink socket, and serve the endpoint commands too.

Every call here runs in the caller's network namespace: a node's process drives its own path
manager.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, genlmsg, nla
from pyroute2.netlink.generic import GenericNetlinkSocket

FAMILY = "mptcp_pm"
EVENTS_GROUP = "mptcp_pm_events"
VERSION = 1
NLA_F_NESTED = 0x8000
# commands (enum in mptcp_pm.h)
CMD_ADD_ADDR, CMD_DEL_ADDR, CMD_SET_LIMITS, CMD_SET_FLAGS = 1, 2, 5, 7
CMD_ANNOUNCE, CMD_REMOVE, CMD_SUBFLOW_CREATE, CMD_SUBFLOW_DESTROY = 8, 9, 10, 11
# address flags
FLAG_SIGNAL, FLAG_SUBFLOW, FLAG_BACKUP = 1, 2, 4
# events (enum mptcp_event_type)
EVENT_NAMES = {1: "created", 2: "established", 3: "closed", 6: "announced", 7: "removed",
               10: "sub_established", 11: "sub_closed", 13: "sub_priority",
               15: "listener_created", 16: "listener_closed"}


def _nla_map(prefix: str, fields: str) -> tuple[tuple[str, str], ...]:
    """pyroute2's ``nla_map`` from "NAME:type" words in the enum's order (from 0, UNSPEC)."""
    return tuple((f"{prefix}{name}", kind) for name, kind in (w.split(":") for w in fields.split()))


class _Addr(nla):
    """``MPTCP_PM_ADDR_ATTR_*``: one address with its id, port (host order, as the kernel reads
    it), flags and interface."""

    prefix = "MPTCP_PM_ADDR_ATTR_"
    nla_map = _nla_map(prefix, "UNSPEC:none FAMILY:uint16 ID:uint8 ADDR4:ip4addr ADDR6:ip6addr "
                               "PORT:uint16 FLAGS:uint32 IF_IDX:int32")


class PmMessage(genlmsg):
    """``MPTCP_PM_ATTR_*``: a command's attributes, the per-connection ones included."""

    prefix = "MPTCP_PM_ATTR_"
    nla_map = _nla_map(prefix, "UNSPEC:none ADDR:addr RCV_ADD_ADDRS:uint32 SUBFLOWS:uint32 TOKEN:uint32 "
                               "LOC_ID:uint8 ADDR_REMOTE:addr")

    class addr(_Addr):  # noqa: N801 - pyroute2 looks nested nla classes up by this name
        pass


class EventMessage(genlmsg):
    """``MPTCP_ATTR_*``: what an event carries (ports in network order)."""

    prefix = "MPTCP_ATTR_"
    nla_map = _nla_map(prefix, "UNSPEC:none TOKEN:uint32 FAMILY:uint16 LOC_ID:uint8 REM_ID:uint8 "
                               "SADDR4:ip4addr SADDR6:ip6addr DADDR4:ip4addr DADDR6:ip6addr SPORT:be16 "
                               "DPORT:be16 BACKUP:uint8 ERROR:uint8 FLAGS:uint16 TIMEOUT:uint32 "
                               "IF_IDX:int32 RESET_REASON:uint32 RESET_FLAGS:uint32 SERVER_SIDE:uint8")


@dataclass(frozen=True)
class PmEvent:
    kind: str  # EVENT_NAMES' values
    token: int
    local: str | None = None
    remote: str | None = None
    sport: int | None = None
    dport: int | None = None
    loc_id: int | None = None
    rem_id: int | None = None
    backup: bool = False
    error: int = 0


def address(ip: str, *, addr_id: int | None = None, port: int | None = None, flags: int | None = None,
            ifindex: int | None = None) -> dict:
    """A nested address attribute's value."""
    v6 = ipaddress.ip_address(ip).version == 6
    attrs: list[tuple[str, object]] = [
        ("MPTCP_PM_ADDR_ATTR_FAMILY", socket.AF_INET6 if v6 else socket.AF_INET),
        ("MPTCP_PM_ADDR_ATTR_ADDR6" if v6 else "MPTCP_PM_ADDR_ATTR_ADDR4", ip),
    ]
    for name, value in (("ID", addr_id), ("PORT", port), ("FLAGS", flags), ("IF_IDX", ifindex)):
        if value is not None:
            attrs.append((f"MPTCP_PM_ADDR_ATTR_{name}", value))
    return {"attrs": attrs}


class PathManager(GenericNetlinkSocket):
    """Commands to this namespace's MPTCP path manager (raise ``NetlinkError`` on refusal)."""

    def __init__(self) -> None:
        super().__init__()
        self.bind(FAMILY, PmMessage)

    def _do(self, cmd: int, attrs: list[tuple]) -> None:
        msg = PmMessage()
        msg["cmd"], msg["version"], msg["attrs"] = cmd, VERSION, attrs
        self.nlm_request(msg, msg_type=self.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)

    # -- the userspace path manager: per connection -------------------------------------------
    def subflow_create(self, token: int, local: str, local_id: int, remote: str, rport: int, *,
                       ifindex: int | None = None, backup: bool = False) -> None:
        """A new subflow from ``local`` (MP_JOIN), bound to ``ifindex`` so that it leaves by
        that interface whatever the routing table prefers."""
        self._do(CMD_SUBFLOW_CREATE, [
            ("MPTCP_PM_ATTR_TOKEN", token),
            ("MPTCP_PM_ATTR_ADDR", address(local, addr_id=local_id, ifindex=ifindex,
                                           flags=FLAG_BACKUP if backup else 0), NLA_F_NESTED),
            ("MPTCP_PM_ATTR_ADDR_REMOTE", address(remote, port=rport), NLA_F_NESTED)])

    def announce(self, token: int, local: str, local_id: int) -> None:
        """ADD_ADDR ``local`` with ``local_id`` to the connection's peer."""
        self._do(CMD_ANNOUNCE, [
            ("MPTCP_PM_ATTR_TOKEN", token),
            ("MPTCP_PM_ATTR_ADDR", address(local, addr_id=local_id, flags=FLAG_SIGNAL), NLA_F_NESTED)])

    def set_backup(self, token: int, local: str, remote: str, rport: int, backup: bool,
                   lport: int | None = None) -> None:
        """MP_PRIO on the subflow from ``local``(:``lport``) to ``remote``:``rport``. Give the
        local port: the kernel acts on the first subflow that matches, and an older subflow
        from the same address may still be closing."""
        flags = FLAG_BACKUP if backup else 0
        self._do(CMD_SET_FLAGS, [
            ("MPTCP_PM_ATTR_TOKEN", token),
            ("MPTCP_PM_ATTR_ADDR", address(local, port=lport, flags=flags), NLA_F_NESTED),
            ("MPTCP_PM_ATTR_ADDR_REMOTE", address(remote, port=rport), NLA_F_NESTED)])

    def remove(self, token: int, local_id: int) -> None:
        """REMOVE_ADDR ``local_id`` (0: the address the connection began on); the kernel
        closes the subflows using it."""
        self._do(CMD_REMOVE, [("MPTCP_PM_ATTR_TOKEN", token), ("MPTCP_PM_ATTR_LOC_ID", local_id)])

    # -- the in-kernel path manager: endpoints and limits --------------------------------------
    def endpoint_add(self, local: str, *, addr_id: int | None = None, ifindex: int | None = None,
                     flags: int = FLAG_SUBFLOW) -> None:
        addr = address(local, addr_id=addr_id, ifindex=ifindex, flags=flags)
        self._do(CMD_ADD_ADDR, [("MPTCP_PM_ATTR_ADDR", addr, NLA_F_NESTED)])

    def endpoint_del(self, local: str, addr_id: int = 0) -> None:
        """Remove the endpoint ``addr_id`` (0 with the address: the one connections began on)."""
        self._do(CMD_DEL_ADDR, [("MPTCP_PM_ATTR_ADDR", address(local, addr_id=addr_id), NLA_F_NESTED)])

    def set_limits(self, subflows: int, add_addr_accepted: int) -> None:
        self._do(CMD_SET_LIMITS, [("MPTCP_PM_ATTR_RCV_ADD_ADDRS", add_addr_accepted),
                                  ("MPTCP_PM_ATTR_SUBFLOWS", subflows)])


class PmEvents(GenericNetlinkSocket):
    """The path manager's events in this namespace; ``next()`` blocks for the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.bind(FAMILY, EventMessage)
        self.add_membership(EVENTS_GROUP)

    def next(self) -> list[PmEvent]:
        out = []
        for msg in self.get():
            kind = EVENT_NAMES.get(msg["cmd"])
            if kind is None:
                continue
            g = msg.get_attr
            out.append(PmEvent(
                kind, g("MPTCP_ATTR_TOKEN") or 0,
                local=g("MPTCP_ATTR_SADDR4") or g("MPTCP_ATTR_SADDR6"),
                remote=g("MPTCP_ATTR_DADDR4") or g("MPTCP_ATTR_DADDR6"),
                sport=g("MPTCP_ATTR_SPORT"), dport=g("MPTCP_ATTR_DPORT"),
                loc_id=g("MPTCP_ATTR_LOC_ID"), rem_id=g("MPTCP_ATTR_REM_ID"),
                backup=bool(g("MPTCP_ATTR_BACKUP")), error=g("MPTCP_ATTR_ERROR") or 0))
        return out


def set_limits(subflows: int, add_addr_accepted: int) -> None:
    """For ``netns.call_in``: the in-kernel path manager's limits in the caller's namespace."""
    with PathManager() as pm:
        pm.set_limits(subflows, add_addr_accepted)
