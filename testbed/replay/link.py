"""One interface's egress quality, changed in place from a resident process.

The same shaping the lab applies at build (lab.shaping), through netlink and libnftables
instead of a ``tc`` or ``nft`` process per change: where the node's kernel has netem, one
``netem`` qdisc replaced with the new delay, jitter, loss and rate; elsewhere a ``tbf`` qdisc
for the rate and a rule on the interface's netdev egress hook for the loss, the chain flushed
and refilled in one nftables transaction (a second ``add rule`` would stack). A rate of 0 is
100 % loss: no qdisc sends at rate 0, so the last rate stays and every packet is dropped.
"""

from __future__ import annotations

import errno

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from testbed.host.nft import Nft
from testbed.model.replay import Quality


def _netem_request_fix() -> None:
    """pyroute2 0.9's netem plugin reads its keywords (delay, loss, rate...) into the qdisc's
    options but leaves them in the request too, where ``rate`` is taken for the tcmsg's own
    TCA_RATE and fails to encode; its tbf plugin drops ``rate`` (``fix_request``), netem's has
    no such hook, so it gets the same one here."""
    from pyroute2.netlink.rtnl.tcmsg import sched_netem

    if not hasattr(sched_netem, "fix_request"):
        def fix_request(request: dict) -> None:
            request.pop("rate", None)

        sched_netem.fix_request = fix_request  # type: ignore[attr-defined]


_netem_request_fix()

TABLE = "testbed_shape"  # lab.shaping's table: the build's loss rules live in it too
TBF_LATENCY = "100ms"


def chain_of(ifname: str) -> str:
    return f"egress_{ifname.replace('-', '_')}"


def tbf_burst(rate_bps: int) -> int:
    """At least 20 ms at the rate and 16 full frames (tbf needs burst >= rate/HZ)."""
    return max(rate_bps // 8 // 50, 16 * 1514)


def loss_commands(ifname: str, loss: float) -> str:
    """The egress chain of ``ifname`` holding exactly one drop rule for ``loss`` % (none at 0),
    as one transaction."""
    chain = chain_of(ifname)
    hook = f'type filter hook egress device "{ifname}" priority 0;'
    cmds = (f"add table netdev {TABLE}\n"
            f"add chain netdev {TABLE} {chain} {{ {hook} }}\n"
            f"flush chain netdev {TABLE} {chain}\n")
    if loss > 0:
        cmds += f"add rule netdev {TABLE} {chain} numgen random mod 10000 < {round(loss * 100)} drop\n"
    return cmds


class LinkShaper:
    """Applies ``Quality`` values to one interface (in this process's namespace)."""

    def __init__(self, ipr: IPRoute, nft: Nft, ifname: str, netem: bool, current: Quality) -> None:
        """``current``: what the interface has now (the build's static shape)."""
        self.ipr, self.nft, self.ifname, self.netem = ipr, nft, ifname, netem
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname} in this namespace")
        self.index = found[0]
        self.rate_kbit = current.rate_kbit  # what the qdisc sends at now
        self.loss = current.loss  # the loss rule in force (0: none)

    def apply(self, q: Quality) -> None:
        loss = 100.0 if q.rate_kbit == 0 else q.loss
        rate = self.rate_kbit if q.rate_kbit == 0 else q.rate_kbit
        if self.netem:
            self._netem(rate, q.delay_ms, q.jitter_ms, loss)
            return
        if rate != self.rate_kbit:
            if rate is None:
                self._del_root()
            else:
                bps = round(rate * 1000)
                self.ipr.tc("replace", "tbf", self.index, root=True, rate=max(bps // 8, 1),
                            burst=tbf_burst(bps), latency=TBF_LATENCY)
            self.rate_kbit = rate
        if loss != self.loss:
            self.nft.run(loss_commands(self.ifname, loss))
            self.loss = loss

    def _netem(self, rate: float | None, delay_ms: float, jitter_ms: float, loss: float) -> None:
        kw: dict = {"delay": round(delay_ms * 1000), "jitter": round(jitter_ms * 1000), "loss": loss}
        if rate is not None:
            kw["rate"] = max(round(rate * 1000) // 8, 1)
        if not (rate is not None or delay_ms or jitter_ms or loss):
            self._del_root()
        else:
            self.ipr.tc("replace", "netem", self.index, root=True, **kw)
        self.rate_kbit, self.loss = rate, loss

    def _del_root(self) -> None:
        try:
            self.ipr.tc("del", index=self.index, root=True)
        except NetlinkError as e:
            if e.code not in (errno.ENOENT, errno.EINVAL):  # no root qdisc to delete: done
                raise

    def restore(self, base: Quality) -> None:
        """Back to the static shape; the loss chain goes where that shape has no loss."""
        self.apply(base)
        if not self.netem and not base.loss:
            self.nft.run(f"delete chain netdev {TABLE} {chain_of(self.ifname)}\n", check=False)
            self.loss = 0.0
