"""Global IPAM: addresses of an overlay network, unique across hosts.

The pool's subnet is cut into blocks (``/26`` by default). A host claims a block
with a create-if-absent transaction and then allocates from it alone, so hosts
never contend per address (docs/overlay.md, "Addresses: blocks per host"). Keys
(relative to the store prefix)::

    ipam/<pool>/blocks/<a.b.c.d-len>      {"host", "epoch", "claimed", "claim"}
    ipam/<pool>/ips/<a.b.c.d-len>/<ip>    {"host", "owner", "token"}

Rules (each one transaction):

- **claim** a block: ``create_revision(block) == 0`` → put. Blocks are tried in an
  order shuffled by the host name, so racing hosts start apart.
- **allocate** an address: ``create_revision(ip) == 0`` and ``value(block) ==`` the
  exact bytes this host wrote when it claimed it → put the address. The second
  compare is the fence: once the block was freed (or re-claimed, even by this
  same host: the ``claim`` token differs), allocations from a stale view fail.
  The failure branch reads both keys to tell "address taken" (try the next one)
  from "block lost" (forget it, claim another).
- **release**: the address key is deleted only if it still names this host and
  owner (compare on its value).
- **garbage collection** (:func:`collect_garbage`, run by any host): blocks whose
  host has been gone (no ``nodes/<host>``) for the grace period are deleted (a
  compare on the value seen), then their addresses, each batch conditional on the
  block still being absent, so a block re-claimed meanwhile keeps its new addresses.

Ambiguous writes (an attempt timed out while a member died, then the call was
retried on another member) are resolved by a per-allocation ``token``: if the
address exists with our token, the first attempt landed and it is ours.

A host that comes back after its blocks were collected cannot use the addresses
it had: :meth:`GlobalIpam.still_held` tells it which of its allocations are gone
(their containers must be re-addressed or stopped), and any allocation from a
block it no longer holds fails the fence.

API: ``GlobalIpam(store, pool, PoolConfig(subnet, block_prefix, reserved), host)``;
``load()``; ``allocate(owner, ip=None) -> Allocation``; ``release(ip, owner) -> bool``;
``still_held(alloc) -> bool``; ``holds(ip, owner) -> bool``; ``blocks() -> list[str]``;
``collect_garbage(store, tracker, now) -> list[str]`` (the freed blocks);
pure helpers ``blocks_of``, ``block_order``, ``block_candidates``, ``block_of``,
``block_id``.
Raises ``Unavailable`` (etcd), ``Conflict`` (pool exhausted, address taken),
``InvalidConfig`` (an address outside the subnet).
"""

from __future__ import annotations

import ipaddress
import json
import random
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from kanal.cluster.nodes import GoneTracker, list_nodes
from kanal.errors import Conflict, InvalidConfig
from kanal.store import Delete, Put
from kanal.store.etcd import Cmp, EtcdStore, Get

__all__ = [
    "Allocation",
    "GlobalIpam",
    "PoolConfig",
    "block_candidates",
    "block_id",
    "block_of",
    "block_order",
    "blocks_of",
    "collect_garbage",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_CHUNK = 100  # etcd's default --max-txn-ops is 128


@dataclass(frozen=True)
class PoolConfig:
    """``subnet``: the overlay network's subnet; ``block_prefix``: the size of a host's
    block; ``reserved``: addresses never handed out (the gateway, say) besides the
    subnet's own network and broadcast addresses."""

    subnet: str
    block_prefix: int = 26
    reserved: tuple[str, ...] = ()

    def network(self) -> Network:
        try:
            net = ipaddress.ip_network(self.subnet)
        except ValueError as e:
            raise InvalidConfig(f"invalid subnet {self.subnet!r}", str(e)) from e
        if not net.prefixlen <= self.block_prefix <= net.max_prefixlen:
            raise InvalidConfig(f"block /{self.block_prefix} does not fit in {self.subnet}")
        return net


@dataclass(frozen=True)
class Allocation:
    ip: str
    block: str  # block id, "10.60.0.64-26"
    owner: str
    token: str
    mod_rev: int = 0


def block_id(block: Network) -> str:
    """``10.60.0.64/26`` → ``10.60.0.64-26`` (no ``/`` inside a key segment)."""
    return f"{block.network_address}-{block.prefixlen}"


def blocks_of(subnet: Network, block_prefix: int) -> list[Network]:
    return list(subnet.subnets(new_prefix=block_prefix))


def block_of(ip: Address, subnet: Network, block_prefix: int) -> Network:
    if ip not in subnet:
        raise InvalidConfig(f"address {ip} is not in {subnet}")
    return ipaddress.ip_network(f"{ip}/{block_prefix}", strict=False)


def block_order(blocks: Iterable[Network], host: str) -> list[Network]:
    """The order ``host`` tries free blocks in: a shuffle seeded by its name."""
    out = list(blocks)
    random.Random(host).shuffle(out)
    return out


#: pools with more blocks than this are not listed whole (an IPv6 /64 has 2^58 /122s)
LISTED_BLOCKS = 1 << 16


def block_candidates(subnet: Network, block_prefix: int, host: str) -> Iterator[Network]:
    """The blocks ``host`` tries, in its own order: :func:`block_order` of every block
    when there are at most LISTED_BLOCKS; else blocks at indices drawn by a generator
    seeded with the host's name (racing hosts start apart), never the whole list."""
    count = 1 << (block_prefix - subnet.prefixlen)
    if count <= LISTED_BLOCKS:
        yield from block_order(blocks_of(subnet, block_prefix), host)
        return
    rng = random.Random(host)
    seen: set[int] = set()
    size = 1 << (subnet.max_prefixlen - block_prefix)
    while len(seen) < LISTED_BLOCKS:
        k = rng.randrange(count)
        if k in seen:
            continue
        seen.add(k)
        first = int(subnet.network_address) + k * size
        yield ipaddress.ip_network(f"{ipaddress.ip_address(first)}/{block_prefix}")


def _ips_prefix(pool: str, bid: str = "") -> str:
    return f"ipam/{pool}/ips/{bid}/" if bid else f"ipam/{pool}/ips/"


def _block_key(pool: str, bid: str) -> str:
    return f"ipam/{pool}/blocks/{bid}"


@dataclass
class _Block:
    net: Network
    value: bytes  # exactly what we wrote at claim time: the fence
    used: set[str] = field(default_factory=set)
    cursor: int = 0


class GlobalIpam:
    """This host's allocator for one pool. Thread-safe (one lock: a host's allocations
    are serialized, one etcd round trip each)."""

    def __init__(
        self,
        store: EtcdStore,
        pool: str,
        config: PoolConfig,
        host: str,
        *,
        epoch: int = 0,
    ) -> None:
        self.store = store
        self.pool = pool
        self.config = config
        self.host = host
        self.epoch = epoch  # the node's lease id when it claims; informational
        self.subnet = config.network()
        self._reserved = {str(self.subnet.network_address), str(self.subnet.broadcast_address)}
        self._reserved |= {str(ipaddress.ip_address(r)) for r in config.reserved}
        self._blocks: dict[str, _Block] = {}
        self._lock = threading.Lock()
        self._loaded = False

    # ---- blocks ---------------------------------------------------------------------
    def load(self) -> list[str]:
        """Adopt the blocks etcd says this host holds (after a restart). Returns their ids."""
        with self._lock:
            self._load()
            return sorted(self._blocks)

    def _load(self) -> None:
        self._blocks.clear()
        for e in self.store.list(f"ipam/{self.pool}/blocks/"):
            try:
                d = json.loads(e.value)
            except ValueError:
                continue
            if d.get("host") == self.host:
                bid = e.key.rsplit("/", 1)[1]
                self._adopt(bid, e.value)
        self._loaded = True

    def _adopt(self, bid: str, value: bytes) -> _Block:
        net = ipaddress.ip_network(bid.replace("-", "/"))
        used = {e.key.rsplit("/", 1)[1] for e in self.store.list(_ips_prefix(self.pool, bid))}
        b = self._blocks[bid] = _Block(net, value, used)
        return b

    def blocks(self) -> list[str]:
        """The block ids this host believes it holds."""
        with self._lock:
            return sorted(self._blocks)

    def _claim(self, want: Network | None = None) -> _Block:
        claimed = {e.key.rsplit("/", 1)[1] for e in self.store.list(f"ipam/{self.pool}/blocks/")}
        candidates = (
            [want]
            if want is not None
            else block_candidates(self.subnet, self.config.block_prefix, self.host)
        )
        for net in candidates:
            bid = block_id(net)
            if bid in claimed or bid in self._blocks:
                continue
            value = json.dumps(
                {
                    "host": self.host,
                    "epoch": self.epoch,
                    "claimed": time.time(),
                    "claim": secrets.token_hex(8),
                },
                sort_keys=True,
            ).encode()
            key = _block_key(self.pool, bid)
            res = self.store.txn_if([Cmp.absent(key)], [Put(key, value)], [Get(key)])
            if res.succeeded or (res.gets and res.gets[0] and res.gets[0][0].value == value):
                return self._adopt(bid, value)
        if want is not None:
            raise Conflict(f"block {want} of pool {self.pool!r} is held by another host")
        raise Conflict(f"no free address block left in pool {self.pool!r} ({self.subnet})")

    # ---- addresses ------------------------------------------------------------------
    def _candidates(self, b: _Block) -> Iterable[str]:
        n = b.net.num_addresses
        for k in range(n):
            i = (b.cursor + k) % n
            ip = str(b.net.network_address + i)
            if ip not in b.used and ip not in self._reserved:
                yield ip

    def allocate(self, owner: str, ip: str | None = None) -> Allocation:
        """A new address for ``owner`` (any, or exactly ``ip``).

        Raises Conflict (``ip`` taken or in another host's block; pool exhausted),
        Unavailable (etcd), InvalidConfig (``ip`` outside the subnet).
        """
        with self._lock:
            if not self._loaded:
                self._load()
            if ip is not None:
                return self._allocate_exact(owner, ipaddress.ip_address(ip))
            while True:
                for bid in sorted(self._blocks):
                    got = self._allocate_in(bid, owner, None)
                    if got is not None:
                        return got
                self._claim()

    def _allocate_exact(self, owner: str, ip: Address) -> Allocation:
        if str(ip) in self._reserved:
            raise Conflict(f"address {ip} is reserved in {self.subnet}")
        net = block_of(ip, self.subnet, self.config.block_prefix)
        bid = block_id(net)
        if bid not in self._blocks:
            self._claim(net)
        got = self._allocate_in(bid, owner, str(ip))
        if got is None:
            raise Conflict(f"address {ip} is already allocated")
        return got

    def _allocate_in(self, bid: str, owner: str, exact: str | None) -> Allocation | None:
        """Try addresses of block ``bid`` until one sticks; None when it is full, lost,
        or (``exact``) that address is taken."""
        b = self._blocks.get(bid)
        if b is None:
            return None
        bkey = _block_key(self.pool, bid)
        for ip in [exact] if exact else list(self._candidates(b)):
            if exact and exact in b.used:
                return None
            token = secrets.token_hex(8)
            value = json.dumps(
                {"host": self.host, "owner": owner, "token": token}, sort_keys=True
            ).encode()
            ikey = _ips_prefix(self.pool, bid) + ip
            res = self.store.txn_if(
                [Cmp.absent(ikey), Cmp.value_is(bkey, b.value)],
                [Put(ikey, value)],
                [Get(ikey), Get(bkey)],
            )
            have_ip = res.gets[0][0] if not res.succeeded and res.gets[0] else None
            # An address holding our own token: an earlier attempt of this very
            # call landed before a retry (ambiguous write), so it is ours.
            if not res.succeeded and (have_ip is None or have_ip.value != value):
                have_block = res.gets[1][0] if len(res.gets) > 1 and res.gets[1] else None
                if have_block is None or have_block.value != b.value:
                    del self._blocks[bid]  # fenced: the block is not ours any more
                    return None
                b.used.add(ip)
                continue
            b.used.add(ip)
            b.cursor = (int(ipaddress.ip_address(ip)) - int(b.net.network_address) + 1) % (
                b.net.num_addresses
            )
            return Allocation(ip, bid, owner, token, res.revision)
        return None

    def release(self, ip: str, owner: str) -> bool:
        """Free ``ip`` if it is still this host's and ``owner``'s; False otherwise."""
        addr = ipaddress.ip_address(ip)
        bid = block_id(block_of(addr, self.subnet, self.config.block_prefix))
        ikey = _ips_prefix(self.pool, bid) + ip
        with self._lock:
            e = self.store.get(ikey)
            if e is None:
                return False
            d = json.loads(e.value)
            if d.get("host") != self.host or d.get("owner") != owner:
                return False
            res = self.store.txn_if([Cmp.value_is(ikey, e.value)], [Delete(ikey)])
            if res.succeeded and bid in self._blocks:
                self._blocks[bid].used.discard(ip)
            return res.succeeded

    def holds(self, ip: str, owner: str) -> bool:
        """Whether etcd still has ``ip`` as this host's, for ``owner`` (False once a
        garbage collection freed it while this host was cut off). Raises Unavailable."""
        addr = ipaddress.ip_address(ip)
        bid = block_id(block_of(addr, self.subnet, self.config.block_prefix))
        e = self.store.get(_ips_prefix(self.pool, bid) + str(addr))
        if e is None:
            return False
        d = json.loads(e.value)
        return bool(d.get("host") == self.host and d.get("owner") == owner)

    def still_held(self, alloc: Allocation) -> bool:
        """Whether ``alloc`` still stands in etcd (False: it was collected — do not use
        that address; a container holding it must be re-addressed or stopped)."""
        e = self.store.get(_ips_prefix(self.pool, alloc.block) + alloc.ip)
        if e is None:
            return False
        d = json.loads(e.value)
        return bool(d.get("host") == self.host and d.get("token") == alloc.token)


def _parse_block_key(key: str) -> tuple[str, str] | None:
    """``ipam/<pool>/blocks/<bid>`` → (pool, bid)."""
    parts = key.split("/")
    if len(parts) == 4 and parts[0] == "ipam" and parts[2] == "blocks":
        return parts[1], parts[3]
    return None


def collect_garbage(store: EtcdStore, tracker: GoneTracker, now: float) -> list[str]:
    """Free every block (and its addresses) of hosts gone for the tracker's grace period.

    Safe to run on several hosts at once (every delete is conditional). Returns the
    freed blocks as ``<pool>/<block id>``. Also sweeps addresses left in blocks that
    no longer exist (a collector that stopped half-way). Raises Unavailable.
    """
    live = set(list_nodes(store))
    blocks = []
    listing = store.list("ipam/")  # blocks and addresses: one listing for both passes
    for e in listing:
        pb = _parse_block_key(e.key)
        if pb is None:
            continue
        try:
            host = str(json.loads(e.value).get("host", ""))
        except ValueError:
            host = ""
        blocks.append((pb[0], pb[1], host, e))
    gone = tracker.observe(live, {h for _, _, h, _ in blocks}, now)
    freed = []
    existing = {(p, b) for p, b, _, _ in blocks}
    for pool, bid, host, e in blocks:
        if host not in gone:
            continue
        res = store.txn_if([Cmp.value_is(e.key, e.value)], [Delete(e.key)])
        if res.succeeded:
            freed.append(f"{pool}/{bid}")
            existing.discard((pool, bid))
    # Addresses whose block is absent: fenced already, delete them (in batches, each
    # on condition that the block is still absent). One written after the listing into
    # a block freed just now is taken by the next round.
    orphans: dict[tuple[str, str], list[str]] = {}
    for e in listing:
        parts = e.key.split("/")
        if len(parts) == 5 and parts[2] == "ips" and (parts[1], parts[3]) not in existing:
            orphans.setdefault((parts[1], parts[3]), []).append(e.key)
    for (pool, bid), keys in orphans.items():
        for i in range(0, len(keys), _CHUNK):
            store.txn_if(
                [Cmp.absent(_block_key(pool, bid))], [Delete(k) for k in keys[i : i + _CHUNK]]
            )
    for h in gone:
        if not any(host == h and (p, b) in existing for p, b, host, _ in blocks):
            tracker.forget(h)
    return freed
