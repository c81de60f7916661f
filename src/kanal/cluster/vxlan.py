"""One VXLAN device per overlay network on a host, and the entries it needs.

An overlay network spans hosts as one L2 segment (Docker-overlay style): on each
host the network's bridge holds the local containers' veths and the network's
VXLAN device (VNI per network, UDP 4789, ``local`` = the host's advertise
address, learning off, MTU = underlay MTU - 50). What a host programs for the
*remote* endpoints of the network (docs/overlay.md, "What goes on each host"):

- FDB ``<endpoint mac> → <its host's vtep>`` and, per remote host with endpoints
  in the network, ``00:00:00:00:00:00 → <vtep>`` (broadcast / unknown unicast);
- a permanent neighbour ``<endpoint ip> → <endpoint mac>`` on the VXLAN device,
  which (``proxy``) answers the containers' ARP locally;
- with ``host_routes``, a ``/32`` (``/128``) route per remote endpoint through the
  VXLAN device, for hosts whose bridge has no address in the subnet.

API:

- :class:`OverlayLink` — one network's device on this host (name, VNI, bridge,
  local address, MTU); :func:`device_name`, :func:`overlay_mtu`.
- :class:`EndpointRecord` — ``overlay/<net>/endpoints/<id>`` = ``{ip, mac, host,
  vtep, name, aliases}``, with ``to_json``/``from_json``; :func:`endpoint_key`.
- :func:`desired_entries` (pure) — the entries for a network from its endpoint
  records and the live hosts; :func:`diff` (pure) — what to add and remove given
  what the kernel has; :class:`Desired`, :class:`Changes`; :class:`Tally` (pure)
  — the same entries counted (a host's flood entry is wanted by each of its
  endpoints), so that one endpoint coming or going gives its changes without
  looking at the others (:func:`contribution`).
- :func:`ensure_device` / :func:`delete_device` — create (idempotent, adopts a
  matching device) / delete the VXLAN device in a namespace.
- :func:`apply` — read the device's entries, diff, apply (adds: FDB and neighbours
  before routes; removals: routes first), return the :class:`Changes` made;
  :func:`apply_changes` — apply given changes (the agent's incremental path: the
  difference from what it programmed last, no kernel dump).
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from kanal.errors import DecodeError, InvalidConfig
from kanal.netlink.vxlan import (
    FLOOD_MAC,
    VXLAN_PORT,
    FdbEntry,
    NeighEntry,
    RouteEntry,
    VxlanNetlink,
)

__all__ = [
    "VXLAN_OVERHEAD",
    "Changes",
    "Desired",
    "EndpointRecord",
    "OverlayLink",
    "Tally",
    "apply",
    "apply_changes",
    "contribution",
    "delete_device",
    "desired_entries",
    "device_name",
    "diff",
    "endpoint_key",
    "ensure_device",
    "overlay_mtu",
]

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8


def overlay_mtu(underlay_mtu: int) -> int:
    return underlay_mtu - VXLAN_OVERHEAD


def device_name(vni: int) -> str:
    """The VXLAN device name for a VNI: ``kvx<vni>`` (≤ 15 characters)."""
    if not 0 < vni < 1 << 24:
        raise InvalidConfig(f"VNI {vni} out of range 1..16777215")
    return f"kvx{vni}"


def endpoint_key(network: str, endpoint_id: str) -> str:
    return f"overlay/{network}/endpoints/{endpoint_id}"


@dataclass(frozen=True)
class OverlayLink:
    network: str
    vni: int
    bridge: str
    local: str  # the host's advertise (underlay) address
    mtu: int  # the overlay MTU (underlay - 50)
    device: str = ""  # default device_name(vni)
    port: int = VXLAN_PORT
    owner: str = ""  # the alias marking kanal's device (kanal:net:<network id>)

    @property
    def name(self) -> str:
        return self.device or device_name(self.vni)


@dataclass(frozen=True)
class EndpointRecord:
    """``name``/``aliases``: what the embedded DNS of other hosts answers for it."""

    ip: str
    mac: str
    host: str
    vtep: str
    name: str = ""
    aliases: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes) -> EndpointRecord:
        try:
            d = json.loads(raw)
            return EndpointRecord(
                str(d["ip"]),
                str(d["mac"]).lower(),
                str(d["host"]),
                str(d.get("vtep", "")),
                str(d.get("name", "")),
                tuple(str(a) for a in d.get("aliases") or ()),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise DecodeError("invalid endpoint record", str(e)) from e


@dataclass(frozen=True)
class Desired:
    fdb: frozenset[FdbEntry] = frozenset()
    neigh: frozenset[NeighEntry] = frozenset()
    routes: frozenset[RouteEntry] = frozenset()


@dataclass
class Changes:
    add_fdb: list[FdbEntry] = field(default_factory=list)
    del_fdb: list[FdbEntry] = field(default_factory=list)
    set_neigh: list[NeighEntry] = field(default_factory=list)
    del_neigh: list[NeighEntry] = field(default_factory=list)
    add_routes: list[RouteEntry] = field(default_factory=list)
    del_routes: list[RouteEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.add_fdb) + len(self.del_fdb) + len(self.set_neigh) + len(self.del_neigh)

    def __bool__(self) -> bool:
        parts = (self.add_fdb, self.del_fdb, self.set_neigh, self.del_neigh)
        return any(parts) or bool(self.add_routes or self.del_routes)


def contribution(
    ep: EndpointRecord,
    live_vteps: Mapping[str, str],
    me: str,
    *,
    host_routes: bool = False,
) -> Desired:
    """The entries one endpoint needs on this host (``me``): none for one of ours or of
    a host that is not live, else its FDB entry, its host's flood entry, its
    neighbour (and with ``host_routes`` its /32 or /128). Pure."""
    if ep.host == me or ep.host not in live_vteps:
        return Desired()
    vtep = live_vteps[ep.host] or ep.vtep
    if not vtep:
        return Desired()
    routes: frozenset[RouteEntry] = frozenset()
    if host_routes:
        ip = ipaddress.ip_address(ep.ip)
        routes = frozenset({RouteEntry(f"{ip}/{ip.max_prefixlen}", "")})
    return Desired(
        frozenset({FdbEntry(ep.mac, vtep), FdbEntry(FLOOD_MAC, vtep)}),
        frozenset({NeighEntry(ep.ip, ep.mac)}),
        routes,
    )


def desired_entries(
    endpoints: Iterable[EndpointRecord],
    live_vteps: Mapping[str, str],
    me: str,
    *,
    host_routes: bool = False,
) -> Desired:
    """The entries this host (``me``) needs for one network. Pure.

    ``live_vteps``: host name → advertise address of every registered host; an
    endpoint of a host not in it (dead, or never registered) gets nothing, so a
    dead host's entries go as soon as its node key does. The node's address wins
    over the record's ``vtep`` (a host that moved keeps working).
    """
    fdb: set[FdbEntry] = set()
    neigh: set[NeighEntry] = set()
    routes: set[RouteEntry] = set()
    for ep in endpoints:
        d = contribution(ep, live_vteps, me, host_routes=host_routes)
        fdb |= d.fdb
        neigh |= d.neigh
        routes |= d.routes
    return Desired(frozenset(fdb), frozenset(neigh), frozenset(routes))


class Tally:
    """The desired entries of a network with how many endpoints want each. Pure.

    ``add``/``remove`` one endpoint's :func:`contribution` and record in a
    :class:`Changes` what that changes in the kernel (an entry appears when its
    first endpoint comes, goes with its last); ``finish`` settles neighbours
    whose address another entry still wants (replaced, never deleted). The
    cost is that of the change, not of the network's size.
    """

    def __init__(self) -> None:
        self.fdb: Counter[FdbEntry] = Counter()
        self.neigh: Counter[NeighEntry] = Counter()
        self.routes: Counter[RouteEntry] = Counter()
        self._ips: dict[str, set[NeighEntry]] = {}

    @classmethod
    def of(cls, contributions: Iterable[Desired]) -> Tally:
        t, ch = cls(), Changes()
        for d in contributions:
            t.add(d, ch)
        return t

    def add(self, d: Desired, ch: Changes) -> None:
        for f in d.fdb:
            self.fdb[f] += 1
            if self.fdb[f] == 1:
                ch.add_fdb.append(f)
        for n in d.neigh:
            self.neigh[n] += 1
            if self.neigh[n] == 1:
                self._ips.setdefault(n.ip, set()).add(n)
                ch.set_neigh.append(n)
        for r in d.routes:
            self.routes[r] += 1
            if self.routes[r] == 1:
                ch.add_routes.append(r)

    def remove(self, d: Desired, ch: Changes) -> None:
        for f in d.fdb:
            if self._drop(self.fdb, f):
                ch.del_fdb.append(f)
        for n in d.neigh:
            if self._drop(self.neigh, n):
                held = self._ips.get(n.ip, set())
                held.discard(n)
                if not held:
                    self._ips.pop(n.ip, None)
                ch.del_neigh.append(n)
        for r in d.routes:
            if self._drop(self.routes, r):
                ch.del_routes.append(r)

    @staticmethod
    def _drop(c: Counter[Any], key: Any) -> bool:
        if c[key] <= 0:
            c.pop(key, None)
            return False
        c[key] -= 1
        if c[key]:
            return False
        del c[key]
        return True

    def finish(self, ch: Changes) -> Changes:
        """A removed neighbour whose address is still wanted (its MAC changed, or two
        records claim it) is not deleted: the one still wanted is set instead."""
        keep = []
        for n in ch.del_neigh:
            still = self._ips.get(n.ip)
            if still:
                if not any(x.ip == n.ip for x in ch.set_neigh):
                    ch.set_neigh.append(min(still, key=_nkey))
            else:
                keep.append(n)
        ch.del_neigh = keep
        for f in list(ch.add_fdb):  # added and removed in one go: nothing to do
            if f in ch.del_fdb and self.fdb[f]:
                ch.del_fdb.remove(f)
        return ch

    def desired(self) -> Desired:
        return Desired(frozenset(self.fdb), frozenset(self.neigh), frozenset(self.routes))


def diff(
    want: Desired,
    fdb: Iterable[FdbEntry],
    neigh: Iterable[NeighEntry],
    routes: Iterable[RouteEntry],
) -> Changes:
    """What turns the kernel's entries into ``want``. Pure.

    Every ``self`` FDB entry and permanent neighbour on the device is ours (the
    device is ours and does not learn), so extras are removed.
    """
    have_fdb, have_neigh, have_routes = set(fdb), set(neigh), set(routes)
    want_neigh_ip = {n.ip: n for n in want.neigh}
    return Changes(
        add_fdb=sorted(want.fdb - have_fdb, key=_fkey),
        del_fdb=sorted(have_fdb - want.fdb, key=_fkey),
        set_neigh=sorted(want.neigh - have_neigh, key=_nkey),
        # a neighbour whose MAC changed is replaced, not deleted
        del_neigh=sorted(
            (n for n in have_neigh - want.neigh if n.ip not in want_neigh_ip), key=_nkey
        ),
        add_routes=sorted(want.routes - have_routes, key=lambda r: r.dst),
        del_routes=sorted(have_routes - want.routes, key=lambda r: r.dst),
    )


def _fkey(f: FdbEntry) -> tuple[str, str]:
    return f.mac, f.dst


def _nkey(n: NeighEntry) -> tuple[str, str]:
    return n.ip, n.mac


def ensure_device(link: OverlayLink, netns_fd: int | None = None) -> int:
    """Create (or adopt) the network's VXLAN device on ``link.bridge``; its ifindex.

    The bridge must exist. Raises Conflict (a device of that name with another VNI,
    local address or port), kanal.netlink LinkNotFound (no bridge).
    """
    with VxlanNetlink(netns_fd) as nl:
        idx, _ = nl.ensure_vxlan(
            link.name,
            vni=link.vni,
            local=link.local,
            mtu=link.mtu,
            bridge=link.bridge,
            port=link.port,
            l3miss=True,  # the agent answers requests it has no entry for yet
            owner=link.owner,
        )
        return idx


def delete_device(link: OverlayLink, netns_fd: int | None = None) -> bool:
    """Delete the network's VXLAN device (its entries go with it); False if absent
    (or, when the link names an owner, not carrying that mark)."""
    with VxlanNetlink(netns_fd) as nl:
        if link.owner:
            return nl.del_owned_link(link.name, link.owner)
        return nl.del_link(link.name)


def apply(device: str, want: Desired, netns_fd: int | None = None) -> Changes:
    """Make the device's entries exactly ``want``; returns what was changed.

    Raises kanal.netlink LinkNotFound when the device is gone (re-create it).
    """
    with VxlanNetlink(netns_fd) as nl:
        idx = nl.index(device)
        ch = diff(want, nl.fdb(idx), nl.neighbours(idx), nl.device_routes(idx))
        _apply(nl, idx, ch)
        return ch


def apply_changes(
    device: str, ch: Changes, netns_fd: int | None = None, nl: VxlanNetlink | None = None
) -> None:
    """Apply ``ch`` (computed against what was programmed before) without reading
    the device's entries back, on ``nl`` if given (a caller's long-lived socket).
    Raises LinkNotFound when the device is gone."""
    if not ch:
        return
    if nl is not None:
        _apply(nl, nl.index(device), ch)
        return
    with VxlanNetlink(netns_fd) as own:
        _apply(own, own.index(device), ch)


def _apply(nl: VxlanNetlink, idx: int, ch: Changes) -> None:
    for r in ch.del_routes:
        nl.route_del(idx, r.dst)
    for f in ch.add_fdb:
        nl.fdb_append(idx, f.mac, f.dst)
    for n in ch.set_neigh:
        nl.neigh_replace(idx, n.ip, n.mac)
    for r in ch.add_routes:  # last: its next hop is resolvable by now (flannel's order)
        nl.route_replace(idx, r.dst, r.via)
    for n in ch.del_neigh:
        nl.neigh_del(idx, n.ip)
    for f in ch.del_fdb:
        nl.fdb_del(idx, f.mac, f.dst)
