"""Putting back what an outside hand took from kanald's live objects.

Someone runs ``nft flush ruleset`` (or a firewall manager reloads), deletes a
bridge or a veth, removes a gateway address, unmounts a sandbox's namespace: the
store still says the object lives, the kernel no longer has it. One repair pass
compares the two and restores, for live objects only:

- a sandbox namespace mount: mounted again from a process still inside, else
  the sandbox is marked broken with the reason (``inspect`` shows it);
- a bridge network's bridge, gateways, isolation chain: re-created (endpoints of
  a re-created bridge are joined again);
- an endpoint's veth (gone, or off its bridge): joined again with the same
  addresses and ports;
- an endpoint's nftables entries (masquerade, published ports): written again.

Objects an operation is working on (an open intent) are left to it; each repair
takes the object's lock and looks again first. A pass also resolves abandoned
intents. :class:`kanal.engine.watch.KernelWatch` runs a pass when the kernel
reports a change that concerns kanal's objects, and periodically.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kanal.engine.model import Endpoint
from kanal.engine.reconcile import rejoin
from kanal.engine.recovery import recover
from kanal.errors import KanalError
from kanal.firewall.nftables.state import NftState, nft_table
from kanal.netlink.handle import Netlink

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.model import Network
    from kanal.engine.sandboxes import SandboxManager

__all__ = ["Repairer", "Watched"]

log = logging.getLogger("kanal.repair")


@dataclass
class Watched:
    """What the kernel watch should wake a pass for: link names, namespace paths."""

    links: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)
    tags: dict[str, str] = field(default_factory=dict)  # nftables owner tag -> endpoint
    revision: int = -1  # of the store it was read from
    busy: Callable[[], set[str]] = set  # ids of objects operations are working on

    def tag_matters(self, tag: str) -> bool:
        """A live endpoint's entry, and no operation of its own is changing it."""
        ep = self.tags.get(tag)
        return ep is not None and ep not in self.busy()


class Repairer:
    def __init__(self, ctrl: Controller, sandboxes: SandboxManager) -> None:
        self.ctrl = ctrl
        self.sandboxes = sandboxes
        self._lock = threading.Lock()
        self._watched: Watched | None = None
        self.passes = 0

    # --- what to watch ---------------------------------------------------------------

    def invalidate(self, *_: Any) -> None:
        """Forget the watched set (it is rebuilt on the next look)."""
        self._watched = None

    def watched(self) -> Watched:
        """Bridges, veths, namespace mounts and firewall tags of live objects
        (cached until the store changes)."""
        rev = self.ctrl.store.revision()
        w = self._watched
        if w is not None and w.revision == rev:
            return w
        w = Watched(revision=rev, busy=self.ctrl.journal.in_flight_objects)
        nets = self._bridge_networks()
        driver: Any = self.ctrl.driver("bridge")
        for net in nets.values():
            w.links.add(net.driver_state["bridge"])
        for ep in self.ctrl.endpoints():
            veth = ep.driver_state.get("host_veth")
            if veth:
                w.links.add(str(veth))
            if ep.network_id in nets:
                for _, tag, _ in driver.firewall_expect(nets[ep.network_id], ep):
                    w.tags[tag] = ep.id
        for sb in self.sandboxes.list_all():
            if sb.own_netns and not sb.error:
                w.netns.add(sb.netns)
        self._watched = w
        return w

    def _bridge_networks(self) -> dict[str, Network]:
        return {
            n.id: n
            for n in self.ctrl.local_networks()
            if n.driver == "bridge" and not n.driver_state.get("deleting")
        }

    # --- one pass --------------------------------------------------------------------

    def run(self) -> list[str]:
        """One pass; returns a line per thing restored (or marked broken)."""
        with self._lock:
            self.passes += 1
            done = recover(self.ctrl, self.sandboxes)
            try:
                done += self._pass()
            except (KanalError, OSError) as e:
                log.warning("repair pass failed: %s", e)
            if done:
                self._watched = None
                for line in done:
                    log.warning("repaired: %s", line)
            return done

    def _pass(self) -> list[str]:
        done: list[str] = []
        busy = {
            str(v)
            for it in self.ctrl.journal.open()
            for k, v in it.fields.items()
            if k in ("sandbox", "endpoint", "network")
        }
        mounts = _mount_points()
        for sb in self.sandboxes.list_all():
            if sb.own_netns and not sb.error and sb.id not in busy and sb.netns not in mounts:
                line = self.sandboxes.repair_netns(sb.id)
                if line:
                    done.append(line)
        nets = self._bridge_networks()
        eps = [e for e in self.ctrl.endpoints() if e.network_id in nets]
        with Netlink() as nl:
            links = {ln.name: ln for ln in nl.links()}
            addrs = {
                name: {str(a.interface) for a in nl.addrs(links[name].index)}
                for name in {n.driver_state["bridge"] for n in nets.values()}
                if name in links
            }
        table = nft_table()
        rebuilt: set[str] = set()
        for net in nets.values():
            if net.id in busy:
                continue
            why = self._network_damage(net, links, addrs, table)
            if why:
                with self.ctrl.lock:
                    current = self._bridge_networks().get(net.id)
                    if current is None:
                        continue
                    self.ctrl.driver("bridge").create_network(current)
                done.append(f"network {net.name}: {why}: made again")
                if "bridge" in why:
                    rebuilt.add(net.id)
        for ep in eps:
            if ep.id in busy or ep.sandbox_id in busy:
                continue
            net = nets[ep.network_id]
            if ep.driver_state.get("external"):
                if ep.netns:  # dockerd's sandbox: only the firewall side is kanal's to redo
                    done += self._refirewall(net, ep, table)
                continue
            br = links.get(net.driver_state["bridge"])
            veth = links.get(str(ep.driver_state.get("host_veth") or "-"))
            if net.id in rebuilt or veth is None or br is None or veth.master != br.index:
                if rejoin(self.ctrl, net.id, ep.id):
                    done.append(f"endpoint {ep.name} on {net.name}: interface made again")
                elif ep.netns and not os.path.exists(ep.netns):
                    line = self.sandboxes.repair_netns(ep.sandbox_id)  # marks it broken
                    if line:
                        done.append(line)
                continue
            done += self._refirewall(net, ep, table)
        return done

    def _network_damage(
        self,
        net: Network,
        links: dict[str, Any],
        addrs: dict[str, set[str]],
        table: NftState | None,
    ) -> str:
        br = net.driver_state["bridge"]
        if br not in links:
            return "bridge missing"
        driver: Any = self.ctrl.driver("bridge")
        for gw in driver._gateways(net):
            if str(gw) not in addrs.get(br, set()):
                return f"gateway {gw} missing"
        chain = f"kn_{net.id[:12]}"
        if table is None or chain not in table.chains or br not in table.net_from:
            return "isolation chain missing"
        return ""

    def _refirewall(self, net: Network, ep: Endpoint, table: NftState | None) -> list[str]:
        driver: Any = self.ctrl.driver("bridge")
        expect = driver.firewall_expect(net, ep)
        if not expect or (table is not None and table.has(expect)):
            return []
        with self.ctrl.ep_locks.hold(ep.id):
            got = self.ctrl.store.get(f"endpoints/{net.id}/{ep.id}")
            if got is None:
                return []
            driver.restore_firewall(net, Endpoint.from_json(got.value))
        return [f"endpoint {ep.name} on {net.name}: firewall entries written again"]


def _mount_points() -> set[str]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 4:
                out.add(parts[4].replace("\\040", " "))
    return out
