"""kanal's firewall layer: the only code that speaks nftables or iptables.

Callers state intents (:mod:`.intents`: :class:`Masquerade`, :class:`PortMaps`,
:class:`ForwardAccept`, :class:`MacSpoofCheck`), each tagged with its
:class:`Owner`; a :class:`FirewallBackend` from :func:`get_backend` renders them.
Tables, chains and ownership tags are described in docs/firewall.md.

The package, by role:

- this module: the :class:`FirewallBackend` contract, the factory, and what runs
  across every backend (DEL and GC, since the config may have changed since ADD);
- :mod:`.intents`: the intents and the owner tag, backend-neutral;
- :mod:`.nftables`: the default backend, kanal's own ``inet kanal`` table with
  per-container entries in sets; with the nftables wire (:mod:`.nftables.nfnl`,
  raw netlink) and transactions (:mod:`.nftables.libnft`), the network manager's
  network isolation, the MAC spoof check and the Go plugins' leftovers;
- :mod:`.iptables`: the backend writing exactly what the Go plugins write, and
  the iptables runner; also the ``FORWARD`` accept for Docker remote networks;
- :mod:`.null`: the ``none`` backend, which writes nothing.

The standalone plugin exec path imports this module, :mod:`.intents` and, for
the first nftables use, :mod:`.nftables` with its wire modules; everything else
is imported where a config asks for it (docs/fastpath.md).
"""

from __future__ import annotations

from kanal.errors import InvalidConfig, KanalError, TeardownError
from kanal.firewall.intents import (
    ForwardAccept,
    MacSpoofCheck,
    Masquerade,
    Owner,
    PortMapping,
    PortMaps,
)

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
    "ForwardAccept",
    "MacSpoofCheck",
    "Masquerade",
    "Owner",
    "PortMapping",
    "PortMaps",
    "allow_localhost_dnat",
    "apply_mac_spoof_check",
    "drop_network_entries",
    "drop_subnet_entries",
    "flush_udp_conntrack",
    "gc_masquerade_all",
    "get_backend",
    "teardown_mac_spoof_check",
    "teardown_masquerade",
]


class FirewallBackend(Protocol):
    """Renders firewall intents. Every method runs in the caller's network namespace.

    ``add_*`` are idempotent (applying twice is fine); ``del_*`` are best effort
    (missing is success) and delete only entries of the given owner; ``check_*``
    raise :class:`kanal.errors.NotFound` naming what is missing; ``gc_*`` remove a
    network's entries whose (container ID, ifname) is not in ``valid``, where the
    backend's entries say whose they are.
    """

    name: str

    def available(self) -> bool: ...

    # Masquerade (ipMasq of bridge and ptp; the network manager's NAT networks).
    def add_masquerade(self, rules: Sequence[Masquerade]) -> None: ...

    def del_masquerade(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None: ...

    def check_masquerade(self, rules: Sequence[Masquerade]) -> None: ...

    def gc_masquerade(self, network: str, valid: Collection[tuple[str, str]]) -> None: ...

    # Port mappings (the portmap plugin; published ports): DNAT from the host's
    # addresses, SNAT for localhost and hairpin, masqAll. A host port held by
    # another owner is a Conflict.
    def add_portmaps(self, pm: PortMaps) -> None: ...

    def del_portmaps(
        self, owner: Owner, known: PortMaps | None = None, *, leftovers: bool = False
    ) -> None:
        """``known``: what ADD mapped, when the config and cached result say;
        ``leftovers``: the config names another backend (see the backends)."""

    def check_portmaps(self, pm: PortMaps) -> None: ...

    def gc_portmaps(self, network: str, valid: Collection[tuple[str, str]]) -> None: ...

    # The firewall plugin: accept a container's forwarded traffic; ingressPolicy
    # same-bridge isolates bridges from each other.
    def add_forward(self, rule: ForwardAccept) -> None: ...

    def del_forward(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None: ...

    def check_forward(self, rule: ForwardAccept) -> None: ...

    def gc_forward(self, network: str, valid: Collection[tuple[str, str]]) -> None: ...

    def isolate_bridge(self, bridge: str, versions: Sequence[int]) -> None: ...


_BACKENDS: dict[str, FirewallBackend] = {}


def get_backend(name: str | None = None) -> FirewallBackend:
    """``nftables``, ``iptables`` or ``none``; None picks nftables when usable.

    Backends are imported on first use: a plugin exec loads only the one it needs.
    """
    if name is None:
        nftb = get_backend("nftables")
        return nftb if nftb.available() else get_backend("iptables")
    b = _BACKENDS.get(name)
    if b is None:
        if name == "nftables":
            from kanal.firewall.nftables import NftablesBackend  # lazy: see the docstring

            b = NftablesBackend()
        elif name == "iptables":
            from kanal.firewall.iptables import IptablesBackend  # lazy: see the docstring

            b = IptablesBackend()
        elif name == "none":
            from kanal.firewall.null import NullBackend  # lazy: see the docstring

            b = NullBackend()
        else:
            raise InvalidConfig(
                f"unknown firewall backend {name!r}", "want nftables, iptables or none"
            )
        _BACKENDS[name] = b
    return b


def teardown_masquerade(owner: Owner, ips: Sequence[Addr] | None = None) -> None:
    """Remove ``owner``'s masquerade from every backend; all are tried, errors joined."""
    from kanal.firewall.nftables.gotable import teardown_go_masquerade  # lazy: DEL only

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
    """:meth:`FirewallBackend.gc_masquerade` on every backend, and the Go plugins' table."""
    from kanal.firewall.nftables.gotable import gc_go_masquerade  # lazy: GC only

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
    from kanal.firewall.nftables import libnft, portmap  # lazy: network removal only

    if not libnft.available():
        return
    get_backend("nftables").gc_masquerade(network, ())
    portmap.gc_portmaps(network, ())
    portmap.drop_subnets(network)


def drop_subnet_entries(
    network: str, subnets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> None:
    """Remove the subnet entries CNI network ``network`` put in kanal's nftables table
    (masquerade's own-subnet skip, hairpin SNAT): what its last container's DEL
    leaves. An entry another network tagged is left alone."""
    from kanal.firewall.nftables import NftablesBackend, libnft, portmap  # lazy: idle nets

    if not libnft.available():
        return
    backend = get_backend("nftables")
    assert isinstance(backend, NftablesBackend)
    backend.drop_subnets(network, subnets)
    portmap.drop_subnets(network, subnets)


def apply_mac_spoof_check(chk: MacSpoofCheck) -> None:
    """See :mod:`kanal.firewall.nftables.spoofchk` (imported when a config asks for it)."""
    from kanal.firewall.nftables.spoofchk import apply_mac_spoof_check as apply  # lazy: ditto

    apply(chk)


def teardown_mac_spoof_check(unique_id: str) -> None:
    """See :mod:`kanal.firewall.nftables.spoofchk`."""
    from kanal.firewall.nftables.spoofchk import (  # lazy: needs json and re
        teardown_mac_spoof_check as teardown,
    )

    teardown(unique_id)


def allow_localhost_dnat(link: str) -> None:
    """Let ``127.0.0.1:PORT`` reach a container behind ``link``: the kernel routes
    "martian" localhost sources only with ``route_localnet`` on the link the
    container is reached by (the localhost SNAT then brings the replies back)."""
    from kanal.netlink.sysctl import write_sysctl  # lazy: port-mapping configs only

    write_sysctl(f"net/ipv4/conf/{link}/route_localnet", "1")


def flush_udp_conntrack(mappings: Sequence[PortMapping]) -> None:
    """Forget UDP flows to the mapped ports, so they do not stick to an old container."""
    for m in mappings:
        if m.protocol != "udp":
            continue
        argv = ["conntrack", "-D", "-p", "udp", "--dport", str(m.host_port)]
        if m.host_ip is not None:
            argv += ["--orig-dst", str(m.host_ip)]
        try:
            import subprocess  # lazy: UDP mappings only (subprocess costs an exec ~9 ms)

            subprocess.run(argv, capture_output=True, timeout=10)
        except FileNotFoundError:
            return  # no conntrack tool: nothing to flush with
