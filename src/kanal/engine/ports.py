"""Published ports: parsing docker's ``-p`` and reserving host ports.

Reservations live in the state store (``ports/<proto>/<port>/<host ip or *>`` →
endpoint id) under one lock, so a host port is never given twice: an any-address
binding conflicts with every binding of the same port and protocol, a
specific-address one with the same address and with any-address. Random host
ports come from the kernel's ephemeral range, as docker's allocator does.
"""

from __future__ import annotations

import ipaddress
import random
import re
import threading
from collections.abc import Sequence

from kanal.engine.model import PortBinding
from kanal.errors import Conflict, InvalidConfig
from kanal.store import Delete, Put, Store

__all__ = ["PortAllocator", "parse_publish"]

PROTOCOLS = ("tcp", "udp", "sctp")
_PORTS = re.compile(r"^\d+(?:-\d+)?\Z")


def _range(text: str, what: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    a, b = int(lo), int(hi or lo)
    if not (1 <= a <= 65535 and 1 <= b <= 65535) or b < a:
        raise InvalidConfig(f"invalid {what} port range {text!r}")
    return a, b


def parse_publish(spec: str) -> list[PortBinding]:
    """docker's ``-p [hostIP:][hostPort[-end]:]containerPort[-end][/proto]``.

    A host range longer than a single container port means "any free port of the
    range" (moby#9097): the binding carries the range as ``host_port`` =
    ``-(first << 16 | last)`` and the allocator picks; 0 means any ephemeral port.
    Returns one binding per container port.

    Raises:
        InvalidConfig: a malformed spec, unequal ranges, an unknown protocol.
    """
    text = spec.strip()
    host_ip = ""
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise InvalidConfig(f"invalid port specification: {spec!r}")
        host_ip, text = text[1:end], text[end + 2 :]
    body, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOCOLS:
        raise InvalidConfig(f"invalid protocol {proto!r} in {spec!r}: want tcp, udp or sctp")
    parts = body.split(":")
    if len(parts) == 3 and not host_ip:
        host_ip = parts.pop(0)
    if len(parts) > 2:
        raise InvalidConfig(f"invalid port specification: {spec!r}")
    cont = parts[-1]
    host = parts[0] if len(parts) == 2 else ""
    if not _PORTS.match(cont) or (host and not _PORTS.match(host)):
        raise InvalidConfig(f"invalid port specification: {spec!r}")
    if host_ip:
        try:
            host_ip = str(ipaddress.ip_address(host_ip))
        except ValueError:
            raise InvalidConfig(f"invalid host IP {host_ip!r} in {spec!r}") from None
    c0, c1 = _range(cont, "container")
    if not host:
        return [PortBinding(p, proto, host_ip, 0) for p in range(c0, c1 + 1)]
    h0, h1 = _range(host, "host")
    if h1 - h0 == c1 - c0:
        return [PortBinding(c0 + i, proto, host_ip, h0 + i) for i in range(c1 - c0 + 1)]
    if c0 == c1:
        # One container port, a host range: any free host port in it.
        return [PortBinding(c0, proto, host_ip, -(h0 << 16 | h1))]
    raise InvalidConfig(f"invalid ranges specified for container and host ports: {spec!r}")


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 49153, 65535


class PortAllocator:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()

    @staticmethod
    def _key(proto: str, port: int, ip: str) -> str:
        return f"ports/{proto}/{port}/{ip or '*'}"

    def _taken(self, proto: str, port: int, ip: str) -> str | None:
        """The endpoint holding a binding that conflicts with (proto, port, ip)."""
        for e in self.store.list(f"ports/{proto}/{port}/"):
            held = e.key.rsplit("/", 1)[1]
            if held == "*" or not ip or held == ip:
                return e.value.decode()
        return None

    def reserve(self, endpoint_id: str, bindings: Sequence[PortBinding]) -> list[PortBinding]:
        """Reserve every binding (all or none); returns them with host ports chosen.

        Raises:
            Conflict: a requested host port is taken ("port is already allocated").
        """
        out: list[PortBinding] = []
        with self._lock:
            ops: list[Put | Delete] = []
            chosen: set[tuple[str, int, str]] = set()
            for b in bindings:
                port = b.host_port
                if port <= 0:
                    lo, hi = ((-port) >> 16, (-port) & 0xFFFF) if port < 0 else ephemeral_range()
                    port = self._pick(b.protocol, b.host_ip, lo, hi, chosen)
                elif (
                    self._taken(b.protocol, port, b.host_ip)
                    or (
                        b.protocol,
                        port,
                        b.host_ip,
                    )
                    in chosen
                ):
                    where = f"{b.host_ip or '0.0.0.0'}:{port}"
                    raise Conflict(f"Bind for {where} failed: port is already allocated")
                chosen.add((b.protocol, port, b.host_ip))
                ops.append(Put(self._key(b.protocol, port, b.host_ip), endpoint_id.encode(), 0))
                out.append(PortBinding(b.container_port, b.protocol, b.host_ip, port))
            if ops:
                self.store.txn(ops)
        return out

    def _pick(
        self, proto: str, ip: str, lo: int, hi: int, chosen: set[tuple[str, int, str]]
    ) -> int:
        start = random.randint(lo, hi)
        span = hi - lo + 1
        for i in range(span):
            port = lo + (start - lo + i) % span
            if (proto, port, ip) not in chosen and not self._taken(proto, port, ip):
                return port
        raise Conflict(f"no free host port in {lo}-{hi} for {proto}")

    def release_owner(self, endpoint_id: str) -> None:
        """Free every binding the endpoint holds, found by scanning (recovery only)."""
        with self._lock:
            ops: list[Put | Delete] = [
                Delete(e.key, e.mod_rev)
                for e in self.store.list("ports/")
                if e.value.decode() == endpoint_id
            ]
            if ops:
                self.store.txn(ops)

    def release(self, endpoint_id: str, bindings: Sequence[PortBinding]) -> None:
        """Free the endpoint's bindings; idempotent (only keys it still holds)."""
        with self._lock:
            ops: list[Put | Delete] = []
            for b in bindings:
                e = self.store.get(self._key(b.protocol, b.host_port, b.host_ip))
                if e is not None and e.value.decode() == endpoint_id:
                    ops.append(Delete(e.key, e.mod_rev))
            if ops:
                self.store.txn(ops)
