"""``kanal system check``: the engine's invariants, checked against the store and
the kernel as they are now.

Each finding is one line. What is checked (see docs/crash-safety.md):

- **operations**: no abandoned intent (a half-done operation nobody resolved);
- **store**: every name reservation, endpoint index entry, address and host-port
  reservation belongs to a live sandbox or endpoint; no address or host port is
  held twice; every endpoint's network and sandbox exist;
- **kernel** (kanald's namespace): every network's bridge is there with its
  gateways, every endpoint's veth on it; no link carries the mark of a network or
  endpoint that does not exist, and no port of a kanal bridge belongs to nobody;
  no kanal namespace mount without its sandbox; every nftables element tagged
  for one of the engine's networks belongs to a live endpoint of it;
- **processes**: a running sandbox's process is alive; no process remains in the
  namespace of a sandbox that is not running;
- **files**: no per-sandbox directory or CNI cache entry without its owner;
- **sysctls**: every recorded change is held by a live network.

Findings only: the check changes nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kanal.engine import processes
from kanal.errors import KanalError
from kanal.firewall.intents import Owner, network_tag
from kanal.firewall.nftables import state as nft_state
from kanal.firewall.nftables.state import nft_table
from kanal.netlink.handle import Netlink

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.model import Endpoint, Network
    from kanal.engine.sandboxes import Sandbox, SandboxManager

__all__ = ["check"]

_NETNS = re.compile(r"^kanal-[0-9a-f]{12}$")


@dataclass
class _View:
    """The engine's objects as the store has them, read once per check."""

    ctrl: Controller
    sandboxes: SandboxManager
    nets: dict[str, Network]
    eps: list[Endpoint]
    sbs: dict[str, Sandbox]
    busy: set[str]  # ids an open intent names: their state may be half made


def check(ctrl: Controller, sandboxes: SandboxManager) -> list[str]:
    """Every inconsistency or leak found, one line each ([] when all is well)."""
    out: list[str] = []
    busy = {
        str(v)
        for it in ctrl.journal.open()
        for k, v in it.fields.items()
        if k in ("sandbox", "endpoint")
    }
    v = _View(
        ctrl,
        sandboxes,
        {n.id: n for n in ctrl.networks()},
        ctrl.endpoints(),
        {s.id: s for s in sandboxes.list_all()},
        busy,
    )
    for it in ctrl.journal.abandoned():
        out.append(f"operation: interrupted {it.op} {it.fields} not resolved")
    out += _store(v)
    try:
        out += _kernel(v)
    except KanalError as e:
        out.append(f"kernel: cannot read kernel state: {e}")
    out += _processes(v)
    out += _files(v)
    for key, users in ctrl.ctx.sysctls.claims().items() if ctrl.ctx.sysctls else ():
        for u in users:
            if u not in v.nets:
                out.append(f"sysctl: {key} is held for network {u[:12]}, which does not exist")
    return out


def _store(v: _View) -> list[str]:
    ctrl, nets, eps, sbs, busy = v.ctrl, v.nets, v.eps, v.sbs, v.busy
    out = []
    store = ctrl.store
    by_id = {ep.id: ep for ep in eps}
    for e in store.list("sandbox-names/"):
        name, sid = e.key.removeprefix("sandbox-names/"), e.value.decode()
        if sid not in sbs and sid not in busy:
            out.append(f"store: name {name!r} is held by sandbox {sid[:12]}, which does not exist")
    for sid, sb in sbs.items():
        held = store.get(f"sandbox-names/{sb.name}")
        if held is None or held.value.decode() != sid:
            out.append(f"store: sandbox {sid[:12]} does not hold its name")
    for ep in eps:
        where = f"endpoint {ep.id[:12]} ({ep.name})"
        if ep.network_id not in nets:
            out.append(f"store: {where} is on network {ep.network_id[:12]}, which does not exist")
        if store.get(f"by-sandbox/{ep.sandbox_id}/{ep.id}") is None:
            out.append(f"store: {where} is missing from its sandbox's index")
        external = ep.driver_state.get("external")
        if not external and ep.sandbox_id not in sbs and not os.path.exists(ep.netns):
            out.append(f"store: {where} belongs to a sandbox that is gone")
    for e in store.list("by-sandbox/"):
        _, _sid, ep_id = e.key.split("/", 2)
        if ep_id not in by_id and ep_id not in busy:
            out.append(f"store: index entry {e.key} names no endpoint")
    # Addresses: held by live endpoints, never twice.
    for nid, net in nets.items():
        if net.scope == "global":
            continue
        for ip, owner in ctrl.ipam.in_use(nid).items():
            holder = by_id.get(owner)
            if holder is None:
                if owner not in busy:
                    out.append(f"store: address {ip} of {net.name} is held by no endpoint")
                continue
            if ip not in {a.split("/")[0] for a in (holder.ipv4, holder.ipv6) if a}:
                out.append(f"store: address {ip} of {net.name} is held for {owner[:12]}")
        seen = Counter(
            a.split("/")[0] for ep in eps if ep.network_id == nid for a in (ep.ipv4, ep.ipv6) if a
        )
        out += [f"store: address {a} is used twice in {net.name}" for a, n in seen.items() if n > 1]
    for e in store.list("ipam/"):
        nid = e.key.split("/")[1]
        if nid not in nets and e.key.count("/") == 2:
            out.append(f"store: address reservation {e.key} of a network that does not exist")
    bindings: Counter[str] = Counter()
    for ep in eps:
        for p in ep.ports:
            bindings[f"{p.protocol}/{p.host_port}/{p.host_ip or '*'}"] += 1
            got = store.get(f"ports/{p.protocol}/{p.host_port}/{p.host_ip or '*'}")
            if got is None or got.value.decode() != ep.id:
                out.append(f"store: host port {p.host_port}/{p.protocol} of {ep.name} not reserved")
    out += [f"store: host port {b} is published twice" for b, n in bindings.items() if n > 1]
    for e in store.list("ports/"):
        if e.value.decode() not in by_id and e.value.decode() not in busy:
            out.append(f"store: host port reservation {e.key} is held by no endpoint")
    return out


def _kernel(v: _View) -> list[str]:
    ctrl, sandboxes, nets, eps, sbs, busy = v.ctrl, v.sandboxes, v.nets, v.eps, v.sbs, v.busy
    out = []
    with Netlink() as nl:
        links = nl.links()
        by_name = {ln.name: ln for ln in links}
        by_index = {ln.index: ln for ln in links}
        ep_ids = {ep.id for ep in eps}
        for ln in links:
            if ln.alias.startswith("kanal:net:"):
                owner = ln.alias.removeprefix("kanal:net:")
                if owner not in nets:
                    out.append(f"kernel: link {ln.name} is marked for network {owner[:12]}, gone")
            elif ln.alias.startswith("kanal:ep:"):
                owner = ln.alias.removeprefix("kanal:ep:")
                if owner not in ep_ids and owner not in busy:
                    out.append(f"kernel: link {ln.name} is marked for endpoint {owner[:12]}, gone")
        veths = {str(ep.driver_state.get("host_veth")) for ep in eps}
        for net in nets.values():
            if net.driver != "bridge" or net.driver_state.get("deleting"):
                continue
            br = by_name.get(net.driver_state.get("bridge", ""))
            if br is None:
                out.append(f"kernel: bridge {net.driver_state.get('bridge')} of {net.name} missing")
                continue
            have = {str(a.interface) for a in nl.addrs(br.index)}
            for c in net.ipam:
                if c.gateway and not net.driver_state.get("inhibit_ipv4"):
                    gw = f"{c.gateway}/{ipaddress.ip_network(c.subnet).prefixlen}"
                    if (
                        gw not in have
                        and net.driver_state["modes"].get(
                            "ipv4" if ":" not in c.gateway else "ipv6"
                        )
                        != "isolated"
                    ):
                        out.append(f"kernel: gateway {gw} of {net.name} missing on {br.name}")
            if br.alias == net.mark:
                for ln in links:
                    if ln.master == br.index and ln.name not in veths and ln.alias != "kanal:reap":
                        out.append(f"kernel: port {ln.name} of {br.name} belongs to no endpoint")
        for ep in eps:
            epnet = nets.get(ep.network_id)
            if epnet is None or epnet.driver != "bridge" or ep.id in busy:
                continue
            if ep.driver_state.get("external") and not ep.netns:
                continue  # dockerd's endpoint between Leave and DeleteEndpoint
            host = by_name.get(str(ep.driver_state.get("host_veth") or ""))
            brl = by_name.get(epnet.driver_state.get("bridge", ""))
            if host is None:
                out.append(f"kernel: veth of endpoint {ep.name} on {epnet.name} missing")
            elif brl is not None and by_index.get(host.master) is not brl:
                out.append(f"kernel: veth {host.name} of {ep.name} is not on {brl.name}")
    live_netns = {s.netns for s in sbs.values()}
    try:
        entries = os.listdir(sandboxes.netns_dir)
    except OSError:
        entries = []
    for name in entries:
        path = os.path.join(sandboxes.netns_dir, name)
        owned = any(sid.startswith(name[6:]) for sid in busy)
        if _NETNS.match(name) and path not in live_netns and not owned:
            out.append(f"kernel: network namespace {path} belongs to no sandbox")
    for sb in sbs.values():
        if sb.error:
            out.append(f"sandbox {sb.name} is broken: {sb.error}")
        elif sb.own_netns and not os.path.exists(sb.netns):
            out.append(f"kernel: namespace of sandbox {sb.name} is missing")
    out += _nft(ctrl, nets, eps)
    return out


def _nft(ctrl: Controller, nets: dict[str, Network], eps: list[Endpoint]) -> list[str]:
    if not nft_state.available():
        return []
    table = nft_table()
    out = []
    bridge: Any = ctrl.driver("bridge")
    # What must be there: each bridge network's isolation chain, each endpoint's
    # masquerade and published ports.
    for net in nets.values():
        if net.driver != "bridge" or net.driver_state.get("deleting"):
            continue
        chain = f"kn_{net.id[:12]}"
        if table is None or chain not in table.chains:
            out.append(f"nftables: isolation chain {chain} of {net.name} missing")
        elif net.driver_state["bridge"] not in table.net_from:
            out.append(f"nftables: {net.name}'s bridge is not in the isolation map")
    for ep in eps:
        epnet = nets.get(ep.network_id)
        if epnet is None or epnet.driver != "bridge":
            continue
        if ep.driver_state.get("external") and not ep.netns:
            continue
        expect = bridge.firewall_expect(epnet, ep)
        if expect and (table is None or not table.has(expect)):
            out.append(f"nftables: firewall entries of {ep.name} on {epnet.name} missing")
    if table is None:
        return out
    # What must not be there: entries tagged for the engine's networks that no
    # endpoint owns.
    ours = {network_tag(f"kanal-{nid[:12]}"): n for nid, n in nets.items()}
    owned: set[str] = set()
    for ep in eps:
        net_name = f"kanal-{ep.network_id[:12]}"
        for ifname in (ep.ifname, "dockerif", "dockerpm"):
            if ifname:
                owned.add(Owner(net_name, ep.id, ifname).tag)
    for comment in sorted(table.tags):
        net_tag, _, who = comment.partition(":")
        if net_tag in ours and who and comment not in owned:
            out.append(
                f"nftables: entries tagged {comment} of {ours[net_tag].name} belong to no endpoint"
            )
    return out


def _processes(v: _View) -> list[str]:
    out = []
    for sb in v.sbs.values():
        if sb.state == "running":
            ref = (sb.pid, str(int(sb.started)) if sb.started else "")
            if sb.pid and not processes.alive(ref):
                out.append(f"process: sandbox {sb.name} is running but its process is gone")
        elif sb.own_netns:
            left = processes.netns_pids(sb.netns)
            if left:
                out.append(
                    f"process: sandbox {sb.name} is {sb.state} but {len(left)} process(es) "
                    "run in its namespace"
                )
    return out


def _files(v: _View) -> list[str]:
    ctrl, sandboxes, eps, sbs, busy = v.ctrl, v.sandboxes, v.eps, v.sbs, v.busy
    out = []
    root = os.path.join(sandboxes.state_dir, "sandboxes")
    try:
        dirs = os.listdir(root)
    except OSError:
        dirs = []
    for sid in dirs:
        if sid not in sbs and sid not in busy:
            out.append(f"files: {os.path.join(root, sid)} belongs to no sandbox")
    results = os.path.join(ctrl.ctx.cache_dir, "results")
    try:
        cached = os.listdir(results)
    except OSError:
        cached = []
    # libcni's names: <network>-<container id>-<ifname>; the engine's network is
    # kanal-<id12> and its container id the endpoint id (64 hex digits).
    keys = {f"kanal-{ep.network_id[:12]}-{ep.id}-{ep.ifname}" for ep in eps}
    for name in cached:
        m = re.match(r"^kanal-[0-9a-f]{12}-([0-9a-f]{64})-", name)
        if m and name not in keys and m.group(1) not in busy:
            out.append(f"files: CNI cache entry {name} belongs to no endpoint")
    return out
