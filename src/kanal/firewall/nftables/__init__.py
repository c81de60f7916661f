"""kanal's nftables backend: one table, ``inet kanal``, per-container entries in sets.

This package is everything that speaks nftables (docs/firewall.md):

- this module: :class:`NftablesBackend` and its masquerade (below);
- :mod:`.libnft`: nft commands through libnftables (or the ``nft`` binary), one
  transaction each, and :class:`~.libnft.Skeleton`, a table's fixed part;
- :mod:`.nfnl`: nf_tables over raw netlink, for the per-container elements a
  plugin exec writes (no libnftables load);
- :mod:`.portmap`, :mod:`.fwplugin`: the backend's port mappings and firewall
  plugin rules; :mod:`.netpolicy`: the network manager's per-network isolation;
  :mod:`.spoofchk`: the bridge's MAC spoof check (``bridge kanal``);
  :mod:`.gotable`: removing what the Go plugins wrote in their own table.

Masquerade is three set lookups in one base chain, not a rule per container::

    table inet kanal {
        set masq4 { type ipv4_addr; }                              # container IPs (hash)
        set skip4 { type ipv4_addr . ipv4_addr; flags interval; }  # subnet . subnet
        chain postrouting {
            type nat hook postrouting priority srcnat; policy accept;
            ip saddr . ip daddr @skip4 return       # inside its own subnet
            ip daddr 224.0.0.0/4 return             # multicast
            ip saddr @masq4 masquerade
        }
    }

(and the same for IPv6 with ff00::/8). ``masq4`` holds one element per container
IP, tagged with its owner; it is a hash set, so adding or removing one costs the
same with 1 or 10,000 attached (~0.2 ms here). ``skip4`` holds one element per
subnet, tagged with the network: nft checks interval sets for overlaps by reading
every element, so they must stay small. Subnet elements are shared and only
removed by GC once no container address lies in them.
"""

from __future__ import annotations

import _thread
import errno
import ipaddress

from kanal.errors import NotFound
from kanal.firewall.intents import Masquerade, Owner, network_tag
from kanal.firewall.nftables import libnft, nfnl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from typing import Any

    from kanal.firewall.intents import ForwardAccept, PortMaps

    Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
    Net = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["TABLE", "NftablesBackend"]

TABLE = "kanal"

_RULES = f"""add table inet {TABLE}
add set inet {TABLE} masq4 {{ type ipv4_addr; }}
add set inet {TABLE} masq6 {{ type ipv6_addr; }}
add set inet {TABLE} skip4 {{ type ipv4_addr . ipv4_addr; flags interval; }}
add set inet {TABLE} skip6 {{ type ipv6_addr . ipv6_addr; flags interval; }}
add chain inet {TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
flush chain inet {TABLE} postrouting
add rule inet {TABLE} postrouting ip saddr . ip daddr @skip4 return comment "{{marker}}"
add rule inet {TABLE} postrouting ip6 saddr . ip6 daddr @skip6 return
add rule inet {TABLE} postrouting ip daddr 224.0.0.0/4 return
add rule inet {TABLE} postrouting ip6 daddr ff00::/8 return
add rule inet {TABLE} postrouting ip saddr @masq4 masquerade
add rule inet {TABLE} postrouting ip6 saddr @masq6 masquerade
"""
# The first rule is marked with the skeleton's hash: a plugin process finds the
# table current with one netlink read and adds its elements directly (kanal.firewall
# .nfnl), without libnftables.
_MARKER = nfnl.marker(_RULES)
_SKELETON = _RULES.replace("{marker}", _MARKER)
_ELEMENT_PATTERN = r'elements = \{ (.*?)(?: comment "([^"]*)")? \}'


def _fam(ip: Addr) -> str:
    return "4" if ip.version == 4 else "6"


class NftablesBackend:
    """Every intent as set and map elements in ``inet kanal`` (a FirewallBackend)."""

    name = "nftables"

    def __init__(self) -> None:
        self._ready: set[tuple[int, int]] = set()
        self._lock = _thread.allocate_lock()

    def available(self) -> bool:
        return libnft.available()

    def _ensure_table(self, force: bool = False) -> None:
        key = libnft._netns_key()
        if key in self._ready and not force:
            return
        with self._lock:
            # Creating the sets/chain is idempotent; flushing and re-adding the
            # fixed rules in the same transaction keeps them from duplicating.
            libnft.run(_SKELETON)
            self._ready.add(key)

    def add_masquerade(self, rules: Sequence[Masquerade]) -> None:
        if not rules:
            return
        cmds = []
        fresh: list[nfnl.Op] = []  # the usual case: no element of that address yet
        retag: list[nfnl.Op] = []
        for r in rules:
            f, tag, net = _fam(r.ip), r.owner.tag, network_tag(r.owner.network)
            key = f"{r.subnet} . {r.subnet}"
            cmds.append(f'add element inet {TABLE} skip{f} {{ {key} comment "{net}" }}')
            # add, delete, add: the element ends up carrying this owner's tag even if
            # a stale one existed, without reading the set (reads cost O(elements)).
            cmds.append(f"add element inet {TABLE} masq{f} {{ {r.ip} }}")
            cmds.append(f"delete element inet {TABLE} masq{f} {{ {r.ip} }}")
            cmds.append(f'add element inet {TABLE} masq{f} {{ {r.ip} comment "{tag}" }}')
            first, last = nfnl.prefix_range(r.subnet)
            ip = nfnl.ip_key(r.ip)
            skip: nfnl.Op = ("add", f"skip{f}", first + first, last + last, net)
            fresh += [skip, ("create", f"masq{f}", ip, None, tag)]
            retag += [
                skip,
                ("add", f"masq{f}", ip, None, None),
                ("delete", f"masq{f}", ip, None, None),
                ("add", f"masq{f}", ip, None, tag),
            ]
        netns = libnft._netns_key()
        if netns in self._ready or nfnl.has_marker("inet", TABLE, "postrouting", _MARKER):
            # Packed here (no libnftables load and parse). Without a delete when the
            # address has no element yet: a delete makes the next close of a netfilter
            # socket (the process's exit) wait for an RCU grace period.
            try:
                try:
                    nfnl.elements("inet", TABLE, fresh)
                except nfnl.NfnlError as e:
                    if e.errno != errno.EEXIST:
                        raise
                    nfnl.elements("inet", TABLE, retag)
                self._ready.add(netns)
                return
            except nfnl.NfnlError:
                self._ready.discard(netns)  # deleted under us? libnftables decides below
        if netns not in self._ready:
            # The table's first use in this process: skeleton and elements in one
            # transaction, one parse and one commit rather than two.
            with self._lock:
                libnft.run(_SKELETON + "\n".join(cmds))
                self._ready.add(netns)
            return
        try:
            libnft.run("\n".join(cmds))
        except libnft.NftError as e:
            if not e.enoent:
                raise
            self._ensure_table(force=True)  # someone deleted the table under us
            libnft.run("\n".join(cmds))

    def _elements(self, set_name: str) -> list[tuple[str, str]]:
        """(element text, comment) of a set; [] when the table is absent."""
        return [(_render(v), c) for v, c in libnft.elements("inet", TABLE, set_name) or []]

    def _owned(self, tag: str) -> list[str]:
        """Delete commands for every container element tagged ``tag`` (a full scan)."""
        return [
            f"delete element inet {TABLE} {set_name} {{ {text} }}"
            for set_name in ("masq4", "masq6")
            for text, comment in self._elements(set_name)
            if comment == tag
        ]

    def del_masquerade(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None:
        """With ``ips`` (from the cached result) a blind delete, O(1); without, a scan.

        Callers remove masquerade before releasing the addresses, so an address
        named here cannot yet belong to another container.
        """
        if ips is None:
            cmds = self._owned(owner.tag)
        else:
            if nfnl.usable():
                ops: list[nfnl.Op] = [
                    ("delete", f"masq{_fam(ip)}", nfnl.ip_key(ip), None, None) for ip in ips
                ]
                try:
                    nfnl.delete_elements("inet", TABLE, ops)
                    return
                except nfnl.NfnlError:
                    pass  # libnftables says what is wrong
            cmds = [f"delete element inet {TABLE} masq{_fam(ip)} {{ {ip} }}" for ip in ips]
        self._delete(cmds)

    def _get(self, set_name: str, key: str) -> tuple[str, str] | None:
        return get_element(set_name, key)

    def drop_subnets(self, network: str, subnets: Sequence[Net]) -> None:
        """Remove the own-subnet skip entries of ``network`` (tagged by it) for
        ``subnets``: once its last container left, nothing needs them."""
        # (Read whole: "get element" does not show an interval element's comment;
        # these sets hold one element per subnet, so they stay small.)
        tag = network_tag(network)
        want = {f"{sub} . {sub}" for sub in subnets}
        cmds = [
            f"delete element inet {TABLE} {name} {{ {text} }}"
            for name in {f"skip{_fam(sub.network_address)}" for sub in subnets}
            for text, comment in self._elements(name)
            if comment == tag and text in want
        ]
        self._delete(cmds)

    def _element_tag(self, set_name: str, key: str) -> str | None:
        found = self._get(set_name, key)
        return found[1] if found else None

    def _delete(self, cmds: list[str]) -> None:
        if not cmds:
            return
        try:
            libnft.run("\n".join(cmds))
        except libnft.NftError:
            # One missing element fails the whole transaction: retry one by one.
            for c in cmds:
                try:
                    libnft.run(c)
                except libnft.NftError as e:
                    if not e.enoent:
                        raise

    def check_masquerade(self, rules: Sequence[Masquerade]) -> None:
        for r in rules:
            f = _fam(r.ip)
            if self._element_tag(f"masq{f}", str(r.ip)) != r.owner.tag:
                raise NotFound(
                    f"masquerade entry for {r.ip} of {r.owner.container_id} "
                    f"missing from table inet {TABLE}"
                )

    def gc_masquerade(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        keep = {Owner(network, cid, ifn).tag for cid, ifn in valid}
        prefix = network_tag(network)
        cmds, remaining = [], []
        for set_name in ("masq4", "masq6"):
            for text, comment in self._elements(set_name):
                if comment.startswith(prefix + ":") and comment not in keep:
                    cmds.append(f"delete element inet {TABLE} {set_name} {{ {text} }}")
                else:
                    remaining.append(ipaddress.ip_address(text))
        # A subnet element goes once no container address at all lies inside it.
        for set_name in ("skip4", "skip6"):
            for text, comment in self._elements(set_name):
                subnet = ipaddress.ip_network(text.split(" . ")[0], strict=False)
                if comment == prefix and not any(ip in subnet for ip in remaining):
                    cmds.append(f"delete element inet {TABLE} {set_name} {{ {text} }}")
        self._delete(cmds)

    # --- port mappings (kanal.firewall.nftables.portmap) --------------------------

    def add_portmaps(self, pm: PortMaps) -> None:
        from kanal.firewall.nftables import portmap  # lazy: only port-mapping configs

        portmap.add_portmaps(
            pm.owner, pm.mappings, pm.ips, pm.subnets, snat=pm.snat, masq_all=pm.masq_all
        )

    def del_portmaps(
        self, owner: Owner, known: PortMaps | None = None, *, leftovers: bool = False
    ) -> None:
        """By key with ``known`` (its mappings and addresses), else every entry by tag
        (``leftovers`` changes nothing: entries here always carry their owner)."""
        from kanal.firewall.nftables import portmap  # lazy: only port-mapping configs

        if known is not None and known.mappings and known.ips:
            portmap.del_portmaps(
                owner, known.mappings, known.ips, snat=known.snat, masq_all=known.masq_all
            )
        else:
            portmap.del_portmaps(owner, None, None)

    def check_portmaps(self, pm: PortMaps) -> None:
        from kanal.firewall.nftables import portmap  # lazy: only port-mapping configs

        portmap.check_portmaps(pm.owner, pm.mappings, pm.ips)

    def gc_portmaps(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        from kanal.firewall.nftables import portmap  # lazy: only port-mapping configs

        portmap.gc_portmaps(network, valid)

    # --- the firewall plugin's rules (kanal.firewall.nftables.fwplugin) -----------

    def add_forward(self, rule: ForwardAccept) -> None:
        from kanal.firewall.nftables import fwplugin  # lazy: only the firewall plugin

        fwplugin.add_container(rule.owner, rule.ips)

    def del_forward(self, owner: Owner, ips: Sequence[Addr] | None = None) -> None:
        from kanal.firewall.nftables import fwplugin  # lazy: only the firewall plugin

        fwplugin.del_container(owner, ips)

    def check_forward(self, rule: ForwardAccept) -> None:
        from kanal.firewall.nftables import fwplugin  # lazy: only the firewall plugin

        fwplugin.check_container(rule.owner, rule.ips)

    def gc_forward(self, network: str, valid: Collection[tuple[str, str]]) -> None:
        from kanal.firewall.nftables import fwplugin  # lazy: only the firewall plugin

        fwplugin.gc_containers(network, valid)

    def isolate_bridge(self, bridge: str, versions: Sequence[int]) -> None:
        """ingressPolicy same-bridge; one chain for both families (``versions`` unused)."""
        from kanal.firewall.nftables import fwplugin  # lazy: only the firewall plugin

        fwplugin.isolate_bridge(bridge)


def get_element(set_name: str, key: str) -> tuple[str, str] | None:
    """The element of ``set_name`` in kanal's table matching ``key`` (an interval
    contains it) and its comment; None if absent."""
    try:
        out = libnft.run(f"get element inet {TABLE} {set_name} {{ {key} }}")
    except libnft.NftError:
        return None  # absent (or no table): nothing of ours there
    import re  # lazy: CHECK only (re costs a plugin exec ~4 ms)

    m = re.search(_ELEMENT_PATTERN, out)
    return (m.group(1), m.group(2) or "") if m else None


def _render(val: Any) -> str:
    """An element value from nft's JSON back to nft syntax."""
    if isinstance(val, str):
        return val
    if isinstance(val, dict):
        if "concat" in val:
            return " . ".join(_render(v) for v in val["concat"])
        if "prefix" in val:
            return f"{val['prefix']['addr']}/{val['prefix']['len']}"
        if "range" in val:
            lo, hi = val["range"]
            return f"{_render(lo)}-{_render(hi)}"
    return str(val)
