"""kanal's IPAM served as a libnetwork remote IpamDriver (``--ipam-driver kanal``).

Pools live in the engine's store under ``dipam/pools/<key>`` and their addresses
are kept by the engine's :class:`~kanal.engine.ipam.AddressAllocator` (one
``ipam/<pool net id>/<ip>`` key each), so a restarted plugin still knows every
pool and address. A pool picked by kanal avoids kanal's networks, the pools it
already handed out and the host's routes; dockerd itself retries when a pool
overlaps one of its own networks. An explicit pool equal to one already held is
the same pool again (reference counted, as libnetwork's IPAM contract asks);
one that merely overlaps is refused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import threading
from typing import TYPE_CHECKING, Any

from kanal.dockerplugin import messages as m
from kanal.engine.ipam import choose_subnet, host_networks
from kanal.engine.model import IPAMConfig, Network
from kanal.errors import Conflict, InvalidConfig, NotFound
from kanal.store import StoreConflict

if TYPE_CHECKING:
    from kanal.engine.controller import Controller

__all__ = ["ServedIpamDriver"]

Reply = dict[str, Any]
LOCAL_SPACE = "kanal-local"
GLOBAL_SPACE = "kanal-global"


def _key(pool_id: str) -> str:
    return hashlib.sha256(pool_id.encode()).hexdigest()[:32]


class ServedIpamDriver:
    """The IpamHandlers of :mod:`kanal.dockerplugin.protocol`, on a Controller's store."""

    def __init__(self, controller: Controller) -> None:
        self.ctrl = controller
        self.store = controller.store
        self._lock = threading.RLock()

    def get_capabilities(self) -> Reply:
        return {"RequiresMACAddress": False, "RequiresRequestReplay": False}

    def get_default_address_spaces(self) -> Reply:
        return {"LocalDefaultAddressSpace": LOCAL_SPACE, "GlobalDefaultAddressSpace": GLOBAL_SPACE}

    # --- pools -------------------------------------------------------------------

    def pools(self) -> list[dict[str, Any]]:
        return [json.loads(e.value) for e in self.store.list("dipam/pools/")]

    def _pool(self, pool_id: str) -> dict[str, Any]:
        e = self.store.get(f"dipam/pools/{_key(pool_id)}")
        if e is None:
            raise NotFound(f"pool {pool_id} not found")
        d: dict[str, Any] = json.loads(e.value)
        return d

    def request_pool(self, req: m.RequestPool) -> Reply:
        space = req.address_space or LOCAL_SPACE
        with self._lock:
            held = self.pools()
            version = 6 if req.v6 else 4
            if req.pool:
                pool = ipaddress.ip_network(req.pool)
                if pool.version != version:
                    raise InvalidConfig(f"pool {pool} is not IPv{version}")
                if req.sub_pool:
                    sub = ipaddress.ip_network(req.sub_pool)
                    if sub.version != version or not sub.subnet_of(pool):  # type: ignore[arg-type]
                        raise InvalidConfig(f"sub-pool {sub} is not inside pool {pool}")
                for h in held:
                    other = ipaddress.ip_network(h["pool"])
                    same = h["pool"] == str(pool) and h["sub_pool"] == req.sub_pool
                    if h["space"] == space and same:
                        return self._ref(h, +1)
                    if h["space"] == space and other.version == version and other.overlaps(pool):
                        raise Conflict(
                            f"invalid pool request: Pool overlaps with other one on this "
                            f"address space ({other})"
                        )
            else:
                avoid = [ipaddress.ip_network(h["pool"]) for h in held]
                avoid += [
                    ipaddress.ip_network(c.subnet) for n in self.ctrl.networks() for c in n.ipam
                ]
                addressing = self.ctrl.addressing
                avoid += host_networks(addressing.host_routes)
                pools = addressing.pools_v6 if req.v6 else addressing.pools
                try:
                    pool = choose_subnet(pools, avoid, version)
                except Conflict:
                    raise Conflict("could not find an available, non-overlapping pool") from None
            pool_id = f"{space}/{pool}" + (f"/{req.sub_pool}" if req.sub_pool else "")
            rec = {
                "id": pool_id,
                "space": space,
                "pool": str(pool),
                "sub_pool": req.sub_pool,
                "v6": req.v6,
                "refs": 1,
            }
            try:
                self.store.put(f"dipam/pools/{_key(pool_id)}", json.dumps(rec).encode(), expect=0)
            except StoreConflict:
                return self._ref(self._pool(pool_id), +1)
            return {"PoolID": pool_id, "Pool": str(pool), "Data": {}}

    def _ref(self, rec: dict[str, Any], delta: int) -> Reply:
        rec["refs"] = int(rec.get("refs", 1)) + delta
        key = f"dipam/pools/{_key(rec['id'])}"
        if rec["refs"] <= 0:
            self.store.delete(key)
            self.ctrl.ipam.drop_network(self._net_id(rec["id"]))
        else:
            self.store.put(key, json.dumps(rec).encode())
        return {"PoolID": rec["id"], "Pool": rec["pool"], "Data": {}}

    def release_pool(self, req: m.ReleasePool) -> Reply:
        with self._lock:
            try:
                rec = self._pool(req.pool_id)
            except NotFound:
                return {}  # released already: a retry
            self._ref(rec, -1)
            return {}

    # --- addresses ---------------------------------------------------------------

    @staticmethod
    def _net_id(pool_id: str) -> str:
        return "dipam-" + _key(pool_id)

    def _as_network(self, rec: dict[str, Any], *, whole: bool) -> Network:
        """The pool as the allocator sees a network (``whole``: ignore the sub-pool)."""
        cfg = IPAMConfig(subnet=rec["pool"], ip_range="" if whole else rec["sub_pool"])
        return Network(id=self._net_id(rec["id"]), name=rec["id"], driver="", ipam=[cfg])

    def request_address(self, req: m.RequestAddress) -> Reply:
        with self._lock:
            rec = self._pool(req.pool_id)
            net = self._as_network(rec, whole=req.gateway or bool(req.address))
            version = 6 if rec["v6"] else 4
            # A holder of its own per address: a second request for a taken address
            # is a conflict, never the allocator's "retry of my own reservation".
            holder = "docker:" + secrets.token_hex(8)
            ip, sub, _gw = self.ctrl.ipam.allocate(net, version, holder, req.address)
            return {"Address": f"{ip}/{sub.prefixlen}", "Data": {}}

    def release_address(self, req: m.ReleaseAddress) -> Reply:
        with self._lock:
            try:
                rec = self._pool(req.pool_id)
            except NotFound:
                return {}
            net_id = self._net_id(rec["id"])
            addr = str(ipaddress.ip_address(req.address))
            held = self.store.get(f"ipam/{net_id}/{addr}")
            if held is not None:
                self.ctrl.ipam.release(net_id, addr, held.value.decode())
            return {}
