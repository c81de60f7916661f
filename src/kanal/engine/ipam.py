"""The network manager's IPAM: address pools for new networks, addresses for endpoints.

Pools: a new network without ``--subnet`` gets the first subnet of the default
pools (docker's, configurable) that overlaps no other network and no route of
the host. Addresses live in the state store, one key per address
(``ipam/<network id>/<ip>`` → endpoint id), written with "must not exist": two
daemons or threads can never hand out the same address, and a release deletes
the key only if it still names the releasing endpoint (released exactly once).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from kanal import validate
from kanal.engine.model import IPAMConfig, Network
from kanal.errors import Conflict, InvalidConfig, NotFound
from kanal.store import Delete, Store, StoreConflict

__all__ = [
    "DEFAULT_POOLS",
    "DEFAULT_POOLS_V6",
    "AddressAllocator",
    "Pool",
    "choose_subnet",
    "validate_ipam_config",
]

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Pool:
    """``base`` cut into subnets of prefix length ``size`` (docker's default-address-pools)."""

    base: str
    size: int

    def subnets(self) -> Iterable[Net]:
        net = ipaddress.ip_network(self.base)
        if self.size < net.prefixlen:
            yield net
            return
        yield from net.subnets(new_prefix=self.size)


# moby daemon/libnetwork/ipamutils: the local scope defaults.
DEFAULT_POOLS = (
    Pool("172.17.0.0/16", 16),
    Pool("172.18.0.0/16", 16),
    Pool("172.19.0.0/16", 16),
    Pool("172.20.0.0/14", 16),
    Pool("172.24.0.0/14", 16),
    Pool("172.28.0.0/14", 16),
    Pool("192.168.0.0/16", 20),
)
# A unique local /48 (RFC 4193) cut into /64s, for --ipv6 without --subnet.
DEFAULT_POOLS_V6 = (Pool("fd6b:616e:616c::/48", 64),)


def choose_subnet(pools: Sequence[Pool], taken: Iterable[Net], version: int = 4) -> Net:
    """The first subnet of ``pools`` (of IP ``version``) overlapping nothing in ``taken``.

    Raises:
        Conflict: every pool is used ("could not find an available, non-overlapping
            IPv4 address pool", docker's text).
    """
    used = [n for n in taken if n.version == version]
    for pool in pools:
        for sub in pool.subnets():
            if sub.version == version and not any(sub.overlaps(u) for u in used):
                return sub
    raise Conflict(
        f"could not find an available, non-overlapping IPv{version} address pool among "
        "the defaults to assign to the network"
    )


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _net(value: str, what: str) -> Net:
    if "/" not in value and _is_ip(value):
        # ipaddress would read a bare address as a /32 ("too small"): say what is missing
        hint = "10.90.0.0/16" if ":" not in value else "fd00:1::/64"
        raise InvalidConfig(
            f"invalid {what} {value!r}: no prefix length; give it in CIDR notation "
            f"(for example {hint})"
        )
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InvalidConfig(f"invalid {what} {value!r}") from None


def _addr(value: str, what: str) -> Addr:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InvalidConfig(f"invalid {what} {value!r}") from None


def validate_ipam_config(cfg: IPAMConfig) -> IPAMConfig:
    """Docker's checks of one --subnet/--ip-range/--gateway/--aux-address group.

    Returns the config with the subnet in canonical form and the default
    gateway (the first usable address) filled in.
    """
    subnet = _net(cfg.subnet, "subnet")
    if ipaddress.ip_interface(cfg.subnet.strip()).ip != subnet.network_address:
        # 172.20.0.5/16 is refused by docker too: a subnet has no host bits.
        raise InvalidConfig(f"invalid subnet {cfg.subnet}: it should be {subnet}")
    if subnet.num_addresses < (4 if subnet.version == 4 else 2):
        raise InvalidConfig(f"subnet {subnet} is too small")
    gw = _addr(cfg.gateway, "gateway") if cfg.gateway else _first_host(subnet)
    if gw not in subnet:
        raise InvalidConfig(f"no matching subnet for gateway {gw}")
    if cfg.ip_range:
        rng = _net(cfg.ip_range, "ip-range")
        if not (rng.version == subnet.version and rng.subnet_of(subnet)):  # type: ignore[arg-type]
            raise InvalidConfig(f"no matching subnet for range {cfg.ip_range}")
    for name, value in cfg.aux_addresses.items():
        validate.no_control(name, "aux-address name")
        if _addr(value, f"auxiliary address {name!r}") not in subnet:
            raise InvalidConfig(f"no matching subnet for aux-address {value}")
    validate.check_gateway(str(subnet), str(gw), cfg.aux_addresses)
    return IPAMConfig(str(subnet), str(gw), cfg.ip_range, dict(cfg.aux_addresses))


def _first_host(net: Net) -> Addr:
    return net.network_address + 1


class AddressAllocator:
    """Endpoint addresses of every network, on the state store.

    ``used`` caches what this process knows is taken, so picking an address does
    not list the store; a write conflict (someone else took it) marks it used and
    moves on. Thread-safe.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._used: dict[str, set[str]] = {}
        self._cursor: dict[tuple[str, int], int] = {}

    def _key(self, net_id: str, ip: Addr) -> str:
        return f"ipam/{net_id}/{ip}"

    def _load(self, net_id: str) -> set[str]:
        used = self._used.get(net_id)
        if used is None:
            used = {e.key.rsplit("/", 1)[1] for e in self.store.list(f"ipam/{net_id}/")}
            self._used[net_id] = used
        return used

    def in_use(self, net_id: str) -> dict[str, str]:
        """address → endpoint id, from the store."""
        return {
            e.key.rsplit("/", 1)[1]: e.value.decode() for e in self.store.list(f"ipam/{net_id}/")
        }

    def reserved(self, net: Network, cfg: IPAMConfig) -> set[Addr]:
        sub = _net(cfg.subnet, "subnet")
        out: set[Addr] = {sub.network_address}
        if sub.version == 4:
            out.add(sub.broadcast_address)
        if cfg.gateway:
            out.add(_addr(cfg.gateway, "gateway"))
        out |= {_addr(v, "aux-address") for v in cfg.aux_addresses.values()}
        return out

    def allocate(
        self, net: Network, version: int, endpoint_id: str, want: str = ""
    ) -> tuple[Addr, Net, Addr | None]:
        """Reserve an address of IP ``version`` for the endpoint: ``want`` or the next free.

        Returns (address, its subnet, the subnet's gateway).

        Raises:
            InvalidConfig: ``want`` is in no subnet of the network (or is reserved).
            Conflict: ``want`` is taken; or no address is left.
        """
        cfgs = [c for c in net.ipam if _net(c.subnet, "subnet").version == version]
        if not cfgs:
            raise InvalidConfig(f"network {net.name} has no IPv{version} subnet")
        with self._lock:
            used = self._load(net.id)
            if want:
                ip = _addr(want, "IP address")
                for cfg in cfgs:
                    sub = _net(cfg.subnet, "subnet")
                    if ip in sub:
                        if ip in self.reserved(net, cfg):
                            raise InvalidConfig(f"address {ip} is reserved in network {net.name}")
                        self._take(net.id, ip, endpoint_id, used)
                        return ip, sub, _gw(cfg)
                raise InvalidConfig(f"no configured subnet contains IP address {ip}")
            for cfg in cfgs:
                sub = _net(cfg.subnet, "subnet")
                rng = _net(cfg.ip_range, "ip-range") if cfg.ip_range else sub
                skip = self.reserved(net, cfg)
                size = rng.num_addresses
                start = self._cursor.get((net.id, version), 0) % size
                first = int(rng.network_address)
                # Round robin from the last one handed out, as host-local does: a
                # released address is not reused at once.
                for i in range(size):
                    ip = ipaddress.ip_address(first + (start + i) % size)
                    if ip in skip or str(ip) in used:
                        continue
                    try:
                        self._take(net.id, ip, endpoint_id, used)
                    except Conflict:
                        continue
                    self._cursor[(net.id, version)] = (start + i + 1) % size
                    return ip, sub, _gw(cfg)
            raise Conflict(f"no available IPv{version} addresses on network {net.name}")

    def _take(self, net_id: str, ip: Addr, endpoint_id: str, used: set[str]) -> None:
        try:
            self.store.put(self._key(net_id, ip), endpoint_id.encode(), expect=0)
        except StoreConflict:
            used.add(str(ip))
            owner = self.store.get(self._key(net_id, ip))
            if owner is not None and owner.value.decode() == endpoint_id:
                return  # a retry of our own reservation
            raise Conflict(f"address {ip} is already in use") from None
        used.add(str(ip))

    def release(self, net_id: str, ip: str, endpoint_id: str) -> bool:
        """Free ``ip`` if ``endpoint_id`` holds it; False if it did not (idempotent)."""
        key = f"ipam/{net_id}/{ip}"
        with self._lock:
            e = self.store.get(key)
            if e is None or e.value.decode() != endpoint_id:
                return False
            try:
                self.store.delete(key, expect=e.mod_rev)
            except StoreConflict:
                return False
            self._used.get(net_id, set()).discard(ip)
            return True

    def drop_network(self, net_id: str) -> None:
        with self._lock:
            self.store.txn([Delete(e.key) for e in self.store.list(f"ipam/{net_id}/")])
            self._used.pop(net_id, None)
            for k in [k for k in self._cursor if k[0] == net_id]:
                del self._cursor[k]

    def forget_cache(self) -> None:
        with self._lock:
            self._used.clear()


def _gw(cfg: IPAMConfig) -> Addr | None:
    return ipaddress.ip_address(cfg.gateway) if cfg.gateway else None


def host_networks(routes: Callable[[], Iterable[str]]) -> list[Net]:
    """The destinations of the host's routes (minus the default route) as networks."""
    out: list[Net] = []
    for dst in routes():
        n = ipaddress.ip_network(dst, strict=False)
        if n.prefixlen:
            out.append(n)
    return out


def require_free(subnet: Net, others: Iterable[tuple[str, Net]]) -> None:
    """Raises Conflict naming the network ``subnet`` overlaps, if any."""
    for name, other in others:
        if subnet.version == other.version and subnet.overlaps(other):
            raise Conflict(
                "invalid pool request: Pool overlaps with other one on this address space "
                f"({name} {other})"
            )


def find_subnet(net: Network, ip: str) -> IPAMConfig:
    a = _addr(ip, "IP address")
    for c in net.ipam:
        if a in _net(c.subnet, "subnet"):
            return c
    raise NotFound(f"no subnet of network {net.name} contains {ip}")
