"""Port mappings (the ``portmap`` plugin) in kanal's nftables table.

Per-container entries live in maps and sets, so mapping one more container costs
the same however many are mapped::

    map pm_any4 { type inet_proto . inet_service : ipv4_addr . inet_service; }   # any host IP
    map pm_ip4  { type ipv4_addr . inet_proto . inet_service
                  : ipv4_addr . inet_service; }                                # one host IP
    set pm_snat4 { type ipv4_addr; }             # containers whose mappings SNAT (hairpin, lo)
    set pm_masq4 { type ipv4_addr; }             # containers with masqAll
    set pm_subnets4 { type ipv4_addr; flags interval; }   # one element per container subnet
    chain pm_pre  { nat prerouting dstnat;  fib daddr type local jump pm_dnat }
    chain pm_out  { nat output -100;        fib daddr type local jump pm_dnat }
    chain pm_dnat { dnat ip to ip daddr . meta l4proto . th dport map @pm_ip4
                    dnat ip to meta l4proto . th dport map @pm_any4 }
    chain pm_post { nat postrouting srcnat-1;
                    ct status dnat ip saddr 127.0.0.0/8 ip daddr @pm_snat4 masquerade  # localhost
                    ct status dnat ip saddr @pm_subnets4 ip daddr @pm_snat4 masquerade # hairpin
                    ct status dnat ip daddr @pm_masq4 masquerade }                     # masqAll

(and the same for IPv6). Map elements are created with ``create``, so a host port
another container already holds is refused instead of silently shadowed.
"""

from __future__ import annotations

from kanal.errors import Conflict, NotFound
from kanal.firewall.intents import Owner, PortMapping, network_tag
from kanal.firewall.nftables import TABLE, _render, libnft

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Collection, Sequence

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
    Net = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "add_portmaps",
    "check_portmaps",
    "del_portmaps",
    "drop_subnets",
    "gc_portmaps",
]


def _skeleton() -> str:
    out = []
    for f, addr in (("4", "ipv4_addr"), ("6", "ipv6_addr")):
        out += [
            f"add map inet {TABLE} pm_any{f} {{ type inet_proto . inet_service : "
            f"{addr} . inet_service; }}",
            f"add map inet {TABLE} pm_ip{f} {{ type {addr} . inet_proto . inet_service : "
            f"{addr} . inet_service; }}",
            f"add set inet {TABLE} pm_snat{f} {{ type {addr}; }}",
            f"add set inet {TABLE} pm_masq{f} {{ type {addr}; }}",
            f"add set inet {TABLE} pm_subnets{f} {{ type {addr}; flags interval; }}",
        ]
    out += [
        f"add table inet {TABLE}",
        f"add chain inet {TABLE} pm_pre {{ type nat hook prerouting priority dstnat; "
        "policy accept; }",
        f"add chain inet {TABLE} pm_out {{ type nat hook output priority -100; policy accept; }}",
        f"add chain inet {TABLE} pm_dnat",
        f"add chain inet {TABLE} pm_post {{ type nat hook postrouting priority 99; "
        "policy accept; }",
    ]
    for chain in ("pm_pre", "pm_out", "pm_dnat", "pm_post"):
        out.append(f"flush chain inet {TABLE} {chain}")
    out += [
        f"add rule inet {TABLE} pm_pre fib daddr type local jump pm_dnat",
        f"add rule inet {TABLE} pm_out fib daddr type local jump pm_dnat",
    ]
    for f, ipt, lo in (("4", "ip", "127.0.0.0/8"), ("6", "ip6", "::1")):
        out += [
            f"add rule inet {TABLE} pm_dnat dnat {ipt} to {ipt} daddr . meta l4proto . "
            f"th dport map @pm_ip{f}",
            f"add rule inet {TABLE} pm_dnat dnat {ipt} to meta l4proto . th dport map "
            f"@pm_any{f}",
            f"add rule inet {TABLE} pm_post ct status dnat {ipt} saddr {lo} {ipt} daddr "
            f"@pm_snat{f} masquerade",
            f"add rule inet {TABLE} pm_post ct status dnat {ipt} saddr @pm_subnets{f} {ipt} "
            f"daddr @pm_snat{f} masquerade",
            f"add rule inet {TABLE} pm_post ct status dnat {ipt} daddr @pm_masq{f} masquerade",
        ]
    # The table must exist before the maps: put it first.
    table = out.pop(out.index(f"add table inet {TABLE}"))
    return "\n".join([table, *out])


_SKELETON = libnft.Skeleton(_skeleton)


def _fam(ip: Addr) -> str:
    return "4" if ip.version == 4 else "6"


def _key(m: PortMapping) -> tuple[str, str]:
    """(map name suffix, element key) for a mapping (family from the host IP or container)."""
    if m.host_ip is not None:
        return "ip", f"{m.host_ip} . {m.protocol} . {m.host_port}"
    return "any", f"{m.protocol} . {m.host_port}"


def add_portmaps(
    owner: Owner,
    mappings: Sequence[PortMapping],
    ips: Sequence[Addr],
    subnets: Sequence[Net],
    *,
    snat: bool,
    masq_all: bool,
) -> None:
    """Map every mapping to the container IP of its family; one transaction."""
    cmds = []
    tag = owner.tag
    for ip in ips:
        f = _fam(ip)
        for m in mappings:
            if m.host_ip is not None and m.host_ip.version != ip.version:
                continue
            kind, key = _key(m)
            value = f"{ip} . {m.container_port}"
            cmds.append(
                f'create element inet {TABLE} pm_{kind}{f} {{ {key} comment "{tag}" : '
                f"{value} }}"
            )
        if snat:
            cmds.append(f'add element inet {TABLE} pm_snat{f} {{ {ip} comment "{tag}" }}')
        if masq_all:
            cmds.append(f'add element inet {TABLE} pm_masq{f} {{ {ip} comment "{tag}" }}')
    for net in subnets:
        cmds.append(
            f"add element inet {TABLE} pm_subnets{_fam(net.network_address)} "
            f'{{ {net} comment "{network_tag(owner.network)}" }}'
        )
    if not cmds:
        return
    try:
        _SKELETON.run("\n".join(cmds))
    except libnft.NftError as e:
        if "File exists" not in e.details:
            raise
        _add_again(tag, mappings, ips, cmds, e)


def _add_again(
    tag: str,
    mappings: Sequence[PortMapping],
    ips: Sequence[Addr],
    cmds: list[str],
    first: libnft.NftError,
) -> None:
    """A ``create`` met a key that exists: whose is it? A retried ADD of the same
    owner replaces its own entries; anyone else's key is a conflict.

    Why a listing, not ``get element`` per key: under concurrent commits a lookup
    can fail for reasons other than absence, and "not found" must not be guessed.
    """
    keys = []
    for ip in ips:
        for m in mappings:
            if m.host_ip is not None and m.host_ip.version != ip.version:
                continue
            kind, key = _key(m)
            keys.append((f"pm_{kind}{_fam(ip)}", key, m))
    err: libnft.NftError = first
    for _ in range(3):
        held: dict[str, str] = {}
        for name in {name for name, _, _ in keys}:
            for val, comment in libnft.elements("inet", TABLE, name, kind="map") or []:
                held[f"{name} {{ {_render(val)} }}"] = comment
        stale = []
        for name, key, m in keys:
            full = f"{name} {{ {key} }}"
            if full not in held:
                continue
            if held[full] != tag:
                raise Conflict(_taken(m)) from err
            stale.append(f"delete element inet {TABLE} {full}")
        try:  # own entries (perhaps to another IP) out and in again, in one transaction
            _SKELETON.run("\n".join([*stale, *cmds]))
            return
        except libnft.NftError as e:
            if "File exists" not in e.details and not e.enoent:
                raise
            err = e
    # Three listings found no other holder of our keys: the clash is not a host port
    # (nft says which element), so it is not reported as one.
    raise err


def _taken(m: PortMapping) -> str:
    return (
        f"host port {m.host_port}/{m.protocol}"
        f"{' on ' + str(m.host_ip) if m.host_ip else ''} "
        "is already mapped by another container"
    )


def _exists(set_name: str, key: str) -> bool:
    try:
        libnft.run(f"get element inet {TABLE} {set_name} {{ {key} }}")
        return True
    except libnft.NftError as e:
        if e.enoent:
            return False
        raise


def _owned_entries(
    tag: str | None, net_prefix: str | None = None, keep: Collection[str] = ()
) -> list[tuple[str, str]]:
    """(``set { key }``, comment) of entries tagged ``tag`` (or of a network, minus keep)."""
    found = []
    for f in ("4", "6"):
        for name in (f"pm_any{f}", f"pm_ip{f}", f"pm_snat{f}", f"pm_masq{f}"):
            kind = "map" if name.startswith(("pm_any", "pm_ip")) else "set"
            for val, comment in libnft.elements("inet", TABLE, name, kind=kind) or []:
                hit = (
                    (comment == tag)
                    if tag is not None
                    else (comment.startswith(f"{net_prefix}:") and comment not in keep)
                )
                if hit:
                    found.append((f"{name} {{ {_render(val)} }}", comment))
    return found


def del_portmaps(
    owner: Owner,
    mappings: Sequence[PortMapping] | None,
    ips: Sequence[Addr] | None,
    *,
    snat: bool | None = None,
    masq_all: bool | None = None,
) -> None:
    """Remove the owner's entries; by key when mappings and IPs are known, else by tag.

    ``snat``/``masq_all`` are the flags the entries were added with (DEL gets ADD's
    config); None means unknown. Why they matter: deleting an element that is not
    there fails the whole nft transaction, and the element-by-element retry costs
    a cache rebuild per element (~30 ms instead of ~1 ms).
    """
    if mappings is not None and ips:
        cmds = []
        for ip in ips:
            f = _fam(ip)
            for m in mappings:
                if m.host_ip is not None and m.host_ip.version != ip.version:
                    continue
                kind, key = _key(m)
                cmds.append(f"pm_{kind}{f} {{ {key} }}")
            if snat is not False:
                cmds.append(f"pm_snat{f} {{ {ip} }}")
            if masq_all is not False:
                cmds.append(f"pm_masq{f} {{ {ip} }}")
    else:
        cmds = [k for k, _ in _owned_entries(owner.tag)]
    _delete(cmds)


def _delete(entries: list[str]) -> None:
    if not entries:
        return
    try:
        libnft.run("\n".join(f"delete element inet {TABLE} {e}" for e in entries))
    except libnft.NftError:
        for e in entries:  # one missing entry fails the whole transaction
            try:
                libnft.run(f"delete element inet {TABLE} {e}")
            except libnft.NftError as err:
                if not err.enoent:
                    raise


def check_portmaps(owner: Owner, mappings: Sequence[PortMapping], ips: Sequence[Addr]) -> None:
    for ip in ips:
        for m in mappings:
            if m.host_ip is not None and m.host_ip.version != ip.version:
                continue
            kind, key = _key(m)
            if not _exists(f"pm_{kind}{_fam(ip)}", key):
                raise NotFound(
                    f"port mapping {m.host_port}/{m.protocol} of "
                    f"{owner.container_id} is missing"
                )


def gc_portmaps(network: str, valid: Collection[tuple[str, str]]) -> None:
    keep = {Owner(network, cid, ifn).tag for cid, ifn in valid}
    _delete([k for k, _ in _owned_entries(None, network_tag(network), keep)])


def drop_subnets(network: str, subnets: Sequence[Net] | None = None) -> None:
    """Remove the network's subnet elements (hairpin SNAT), left by every DEL: those
    of ``subnets``, or all it tagged. (The set holds one element per subnet.)"""
    tag = network_tag(network)
    want = None if subnets is None else {str(sub) for sub in subnets}
    entries = []
    for f in ("4", "6"):
        for val, comment in libnft.elements("inet", TABLE, f"pm_subnets{f}") or []:
            key = _render(val)
            if comment == tag and (want is None or key in want):
                entries.append(f"pm_subnets{f} {{ {key} }}")
    _delete(entries)
