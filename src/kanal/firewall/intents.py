"""Backend-neutral firewall intents, and the owner tag every entry carries.

An :class:`Owner` is one attachment (network, container, ifname). Every entry a
backend writes is tagged with it, so DEL removes exactly its own entries (even
without the netns, even after the config changed) and GC can drop the entries
of attachments that are no longer valid (docs/firewall.md, "Ownership").

The intents: :class:`Masquerade` (ipMasq), :class:`PortMaps` (the portmap
plugin's and published ports), :class:`ForwardAccept` (the firewall plugin's
rules), :class:`MacSpoofCheck` (the bridge's macspoofchk).
"""

from __future__ import annotations

from kanal._dataclass import dataclass
from kanal._hash import sha512_hex
from kanal.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Sequence

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
    Net = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "ForwardAccept",
    "MacSpoofCheck",
    "Masquerade",
    "Owner",
    "PortMapping",
    "PortMaps",
    "check_admin_chain",
    "check_conditions",
    "network_tag",
]

# CNI names and container IDs (docs/firewall.md, "Ownership"); ifnames per the
# kernel's rules. Checked by hand (the patterns are in the docstrings): importing
# re costs a plugin exec ~4 ms.
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_REST = _ALNUM | frozenset("_.-")
_IFNAME_BAD = frozenset("/:\"'\\")


def _name_ok(value: str) -> bool:
    """``re.match(r"^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*\\Z", value)``."""
    return value[:1] in _ALNUM and all(c in _NAME_REST for c in value)


def _ifname_ok(value: str) -> bool:
    """``re.match(r"^[^\\s/:\"'\\\\]{1,15}\\Z", value)``."""
    return 1 <= len(value) <= 15 and not any(c.isspace() or c in _IFNAME_BAD for c in value)


def _sha(data: str) -> str:
    return sha512_hex(data.encode())


def network_tag(network: str) -> str:
    """The part of an owner tag naming the network (GC selects by it)."""
    return "k" + _sha(network)[:8]


@dataclass(frozen=True)
class Owner:
    """One attachment; validated so it can never break out of a comment or name."""

    network: str
    container_id: str
    ifname: str

    def __post_init__(self) -> None:
        for value, what in ((self.network, "network name"), (self.container_id, "container ID")):
            if not _name_ok(value) or value in (".", "..") or len(value) > 253:
                raise InvalidConfig(f"invalid {what} {value!r} for a firewall entry")
        if not _ifname_ok(self.ifname) or self.ifname in (".", ".."):
            raise InvalidConfig(f"invalid interface name {self.ifname!r} for a firewall entry")

    @property
    def tag(self) -> str:
        """kanal's nftables element comment: ``k<net hash>:<attachment hash>``."""
        attachment = "\0".join((self.network, self.ifname, self.container_id))
        return f"{network_tag(self.network)}:{_sha(attachment)[:16]}"

    def iptables_chain(self) -> str:
        """Go's ``utils.FormatChainName(net, cid)``: the per-container nat chain."""
        return ("CNI-" + _sha(self.network + self.container_id))[:28]

    def iptables_comment(self) -> str:
        """Go's ``utils.FormatComment``: ``name: "<net>" id: "<cid>"``."""
        return f'name: "{self.network}" id: "{self.container_id}"'

    def go_nft_prefix(self) -> str:
        """Go's nftables ipMasq comment prefix (``hashForInstance``)."""
        return _sha(self.network)[:16] + "-" + _sha(self.ifname + ":" + self.container_id)[:16]


@dataclass(frozen=True)
class Masquerade:
    """Source-NAT traffic from ``ip`` to anything outside ``subnet`` (and not multicast)."""

    owner: Owner
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network

    def __post_init__(self) -> None:
        if self.ip.version != self.subnet.version:
            raise InvalidConfig(f"masquerade {self.ip} with a subnet of another family")


@dataclass(frozen=True)
class MacSpoofCheck:
    """Drop frames entering from ``host_ifname`` whose source MAC is not ``mac``."""

    host_ifname: str
    mac: str
    unique_id: str


@dataclass(frozen=True)
class PortMapping:
    """One published port: ``host_port`` (on ``host_ip``, or every local address)
    to ``container_port``."""

    host_port: int
    container_port: int
    protocol: str  # tcp | udp | sctp
    host_ip: Addr | None = None


@dataclass(frozen=True)
class PortMaps:
    """An attachment's published ports: each mapping to the container address of its
    family (``ips``: at most one per family; ``subnets``: theirs).

    ``snat`` makes mapped ports reachable from localhost and by hairpin from the
    container's own subnet; ``masq_all`` masquerades all mapped traffic. The rest
    are the Go plugin's iptables keys (nftables masquerades by address, not by
    mark, and takes no extra matches): ``mark_bit``, ``external_setmark``,
    ``conditions_v4``/``conditions_v6`` (checked with :func:`check_conditions`).
    """

    owner: Owner
    mappings: Sequence[PortMapping]
    ips: Sequence[Addr]
    subnets: Sequence[Net] = ()
    snat: bool = True
    masq_all: bool = False
    mark_bit: int = 13
    external_setmark: str | None = None
    conditions_v4: Sequence[str] = ()
    conditions_v6: Sequence[str] = ()


@dataclass(frozen=True)
class ForwardAccept:
    """The firewall plugin's rules: accept forwarded traffic from ``ips`` and the
    answers to it. ``admin_chain`` is the iptables chain left to the admin
    (``iptablesAdminChainName``; nftables has its own ``fw_admin``)."""

    owner: Owner
    ips: Sequence[Addr]
    admin_chain: str = "CNI-ADMIN"


def check_conditions(conds: Sequence[str], what: str) -> list[str]:
    """portmap's ``conditionsV4``/``conditionsV6``: iptables match arguments, each
    passed as one argument (no shell), so only NUL and newlines are refused."""
    out = []
    for c in conds:
        if not isinstance(c, str) or "\0" in c or "\n" in c:
            raise InvalidConfig(f"invalid {what} entry {c!r}")
        out.append(c)
    return out


def check_admin_chain(admin: str) -> str:
    """The firewall plugin's ``iptablesAdminChainName``: an iptables chain name."""
    if not admin or len(admin) > 28 or any(ch.isspace() or ch in "!'\"" for ch in admin):
        raise InvalidConfig(f"invalid iptablesAdminChainName {admin!r}")
    return admin
