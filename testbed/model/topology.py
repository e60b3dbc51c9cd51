"""The topology: inert data describing nodes, links and access networks (no I/O here).

A topology is what a user writes in ``topologies/*.yaml`` (or builds in Python). The loader
validates it into these pydantic models; backends and services only ever see validated data.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

IPv4Net = ipaddress.IPv4Network
IPv6Net = ipaddress.IPv6Network

#: Documentation prefixes (RFC 5737, RFC 3849): the only addresses a lab may use.
DOC_V4 = tuple(ipaddress.ip_network(p) for p in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
DOC_V6 = (ipaddress.ip_network("2001:db8::/32"),)

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,6}$")


class Role(str, Enum):
    MOBILE = "mobile"  # the mobile node (MN)
    HOST = "host"  # a static host, e.g. the correspondent node (CN)
    DNS = "dns"  # the location manager: authoritative named for the lab zone
    ACCESS_ROUTER = "access_router"  # an AR: radvd + dhcpd for its access network
    ROUTER = "router"  # a plain forwarding router


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SctpSettings(Strict):
    """SCTP for a node: the host kernel, a kernel of the node's own (User-Mode Linux or a QEMU
    VM), or whichever works (``auto``: host, else uml, else qemu; ``vm`` means qemu); or, for a
    correspondent, ``usrsctp``: the user-space stack of FreeBSD's code (libusrsctp2), whose
    settings are the same names mapped to its sysctls (addip_noauth_enable has none)."""

    stack: Literal["auto", "host", "uml", "qemu", "vm", "usrsctp", "none"] = "none"
    # uml: "uml" (Debian's build) or a path to an ARCH=um linux binary; qemu: a Debian release
    # or series (6.1, 6.12) or a path to a bzImage/vmlinux
    kernel: str | None = None
    addip_enable: int = 1
    auth_enable: int = 1
    addip_noauth_enable: int = 0
    default_auto_asconf: int = 0
    # SCTP over UDP (RFC 6951): the UDP port this node listens on and sends to (Linux's
    # net.sctp.udp_port and encap_port); 0: plain SCTP over IP
    udp_port: int = Field(0, ge=0, le=65535)
    # the endpoint-pair shared key (RFC 4895 §6.1), hex, set as key 0 on this node's traffic
    # sockets (SCTP_AUTH_KEY): without one key 0 is empty, and the association key is built
    # from INIT and INIT-ACK alone, which an on-path attacker sees (give both ends the same)
    auth_key: str | None = Field(default=None, pattern=r"^([0-9a-fA-F]{2}){1,64}$")


class MptcpSettings(Strict):
    """Multipath TCP on a node (the host kernel's: a namespace node). An MPTCP mobile node runs
    the binding process, which drives its connections' path manager; ``subflows`` and
    ``add_addr_accepted`` are the in-kernel path manager's limits (its defaults are 2 and 0)."""

    enabled: bool = False
    subflows: int = Field(8, ge=0, le=8)
    add_addr_accepted: int = Field(0, ge=0, le=8)


QuicStack = Literal["none", "aioquic", "ngtcp2"]


class QuicSettings(Strict):
    """QUIC on a node (RFC 9000, over the node's UDP): ``aioquic`` (the Python stack, which the
    MN's binding process drives through connection migration), or ``ngtcp2`` (Debian's
    ngtcp2 examples: ``gtlsserver`` on a correspondent, ``gtlsclient`` on a mobile node, whose
    one migration runs on its own timer). ``none``: the node speaks no QUIC."""

    stack: QuicStack = "none"

    @property
    def enabled(self) -> bool:
        return self.stack != "none"


class Node(Strict):
    role: Role
    sctp: SctpSettings = SctpSettings()
    mptcp: MptcpSettings = MptcpSettings()
    quic: QuicSettings = QuicSettings()
    # access networks (their routers) a host sits on beside the mobile node, with a static
    # address there: a second host, an attacker, an impostor on the same segment
    attach: tuple[str, ...] = ()
    # docker backend: the node runs this image instead of its role's (it must hold what the
    # role runs; the lab checks that before it starts anything in it)
    image: str | None = Field(default=None, min_length=1)


class ImageSettings(Strict):
    """Docker backend: what the role images are built FROM. None: testbed's own Debian base
    (debootstrap); or an image already in the engine, e.g. ``debian:bookworm``."""

    base: str | None = Field(default=None, min_length=1)


def _in_doc_ranges(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    ranges = DOC_V4 if net.version == 4 else DOC_V6
    return any(net.subnet_of(r) for r in ranges)  # type: ignore[arg-type]


def _doc_only(v: IPv4Net | IPv6Net) -> IPv4Net | IPv6Net:
    if not _in_doc_ranges(v):
        raise ValueError(f"{v} is outside the documentation prefixes")
    return v


DocIPv4Net = Annotated[IPv4Net, AfterValidator(_doc_only)]
DocIPv6Net = Annotated[IPv6Net, AfterValidator(_doc_only)]


RATE_RE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit)$")
RATE_UNITS = {"bit": 1, "kbit": 1_000, "mbit": 1_000_000, "gbit": 1_000_000_000}


class Shaping(Strict):
    """Path quality of a link, applied to each end's egress: ``rate`` (tc syntax, ``10mbit``),
    ``delay_ms`` and ``jitter_ms`` (netem only: a kernel node's own kernel, or every node under
    ``--machine uml``; the host kernel here has none), ``loss`` (percent)."""

    rate: str | None = None
    delay_ms: float = Field(0.0, ge=0, le=10_000)
    jitter_ms: float = Field(0.0, ge=0, le=10_000)
    loss: float = Field(0.0, ge=0, le=100)

    @field_validator("rate")
    @classmethod
    def _rate(cls, v: str | None) -> str | None:
        if v is not None and not RATE_RE.match(v):
            raise ValueError(f"rate {v!r}: write it as tc does, e.g. 512kbit, 10mbit, 1gbit")
        return v

    @property
    def needs_netem(self) -> bool:
        return self.delay_ms > 0 or self.jitter_ms > 0

    @property
    def rate_kbit(self) -> float | None:
        """``rate`` in kbit/s (None: no rate limit)."""
        if self.rate is None:
            return None
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z]+)", self.rate)
        assert m, self.rate  # the validator took it
        return float(m.group(1)) * RATE_UNITS[m.group(2)] / 1000


TraceFormat = Literal["csv", "mahimahi"]
Direction = Literal["down", "up"]


class Directions(Strict):
    """One trace file per direction (mahimahi's way)."""

    downlink: str = Field(min_length=1)
    uplink: str = Field(min_length=1)


class TraceSource(Strict):
    """An access network's trace: a file for both directions, or one per direction.
    ``noise_db``: the standard deviation of Gaussian noise added to the file's signal at replay,
    drawn from the scenario's seed (the file keeps the noise-free signal, which decisions are
    judged against)."""

    trace: str | Directions
    format: TraceFormat
    noise_db: float = Field(0.0, ge=0, le=20)

    def files(self) -> dict[Direction, str]:
        if isinstance(self.trace, Directions):
            return {"down": self.trace.downlink, "up": self.trace.uplink}
        return {"down": self.trace, "up": self.trace}

    def resolved(self, base: Path) -> TraceSource:
        """The same source with its files relative to ``base`` (a directory) made absolute."""
        def fix(p: str) -> str:
            return str((Path(base) / p).resolve()) if not Path(p).is_absolute() else p

        trace = (Directions(downlink=fix(self.trace.downlink), uplink=fix(self.trace.uplink))
                 if isinstance(self.trace, Directions) else fix(self.trace))
        return self.model_copy(update={"trace": trace})


class Link(Strict):
    """A point-to-point link between two infrastructure nodes; first host address to ``a``."""

    a: str
    b: str
    ipv4: DocIPv4Net
    ipv6: DocIPv6Net
    shape: Shaping | None = None

    @field_validator("ipv4")
    @classmethod
    def _p2p(cls, v: IPv4Net) -> IPv4Net:
        if v.num_addresses < 4:
            raise ValueError(f"{v} is too small for two hosts; use a /30 or larger")
        return v


class RaSettings(Strict):
    """radvd timers (seconds). radvd needs max >= 4 unless Mobile IPv6 intervals are on."""

    min_interval: float = 3.0
    max_interval: float = 4.0
    # answer a Router Solicitation this soon after the last RA (radvd's default is 3 s, which
    # would dominate every handover; RFC 6275 §7.5 lets mobility-aware routers go lower)
    min_delay_between_ras: float = 0.05
    router_lifetime: int = 30
    valid_lifetime: int = 120
    preferred_lifetime: int = 60

    @model_validator(mode="after")
    def _order(self) -> RaSettings:
        if not 0.03 <= self.min_interval <= 0.75 * self.max_interval:
            raise ValueError("min_interval must be between 0.03 and 0.75 × max_interval")
        if self.max_interval < 0.07:
            raise ValueError("max_interval must be >= 0.07")
        return self


class AccessNetwork(Strict):
    """The network an access router serves to the mobile node: DHCPv4 pool and SLAAC prefix.
    Either family may be left out (``ipv4: null``): an IPv6-only or an IPv4-only network."""

    router: str
    ipv4: DocIPv4Net | None
    ipv6: DocIPv6Net | None
    pool: tuple[int, int] = (100, 199)  # host numbers of the DHCP range inside ``ipv4``
    lease_time: int = 600
    ra: RaSettings = RaSettings()
    # the radio link's quality: the AR's port toward the MN and the MN's own interface
    shape: Shaping | None = None
    # how that quality and the network's signal change during a run (model.trace); replayed on
    # the same interfaces, over ``shape``; a scenario's ``networks`` may give another
    replay: TraceSource | None = None
    # §6 middleboxes on the AR: IPv4 behind NAT (masquerade to the AR's own address; the
    # network's IPv4 prefix is routed nowhere else, like a private one), and ingress filtering
    # (BCP 38: drop what arrives from the network with a source it cannot have)
    nat: bool = False
    ingress_filter: bool = False
    # DHCPv6 (§3): "stateful" gives the address (RA M flag, prefix not autonomous; ISC dhcpd -6
    # on the AR), "stateless" only the other configuration (O flag; SLAAC gives the address)
    dhcpv6: Literal["off", "stateful", "stateless"] = "off"
    # ICMP router discovery (RFC 1256) advertisements of the AR's IPv4 address, every
    # router_discovery seconds (0: none): an IPv4 detection signal beside DHCP (§3)
    router_discovery: float = Field(0.0, ge=0, le=600)
    pool6: tuple[int, int] = (0x1000, 0x1FFF)  # interface ids of the stateful DHCPv6 range
    # switched: the bridge learns, so a host on the segment sees only its own and broadcast
    # traffic (off-path); shared: every frame the MN sends or gets there reaches every port, as
    # on a radio channel, so an attacker on it is on-path (sees INIT, INIT-ACK, signed UPDATEs)
    medium: Literal["switched", "shared"] = "switched"

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(f for f, net in ((4, self.ipv4), (6, self.ipv6)) if net is not None)

    @field_validator("ipv6")
    @classmethod
    def _slaac(cls, v: IPv6Net | None) -> IPv6Net | None:
        if v is not None and v.prefixlen != 64:
            raise ValueError(f"{v}: SLAAC needs a /64")
        return v

    @model_validator(mode="after")
    def _pool(self) -> AccessNetwork:
        if self.ipv4 is None and self.ipv6 is None:
            raise ValueError("an access network needs ipv4, ipv6 or both")
        if self.nat and self.ipv4 is None:
            raise ValueError("nat translates IPv4: give the network an ipv4 prefix")
        if self.dhcpv6 != "off" and self.ipv6 is None:
            raise ValueError("dhcpv6 serves IPv6: give the network an ipv6 prefix")
        if self.router_discovery and self.ipv4 is None:
            raise ValueError("router_discovery (RFC 1256) is IPv4: give the network an ipv4 prefix")
        lo, hi = self.pool
        if self.ipv4 is not None and not (2 <= lo <= hi < self.ipv4.num_addresses - 1):
            raise ValueError(f"pool {lo}-{hi} does not fit in {self.ipv4}")
        return self


class DnsSettings(Strict):
    zone: str = "mobile.test"
    server: str = "dns"  # node running named
    mobile_name: str = "mn"  # label of the MN's name inside the zone
    sig0_algorithms: tuple[str, ...] = ("ECDSAP256SHA256", "ED25519")
    ttl: int = 5


class PolicySettings(Strict):
    """When the MN's binding process moves its transports to another network (mobility.policy).

    ``switch``: ``newest`` (the default: the draft's handover on entering a new cell, which is
    what a scripted move means), ``on-loss``, or ``metric``: the new network once its ``metric``
    beats the current one's by more than ``hysteresis_db`` for ``dwell_s`` seconds. The
    defaults, 5 dB for 1 s, are the two knobs of cellular handover (3GPP's hysteresis and
    time-to-trigger) set so that a few dB of fading on a reading taken every 100 ms does not
    flip the choice back and forth, at the price of deciding about a second after the real
    crossing. ``keep_old: false`` deletes the old network's addresses at the switch (an MN
    attached to several networks at once), not when that network is lost."""

    switch: Literal["newest", "metric", "on-loss"] = "newest"
    metric: str = Field("signal", pattern=r"^[a-z][a-z0-9_]{0,31}$")
    hysteresis_db: float = Field(5.0, ge=0, le=100)
    dwell_s: float = Field(1.0, ge=0, le=600)
    keep_old: bool = True


class MobileSettings(Strict):
    """Settings every mobile node shares. ``node`` names the mobile node (the first, when there
    are several); ``count`` > 1 is the compact form for many: the loader replaces ``node`` by
    ``count`` copies named ``<node>1`` … ``<node>N`` (each with its own name in the zone, SIG(0)
    key, agent and binding process)."""

    node: str = "mn"
    count: int = Field(1, ge=1)  # at most loader.MAX_MOBILES; the loader expands it
    attached: tuple[str, ...] = Field(default=("ar1",), min_length=1)  # ARs attached at start
    optimistic_dad: bool = True
    agent: bool = True  # run the mobility agent (movement detection + location updates)
    location: Literal["sig0", "tsig", "none"] = "sig0"  # how the agent signs DNS UPDATEs
    sig0_algorithm: str = "ECDSAP256SHA256"
    signature_validity: float = 60.0  # SIG(0) window each side of now; BIND accepts replays in it
    # a host that takes over the MN's name on departure (§4): the name points at its addresses
    # instead of being deleted
    cooperating: str | None = None
    # route by source address (a policy-routing rule and table per configured address, added on
    # `configured`, removed on `lost`), as a multihomed host does, so a socket bound to the new
    # network's address leaves by that network; None: on for a QUIC mobile node, whose migration
    # is a socket bound to the new address (else the first network's default route wins)
    source_routing: bool | None = None
    # the networks the MN binds to: "access_networks" (the topology's own prefixes), a list of
    # prefixes, or None (every network it hears of, a rogue router's too)
    trust: Literal["access_networks"] | tuple[str, ...] | None = None
    policy: PolicySettings = PolicySettings()

    @field_validator("trust")
    @classmethod
    def _networks(cls, v: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        if isinstance(v, tuple):
            for n in v:
                ipaddress.ip_network(n)  # ValueError: "... does not appear to be an IPv4 or IPv6 network"
        return v


class Topology(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    description: str = ""
    nodes: dict[str, Node]
    links: list[Link]
    access_networks: list[AccessNetwork]
    dns: DnsSettings = DnsSettings()
    mobile: MobileSettings = MobileSettings()
    backend: Literal["mininet", "docker"] | None = None  # None: mininet; `testbed up --backend` wins
    images: ImageSettings = ImageSettings()

    @field_validator("nodes")
    @classmethod
    def _names(cls, v: dict[str, Node]) -> dict[str, Node]:
        for name in v:
            if not NAME_RE.match(name):
                raise ValueError(
                    f"node name {name!r} must be 1-7 lowercase letters/digits starting with a letter"
                )
        return v

    # Cross-field checks live in model.loader.check, which knows field paths.

    @property
    def mobiles(self) -> list[str]:
        """Every mobile node, in the order the topology declares them."""
        return [n for n, spec in self.nodes.items() if spec.role is Role.MOBILE]

    def dns_label(self, mn: str) -> str:
        """``mn``'s label in the zone: ``dns.mobile_name`` for the one MN of a lab, else its
        node name."""
        return self.dns.mobile_name if len(self.mobiles) == 1 else mn

    def dns_name(self, mn: str) -> str:
        return f"{self.dns_label(mn)}.{self.dns.zone}"

