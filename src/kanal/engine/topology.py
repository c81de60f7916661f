"""The topology as it is: the store's networks, endpoints and sandboxes, each matched
with what the kernel has (``GET /topology``, drawn by ``kanal graph``).

Read only. Every object carries a ``State``: ``ok``, or why the kernel and the
store disagree (``missing``: the store has it, the kernel does not; ``kernel
only``: the kernel has something kanal marked that the store does not know; or a
difference). ``Drift`` lists every disagreement as one line. Kernel reads are in
kanald's namespace (bridges, veths, macvlan parents, VXLAN devices and their FDB)
and in each sandbox's (its interfaces and their addresses).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kanal.errors import KanalError
from kanal.netlink.handle import Link, Netlink
from kanal.netlink.ns import open_netns

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.model import Endpoint, Network
    from kanal.engine.sandboxes import SandboxManager

__all__ = ["topology"]

OK = "ok"
MISSING = "missing"


def topology(
    ctrl: Controller, manager: SandboxManager | None, networks: Iterable[str] = ()
) -> dict[str, Any]:
    """The model (JSON-able). ``networks``: names or ids to keep (default: all)."""
    wanted = [ctrl.get_network(ref) for ref in networks]
    nets = wanted or [n for n in ctrl.networks() if not n.driver_state.get("deleting")]
    net_ids = {n.id for n in nets}
    eps = [ep for ep in ctrl.endpoints() if ep.network_id in net_ids]
    drift: list[str] = []
    with Netlink() as nl:
        links = nl.links()
        by_name = {ln.name: ln for ln in links}
        addrs = {ln.index: [str(a.interface) for a in nl.addrs(ln.index)] for ln in links}
    ep_ids = {ep.id for ep in ctrl.endpoints()}
    out_nets = [_network(ctrl, n, eps, links, by_name, addrs, drift) for n in nets]
    if not wanted:  # links kanal marked for networks or endpoints the store does not know
        all_nets = {n.id for n in ctrl.networks()}
        for ln in links:
            owner = ln.alias.partition(":")[2].partition(":")[2]
            if ln.alias.startswith("kanal:net:") and owner not in all_nets:
                drift.append(f"link {ln.name} is marked for network {owner[:12]}, not in the store")
            elif ln.alias.startswith("kanal:ep:") and owner not in ep_ids:
                drift.append(
                    f"link {ln.name} is marked for endpoint {owner[:12]}, not in the store"
                )
    sandboxes = _sandboxes(ctrl, manager, nets, eps, by_name, drift, with_empty=not wanted)
    return {
        "Host": socket.gethostname(),
        "Networks": out_nets,
        "Sandboxes": sandboxes,
        "Drift": drift,
    }


def _network(
    ctrl: Controller,
    net: Network,
    eps: list[Endpoint],
    links: list[Link],
    by_name: dict[str, Link],
    addrs: dict[int, list[str]],
    drift: list[str],
) -> dict[str, Any]:
    st = net.driver_state
    out: dict[str, Any] = {
        "Id": net.id,
        "Name": net.name,
        "Driver": net.driver,
        "Scope": net.scope,
        "Internal": net.internal,
        "Subnets": [{"Subnet": c.subnet, "Gateway": c.gateway} for c in net.ipam if c.subnet],
        "Device": None,
        "Parent": None,
        "Vxlan": None,
        "Stray": [],
    }
    bridge = st.get("bridge") if net.driver in ("bridge", "overlay", "ovs") else None
    if bridge:
        link = by_name.get(bridge)
        kind = "ovs" if net.driver == "ovs" else "bridge"
        # An OVS bridge on the userspace datapath has no kernel link: not checked here.
        state = OK if link is not None or kind == "ovs" else MISSING
        out["Device"] = {
            "Name": bridge,
            "Kind": kind,
            "State": state,
            "Addresses": addrs.get(link.index, []) if link is not None else [],
        }
        if state == MISSING:
            drift.append(f"{kind} {bridge} of network {net.name} is missing")
        elif link is not None and kind == "bridge":
            veths = {str(ep.driver_state.get("host_veth")) for ep in eps if ep.network_id == net.id}
            for ln in links:
                if ln.master == link.index and ln.kind != "vxlan" and ln.name not in veths:
                    if ln.alias == "kanal:reap":
                        continue
                    out["Stray"].append({"Name": ln.name, "Kind": ln.kind, "State": "kernel only"})
                    drift.append(f"port {ln.name} of {bridge} belongs to no endpoint")
    if net.driver == "macvlan":
        parent = st.get("parent") or ""
        present = bool(parent) and parent in by_name
        out["Parent"] = {
            "Name": parent or "(default route's link)",
            "State": OK if present or not parent else MISSING,
        }
        if parent and not present:
            drift.append(f"macvlan parent {parent} of network {net.name} is missing")
    if net.driver == "overlay" and st.get("vni"):
        out["Vxlan"] = _vxlan(ctrl, net, by_name, drift)
    return out


def _vxlan(
    ctrl: Controller, net: Network, by_name: dict[str, Link], drift: list[str]
) -> dict[str, Any]:
    """The network's VXLAN device and remote VTEPs: the kernel's FDB against the
    cluster's endpoint records (other hosts' endpoints)."""
    # lazy: only overlay networks (a cluster) need the VXLAN layer
    from kanal.cluster.vxlan import device_name
    from kanal.netlink.vxlan import vxlan_netlink

    name = device_name(int(net.driver_state["vni"]))
    link = by_name.get(name)
    out: dict[str, Any] = {
        "Name": name,
        "Vni": int(net.driver_state["vni"]),
        "State": OK if link is not None else MISSING,
        "Vteps": [],
    }
    kernel: dict[str, int] = {}
    if link is None:
        drift.append(f"vxlan {name} of network {net.name} is missing")
    else:
        with vxlan_netlink() as vx:
            for e in vx.fdb(link.index):  # the all-zero MAC: the VTEP's flood entry
                kernel[e.dst] = kernel.get(e.dst, 0) + (e.mac != "00:00:00:00:00:00")
    store: dict[str, str] = {}  # vtep -> host
    cluster = ctrl.cluster
    if cluster is not None:
        for r in cluster.agent.endpoints(net.id):
            if r.host != cluster.node:
                store[r.vtep] = r.host
    for vtep in sorted(set(kernel) | set(store)):
        state = OK
        if vtep not in kernel and link is not None:
            state = MISSING
            drift.append(f"remote VTEP {vtep} of {net.name} is not in {name}'s FDB")
        elif vtep not in store:
            state = "kernel only"
            drift.append(f"{name}'s FDB sends to {vtep}, which has no endpoint of {net.name}")
        out["Vteps"].append(
            {"Addr": vtep, "Host": store.get(vtep, ""), "Macs": kernel.get(vtep, 0), "State": state}
        )
    return out


def _sandboxes(
    ctrl: Controller,
    manager: SandboxManager | None,
    nets: list[Network],
    eps: list[Endpoint],
    by_name: dict[str, Link],
    drift: list[str],
    *,
    with_empty: bool,
) -> list[dict[str, Any]]:
    names = {n.id: n for n in nets}
    sbs = {sb.id: sb for sb in manager.list_all()} if manager is not None else {}
    by_sb: dict[str, list[Endpoint]] = {}
    for ep in eps:
        by_sb.setdefault(ep.sandbox_id, []).append(ep)
    out = []
    for sid in sorted(set(by_sb) | (set(sbs) if with_empty else set())):
        sb = sbs.get(sid)
        mine = by_sb.get(sid, [])
        netns = sb.netns if sb is not None else (mine[0].netns if mine else "")
        entry: dict[str, Any] = {
            "Id": sid,
            "Name": sb.name if sb is not None else (mine[0].name if mine else sid[:12]),
            "State": sb.state if sb is not None else "external",
            "Netns": netns,
            "Interfaces": [],
        }
        kernel = _netns_links(netns)
        if kernel is None and mine:
            drift.append(f"namespace {netns} of {entry['Name']} is missing")
        for ep in mine:
            iface = _interface(ep, names[ep.network_id], kernel, by_name, drift)
            entry["Interfaces"].append(iface)
        out.append(entry)
    return out


def _netns_links(path: str) -> dict[str, tuple[Link, list[str]]] | None:
    """A namespace's links with their addresses, by name (None: cannot be entered)."""
    if not path or not os.path.exists(path):
        return None
    try:
        fd = open_netns(path)
    except KanalError:
        return None
    try:
        with Netlink(fd) as nl:
            return {
                ln.name: (ln, [str(a.interface) for a in nl.addrs(ln.index)]) for ln in nl.links()
            }
    except (KanalError, OSError):
        return None
    finally:
        os.close(fd)


def _interface(
    ep: Endpoint,
    net: Network,
    kernel: dict[str, tuple[Link, list[str]]] | None,
    by_name: dict[str, Link],
    drift: list[str],
) -> dict[str, Any]:
    want = [a for a in (ep.ipv4, ep.ipv6) if a]
    have = kernel.get(ep.ifname) if kernel is not None else None
    state = OK
    if have is None:
        state = MISSING
        drift.append(f"interface {ep.ifname} of {ep.name} on {net.name} is missing")
    elif missing := [a for a in want if a not in have[1]]:
        state = "addresses differ"
        drift.append(f"{ep.name}'s {ep.ifname} lacks {', '.join(missing)} ({net.name})")
    iface: dict[str, Any] = {
        "Network": net.id,
        "NetworkName": net.name,
        "Name": ep.ifname,
        "Kind": have[0].kind if have is not None else "",
        "Mac": ep.mac,
        "Addresses": want,
        "KernelAddresses": [a for a in have[1] if not a.startswith("fe80:")] if have else [],
        "Aliases": list(ep.aliases),
        "Ports": [
            f"{p.host_ip or '0.0.0.0'}:{p.host_port}->{p.container_port}/{p.protocol}"
            for p in ep.ports
        ],
        "State": state,
        "HostVeth": None,
    }
    veth = ep.driver_state.get("host_veth")
    if veth:
        link = by_name.get(str(veth))
        bridge = by_name.get(str(net.driver_state.get("bridge", "")))
        vstate = OK
        if link is None:
            vstate = MISSING
            drift.append(f"veth {veth} of {ep.name} on {net.name} is missing")
        elif net.driver != "ovs" and bridge is not None and link.master != bridge.index:
            vstate = f"not on {bridge.name}"
            drift.append(f"veth {veth} of {ep.name} is not on {bridge.name}")
        iface["HostVeth"] = {"Name": str(veth), "State": vstate}
    return iface
