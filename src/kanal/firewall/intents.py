"""Backend-neutral firewall intents, and the owner tag every entry carries.

An :class:`Owner` is one attachment (network, container, ifname). Every entry a
backend writes is tagged with it, so DEL removes exactly its own entries (even
without the netns, even after the config changed) and GC can drop the entries
of attachments that are no longer valid.
"""

from __future__ import annotations

from kanal._dataclass import dataclass
from kanal._hash import sha512_hex
from kanal.errors import InvalidConfig

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress

__all__ = ["MacSpoofCheck", "Masquerade", "Owner", "network_tag"]

# CNI names and container IDs (cni.md §1.2); ifnames per the kernel's rules. Checked
# by hand (the patterns are in the docstrings): importing re costs a plugin exec ~4 ms.
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
