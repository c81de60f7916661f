"""kanal's firewall layer: the only code that speaks nftables or iptables.

Callers state intents (:class:`Masquerade`, :class:`MacSpoofCheck`) tagged with
their :class:`Owner`; a :class:`FirewallBackend` renders them. ``nftables``
(kanal's own table, per-container entries in sets) is the default, ``iptables``
writes exactly what the Go plugins write, ``none`` writes nothing. Teardown and GC
go through every backend — and the Go plugins' nftables table — because the
config may have changed since ADD.
"""

from __future__ import annotations

from kanal.errors import InvalidConfig, KanalError, TeardownError
from kanal.firewall.intents import MacSpoofCheck, Masquerade, Owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Collection, Sequence
    from typing import Protocol

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
else:
    Protocol = object  # typing costs a plugin exec ~6 ms; nothing checks this at run time

__all__ = [
    "FirewallBackend",
    "MacSpoofCheck",
    "Masquerade",
    "Owner",
    "apply_mac_spoof_check",
    "drop_network_entries",
    "drop_subnet_entries",
    "gc_masquerade_all",
    "get_backend",
    "teardown_mac_spoof_check",
    "teardown_masquerade",
]


def apply_mac_spoof_check(chk: MacSpoofCheck) -> None:
    """See :mod:`kanal.firewall.spoofchk` (imported when a config asks for it)."""
    from kanal.firewall.spoofchk import apply_mac_spoof_check as apply

    apply(chk)


def teardown_mac_spoof_check(unique_id: str) -> None:
    """See :mod:`kanal.firewall.spoofchk`."""
    from kanal.firewall.spoofchk import teardown_mac_spoof_check as teardown

    teardown(unique_id)


class FirewallBackend(Protocol):
    """Renders firewall intents. Every method runs in the caller's network namespace.

    ``add_*`` are idempotent (applying twice is fine); ``del_*`` are best effort
    (missing is success) and delete only entries tagged with the given owner;
    ``check_*`` raise :class:`kanal.errors.NotFound` naming what is missing;
    ``gc_*`` remove a network's entries whose (container ID, ifname) is not valid.
    """

    name: str

    def available(self) -> bool: ...

    def add_masquerade(self, rules: Sequence[Masquerade]) -> None: ...

    def del_masquerade(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None: ...

    def check_masquerade(self, rules: Sequence[Masquerade]) -> None: ...

    def gc_masquerade(self, network: str, valid: Collection[tuple[str, str]]) -> None: ...


_BACKENDS: dict[str, FirewallBackend] = {}


def get_backend(name: str | None = None) -> FirewallBackend:
    """``nftables``, ``iptables`` or ``none``; None picks nftables when usable."""
    if name is None:
        nftb = get_backend("nftables")
        return nftb if nftb.available() else get_backend("iptables")
    b = _BACKENDS.get(name)
    if b is None:
        if name == "nftables":
            from kanal.firewall.nftables import NftablesBackend

            b = NftablesBackend()
        elif name == "iptables":
            from kanal.firewall.iptables import IptablesBackend

            b = IptablesBackend()
        elif name == "none":
            from kanal.firewall.none import NullBackend

            b = NullBackend()
        else:
            raise InvalidConfig(
                f"unknown firewall backend {name!r}", "want nftables, iptables or none"
            )
        _BACKENDS[name] = b
    return b


def teardown_masquerade(owner: Owner, ips: Sequence[Addr] | None = None) -> None:
    """Remove ``owner``'s masquerade from every backend; all are tried, errors joined."""
    from kanal.firewall.gonft import teardown_go_masquerade

    errors: list[BaseException] = []
    for name in ("nftables", "iptables"):
        try:
            get_backend(name).del_masquerade(owner, ips)
        except KanalError as e:
            if e.code not in (50,):  # a backend that is not installed holds nothing
                errors.append(e)
    try:
        teardown_go_masquerade(owner)
    except KanalError as e:
        errors.append(e)
    if errors:
        raise TeardownError(f"masquerade teardown for {owner.container_id} failed", errors)


def gc_masquerade_all(network: str, valid: Collection[tuple[str, str]]) -> None:
    from kanal.firewall.gonft import gc_go_masquerade

    errors: list[BaseException] = []
    for name in ("nftables", "iptables"):
        try:
            get_backend(name).gc_masquerade(network, valid)
        except KanalError as e:
            if e.code not in (50,):
                errors.append(e)
    try:
        gc_go_masquerade(network, valid)
    except KanalError as e:
        errors.append(e)
    if errors:
        raise TeardownError(f"masquerade GC of network {network} failed", errors)


def drop_network_entries(network: str) -> None:
    """Remove every entry of CNI network ``network`` from kanal's nftables table:
    the containers' (masquerade, port maps) and the shared subnet ones, which
    endpoint DELs leave behind. For a network that is gone for good."""
    from kanal.firewall import nft
    from kanal.firewall.portmap_nft import drop_subnets, gc_portmaps

    if not nft.available():
        return
    get_backend("nftables").gc_masquerade(network, ())
    gc_portmaps(network, ())
    drop_subnets(network)


def drop_subnet_entries(
    network: str, subnets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> None:
    """Remove the subnet entries CNI network ``network`` put in kanal's nftables table
    (masquerade's own-subnet skip, hairpin SNAT): what its last container's DEL
    leaves. An entry another network tagged is left alone."""
    from kanal.firewall import nft
    from kanal.firewall.portmap_nft import drop_subnets

    if not nft.available():
        return
    from kanal.firewall.nftables import NftablesBackend

    backend = get_backend("nftables")
    assert isinstance(backend, NftablesBackend)
    backend.drop_subnets(network, subnets)
    drop_subnets(network, subnets)
