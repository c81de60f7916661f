"""VXLAN devices and the entries an overlay control plane programs on them.

One :class:`VxlanNetlink` is one rtnetlink socket in one namespace (the host's).
Not thread-safe: open one per operation batch and close it (``with``).

What it programs (Docker-overlay style, docs/overlay.md — every entry
permanent, the device made with ``learning off`` so nothing else writes them):

- the device: ``ip link add NAME type vxlan id VNI local ADDR dstport 4789
  nolearning proxy l3miss``, MTU set by the caller (underlay - 50), enslaved to
  the network's bridge, set up (``l3miss``: a request for an address with no
  entry is reported to the control plane, see kanal.netlink.neighmiss);
- FDB (``bridge fdb append MAC dev NAME dst VTEP self permanent``): one per remote
  endpoint MAC, plus ``00:00:00:00:00:00 → VTEP`` per remote host (head-end
  replication of broadcasts and unknown unicast);
- neighbours (``ip neigh replace IP lladdr MAC dev NAME nud permanent``): with
  the device's ``proxy`` flag the kernel answers a container's ARP for a remote
  endpoint locally;
- routes (``ip route replace DST [via GW] dev NAME [onlink]``) for callers that
  route remote blocks rather than bridge them.

Deleting what is not there is success (the reconciler removes idempotently).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from kanal.errors import Conflict
from kanal.netlink.handle import Netlink, _err

__all__ = [
    "FLOOD_MAC",
    "VXLAN_PORT",
    "FdbEntry",
    "NeighEntry",
    "RouteEntry",
    "VxlanNetlink",
    "vxlan_netlink",
]

VXLAN_PORT = 4789  # IANA; the kernel's default without dstport is 8472 (docs/overlay.md)
FLOOD_MAC = "00:00:00:00:00:00"
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


@dataclass(frozen=True)
class FdbEntry:
    """A ``self`` FDB entry on a vxlan device: frames for ``mac`` go to VTEP ``dst``."""

    mac: str
    dst: str


@dataclass(frozen=True)
class NeighEntry:
    ip: str
    mac: str


@dataclass(frozen=True)
class RouteEntry:
    dst: str  # a network, "10.0.1.0/26"
    via: str  # "" for a device route


class VxlanNetlink(Netlink):
    """rtnetlink in the current namespace (``netns_fd=None``) or in ``netns_fd``:
    :class:`~kanal.netlink.handle.Netlink` plus VXLAN devices and their entries."""

    # ---- the device -------------------------------------------------------------
    def index(self, name: str) -> int:
        """The ifindex of ``name``; raises LinkNotFound."""
        try:
            return int(self._ipr.link("get", ifname=name)[0]["index"])
        except NetlinkError as e:
            raise _err(e, f"link {name!r} not found") from e

    def vxlan_info(self, name: str) -> dict[str, Any]:
        """``{"vni", "local", "port", "learning", "proxy", "l3miss", "mtu", "master"}`` of a
        vxlan device."""
        try:
            msg = self._ipr.link("get", ifname=name)[0]
        except NetlinkError as e:
            raise _err(e, f"link {name!r} not found") from e
        info = msg.get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else ""
        if kind != "vxlan":
            raise Conflict(f"{name!r} exists but is not a vxlan device", str(kind))
        data = info.get_attr("IFLA_INFO_DATA")
        return {
            "vni": data.get_attr("IFLA_VXLAN_ID"),
            "local": data.get_attr("IFLA_VXLAN_LOCAL") or "",
            "port": data.get_attr("IFLA_VXLAN_PORT"),
            "learning": data.get_attr("IFLA_VXLAN_LEARNING"),
            "proxy": data.get_attr("IFLA_VXLAN_PROXY"),
            "l3miss": data.get_attr("IFLA_VXLAN_L3MISS"),
            "mtu": msg.get_attr("IFLA_MTU"),
            "master": msg.get_attr("IFLA_MASTER") or 0,
        }

    def ensure_vxlan(
        self,
        name: str,
        *,
        vni: int,
        local: str,
        mtu: int,
        bridge: str = "",
        port: int = VXLAN_PORT,
        proxy: bool = True,
        l3miss: bool = False,
        owner: str = "",
    ) -> tuple[int, bool]:
        """Create (or adopt) the vxlan device, enslave it to ``bridge``, set it up.

        Returns (ifindex, created). An existing device with another VNI, local
        address or port is a Conflict (never silently re-pointed). ``owner`` is
        the alias marking the device as kanal's: set on a new one, and on an
        adopted one that has none (made by kanal just before a crash could set
        it: the same name, VNI, local address and port); one marked by someone
        else is a Conflict. ``l3miss`` is set on an adopted device too (a device made
        before kanal answered misses gets it).
        """
        created = True
        try:
            self._ipr.link(
                "add",
                ifname=name,
                kind="vxlan",
                vxlan_id=vni,
                vxlan_local=local,
                vxlan_port=port,
                vxlan_learning=0,
                vxlan_proxy=1 if proxy else 0,
                vxlan_l3miss=1 if l3miss else 0,
                # No outer UDP checksum over IPv4 (what `ip link add type vxlan` does by
                # default): the inner packet has its own; computing one costs ~15 %.
                vxlan_udp_csum=0,
                mtu=mtu,
            )
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _err(e, f"failed to create vxlan {name!r} (vni {vni})") from e
            created = False
        have = self.vxlan_info(name)
        if (have["vni"], have["local"], have["port"]) != (vni, local, port):
            raise Conflict(
                f"vxlan {name!r} exists with vni {have['vni']} local {have['local']} "
                f"port {have['port']}, want vni {vni} local {local} port {port}"
            )
        idx = self.index(name)
        if owner:
            alias = self._ipr.link("get", index=idx)[0].get_attr("IFLA_IFALIAS") or ""
            if alias and alias != owner:
                raise Conflict(f"vxlan {name!r} belongs to someone else ({alias})")
            if alias != owner:
                self._ipr.link("set", index=idx, ifalias=owner)
        try:
            if have["mtu"] != mtu:
                self._ipr.link("set", index=idx, mtu=mtu)
            if bool(have["l3miss"]) != l3miss:
                self._ipr.link("set", index=idx, kind="vxlan", vxlan_l3miss=1 if l3miss else 0)
            if bridge:
                # The bridge learns remote MACs on this port as on any other: frames
                # to them then go to this port alone instead of being flooded to every
                # local container too. Which host a MAC lives on stays the device's
                # own (etcd-programmed, learning-off) FDB's business.
                self._ipr.link("set", index=idx, master=self.index(bridge))
            self._ipr.link("set", index=idx, state="up")
        except NetlinkError as e:
            raise _err(e, f"failed to set up vxlan {name!r}") from e
        return idx, created

    # ---- FDB ----------------------------------------------------------------------
    def fdb(self, index: int) -> list[FdbEntry]:
        """The ``self`` entries with a destination on device ``index`` (the ones we program)."""
        out = []
        for m in self._dump("fdb", "dump", ifindex=index):
            if m["ifindex"] != index or not m["flags"] & NTF_SELF:
                continue
            dst = m.get_attr("NDA_DST")
            mac = m.get_attr("NDA_LLADDR")
            if dst and mac:
                out.append(FdbEntry(str(mac).lower(), str(dst)))
        return out

    def fdb_append(self, index: int, mac: str, dst: str) -> None:
        try:
            self._ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise _err(e, f"failed to add fdb {mac} dst {dst}") from e

    def fdb_del(self, index: int, mac: str, dst: str) -> bool:
        try:
            self._ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
        except NetlinkError as e:
            if e.code in (errno.ENOENT, errno.ENODEV):
                return False
            raise _err(e, f"failed to delete fdb {mac} dst {dst}") from e
        return True

    # ---- neighbours -----------------------------------------------------------------
    def neighbours(self, index: int) -> list[NeighEntry]:
        """Permanent IPv4/IPv6 neighbour entries on device ``index``."""
        out = []
        for m in self._dump("neigh", "dump", ifindex=index):
            if m["ifindex"] != index or m["family"] not in (socket.AF_INET, socket.AF_INET6):
                continue
            if not m["state"] & NUD_PERMANENT:
                continue
            ip, mac = m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR")
            if ip and mac:
                out.append(NeighEntry(str(ip), str(mac).lower()))
        return out

    def neigh_replace(self, index: int, ip: str, mac: str) -> None:
        try:
            self._ipr.neigh("replace", ifindex=index, dst=ip, lladdr=mac, state=NUD_PERMANENT)
        except NetlinkError as e:
            raise _err(e, f"failed to set neighbour {ip} -> {mac}") from e

    def neigh_del(self, index: int, ip: str) -> bool:
        try:
            self._ipr.neigh("del", ifindex=index, dst=ip)
        except NetlinkError as e:
            if e.code in (errno.ENOENT, errno.ENODEV):
                return False
            raise _err(e, f"failed to delete neighbour {ip}") from e
        return True

    # ---- routes ---------------------------------------------------------------------
    def device_routes(self, index: int) -> list[RouteEntry]:
        """Unicast main-table routes through device ``index`` except the kernel's own."""
        out = []
        for m in self._dump("get_routes", table=254):
            if m.get_attr("RTA_OIF") != index or m["type"] != 1 or m["proto"] == 2:
                continue
            dst = m.get_attr("RTA_DST")
            if dst is None:
                continue
            out.append(RouteEntry(f"{dst}/{m['dst_len']}", str(m.get_attr("RTA_GATEWAY") or "")))
        return out

    def route_replace(self, index: int, dst: str, via: str = "") -> None:
        """``ip route replace DST [via VIA onlink] dev INDEX`` (onlink: the gateway is
        not on a local subnet, it is reached through the vxlan device directly)."""
        net = ipaddress.ip_network(dst, strict=False)
        kw: dict[str, Any] = {"dst": str(net), "oif": index}
        if via:
            kw.update(gateway=via, flags=4)  # RTNH_F_ONLINK
        try:
            self._ipr.route("replace", **kw)
        except NetlinkError as e:
            raise _err(e, f"failed to set route {dst} via {via or '-'}") from e

    def route_del(self, index: int, dst: str) -> bool:
        net = ipaddress.ip_network(dst, strict=False)
        try:
            self._ipr.route("del", dst=str(net), oif=index)
        except NetlinkError as e:
            if e.code in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                return False
            raise _err(e, f"failed to delete route {dst}") from e
        return True


def vxlan_netlink(netns_fd: int | None = None) -> VxlanNetlink:
    """A :class:`VxlanNetlink` to use with ``with``."""
    return VxlanNetlink(netns_fd)
