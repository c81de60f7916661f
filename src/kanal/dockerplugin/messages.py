"""The Docker plugin protocol's messages (libnetwork remote driver + remote IPAM), typed.

Each request class parses the JSON body dockerd sends (docs/cnm.md) and
raises :class:`kanal.errors.DecodeError` naming the field when it is missing or
of the wrong type, so handlers only ever see validated values. Replies are
plain dicts built by the handlers: the wire keys are docker's (``Err`` for the
network driver, ``Error`` for IPAM — mapped in :mod:`kanal.dockerplugin.protocol`).
No module-level state.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from kanal import jsonget
from kanal.engine.portwire import PROTOCOLS, portmap_wire
from kanal.errors import DecodeError

__all__ = [
    "CreateEndpoint",
    "CreateNetwork",
    "EndpointRef",
    "IPAMData",
    "Join",
    "NetworkRef",
    "PortBinding",
    "ProgramExternalConnectivity",
    "ReleaseAddress",
    "ReleasePool",
    "RequestAddress",
    "RequestPool",
    "portmap_wire",
]

# Docker's IDs are 64 hex digits; tests and older engines use shorter ones, so
# accept any sane token — it becomes store keys and interface names.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
GATEWAY_REQUEST = "com.docker.network.gateway"


def _obj(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise DecodeError("the request body must be a JSON object")
    return body


def _bad(key: str, want: str, value: Any) -> DecodeError:
    return DecodeError(f"{key} must be {want}")


def _str(d: dict[str, Any], key: str, *, required: bool = False) -> str:
    v = jsonget.opt_str(d, key, bad=_bad)
    if required and not v:
        raise DecodeError(f"missing {key}")
    return v


def _id(d: dict[str, Any], key: str) -> str:
    v = _str(d, key, required=True)
    if not _ID.match(v):
        raise DecodeError(f"invalid {key} {v!r}")
    return v


def _dict(d: dict[str, Any], key: str) -> dict[str, Any]:
    return jsonget.opt_obj(d, key, bad=_bad)


def _cidr(value: str, key: str) -> str:
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise DecodeError(f"invalid {key} {value!r}: want an address with a prefix") from None
    return value


def _net(value: str, key: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise DecodeError(f"invalid {key} {value!r}: want a CIDR") from None


@dataclass(frozen=True)
class NetworkRef:
    network_id: str

    @classmethod
    def parse(cls, body: Any) -> NetworkRef:
        return cls(_id(_obj(body), "NetworkID"))


@dataclass(frozen=True)
class EndpointRef:
    network_id: str
    endpoint_id: str

    @classmethod
    def parse(cls, body: Any) -> EndpointRef:
        d = _obj(body)
        return cls(_id(d, "NetworkID"), _id(d, "EndpointID"))


@dataclass(frozen=True)
class IPAMData:
    """One pool of a network as dockerd hands it to the driver (gateway as CIDR)."""

    pool: str
    gateway: str = ""  # bare address (the wire's CIDR stripped)
    aux_addresses: dict[str, str] = field(default_factory=dict)
    address_space: str = ""

    @classmethod
    def parse(cls, d: Any) -> IPAMData:
        if not isinstance(d, dict):
            raise DecodeError("IPv4Data/IPv6Data entries must be objects")
        pool = _net(_str(d, "Pool", required=True), "Pool")
        gw = _str(d, "Gateway")
        if gw:
            gw = str(ipaddress.ip_interface(_cidr(gw, "Gateway")).ip) if "/" in gw else gw
            try:
                ipaddress.ip_address(gw)
            except ValueError:
                raise DecodeError(f"invalid Gateway {gw!r}") from None
        aux = {}
        for name, value in _dict(d, "AuxAddresses").items():
            if not isinstance(value, str):
                raise DecodeError("AuxAddresses values must be strings")
            aux[name] = value.split("/")[0]
        return cls(pool, gw, aux, _str(d, "AddressSpace"))


@dataclass(frozen=True)
class CreateNetwork:
    network_id: str
    options: dict[str, Any]
    ipv4: list[IPAMData]
    ipv6: list[IPAMData]

    @classmethod
    def parse(cls, body: Any) -> CreateNetwork:
        d = _obj(body)
        data = []
        for key in ("IPv4Data", "IPv6Data"):
            raw = d.get(key) or []
            if not isinstance(raw, list):
                raise DecodeError(f"{key} must be a list")
            data.append([IPAMData.parse(x) for x in raw])
        return cls(_id(d, "NetworkID"), _dict(d, "Options"), data[0], data[1])

    @property
    def generic(self) -> dict[str, str]:
        """The user's ``-o key=value`` driver options."""
        g = self.options.get("com.docker.network.generic") or {}
        if not isinstance(g, dict) or not all(isinstance(v, str) for v in g.values()):
            raise DecodeError("com.docker.network.generic must map strings to strings")
        return dict(g)

    def flag(self, key: str) -> bool:
        v = self.options.get(key)
        return v is True or (isinstance(v, str) and v.lower() in ("1", "true"))


@dataclass(frozen=True)
class CreateEndpoint:
    network_id: str
    endpoint_id: str
    address: str  # CIDR or ""
    address_ipv6: str
    mac: str
    options: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> CreateEndpoint:
        d = _obj(body)
        iface = _dict(d, "Interface")
        addr = _str(iface, "Address")
        addr6 = _str(iface, "AddressIPv6")
        mac = _str(iface, "MacAddress")
        if mac and not re.match(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}\Z", mac):
            raise DecodeError(f"invalid MacAddress {mac!r}")
        return cls(
            _id(d, "NetworkID"),
            _id(d, "EndpointID"),
            _cidr(addr, "Address") if addr else "",
            _cidr(addr6, "AddressIPv6") if addr6 else "",
            mac.lower(),
            _dict(d, "Options"),
        )


@dataclass(frozen=True)
class Join:
    network_id: str
    endpoint_id: str
    sandbox_key: str
    options: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> Join:
        d = _obj(body)
        key = _str(d, "SandboxKey", required=True)
        if not key.startswith("/") or "\0" in key:
            raise DecodeError(f"invalid SandboxKey {key!r}: want an absolute path")
        return cls(_id(d, "NetworkID"), _id(d, "EndpointID"), key, _dict(d, "Options"))


@dataclass(frozen=True)
class PortBinding:
    """One entry of ``com.docker.network.portmap`` (libnetwork's types.PortBinding)."""

    proto: str
    port: int
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    @classmethod
    def parse(cls, d: Any) -> PortBinding:
        if not isinstance(d, dict):
            raise DecodeError("port bindings must be objects")
        proto = d.get("Proto", 6)
        if proto not in PROTOCOLS:
            raise DecodeError(f"unsupported port protocol {proto!r}")
        nums = []
        for key in ("Port", "HostPort", "HostPortEnd"):
            v = d.get(key) or 0
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 65535:
                raise DecodeError(f"invalid {key} {v!r}")
            nums.append(v)
        if not nums[0]:
            raise DecodeError("a port binding needs Port")
        host_ip = d.get("HostIP") or ""
        if host_ip:
            try:
                ipaddress.ip_address(host_ip)
            except (ValueError, TypeError):
                raise DecodeError(f"invalid HostIP {host_ip!r}") from None
        return cls(PROTOCOLS[proto], nums[0], host_ip, nums[1], nums[2])


@dataclass(frozen=True)
class ProgramExternalConnectivity:
    network_id: str
    endpoint_id: str
    ports: list[PortBinding]

    @classmethod
    def parse(cls, body: Any) -> ProgramExternalConnectivity:
        d = _obj(body)
        raw = _dict(d, "Options").get("com.docker.network.portmap") or []
        if not isinstance(raw, list):
            raise DecodeError("com.docker.network.portmap must be a list")
        return cls(_id(d, "NetworkID"), _id(d, "EndpointID"), [PortBinding.parse(p) for p in raw])


# --- IPAM -----------------------------------------------------------------------


@dataclass(frozen=True)
class RequestPool:
    address_space: str
    pool: str
    sub_pool: str
    options: dict[str, Any]
    v6: bool

    @classmethod
    def parse(cls, body: Any) -> RequestPool:
        d = _obj(body)
        pool = _str(d, "Pool")
        sub = _str(d, "SubPool")
        v6 = d.get("V6", False)
        if not isinstance(v6, bool):
            raise DecodeError("V6 must be a boolean")
        if sub and not pool:
            raise DecodeError("SubPool without Pool")
        return cls(
            _str(d, "AddressSpace"),
            _net(pool, "Pool") if pool else "",
            _net(sub, "SubPool") if sub else "",
            _dict(d, "Options"),
            v6,
        )


@dataclass(frozen=True)
class ReleasePool:
    pool_id: str

    @classmethod
    def parse(cls, body: Any) -> ReleasePool:
        return cls(_str(_obj(body), "PoolID", required=True))


@dataclass(frozen=True)
class RequestAddress:
    pool_id: str
    address: str
    gateway: bool
    options: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> RequestAddress:
        d = _obj(body)
        opts = _dict(d, "Options")
        addr = _str(d, "Address")
        if addr:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise DecodeError(f"invalid Address {addr!r}") from None
        gw = opts.get("RequestAddressType") == GATEWAY_REQUEST
        return cls(_str(d, "PoolID", required=True), addr, gw, opts)


@dataclass(frozen=True)
class ReleaseAddress:
    pool_id: str
    address: str

    @classmethod
    def parse(cls, body: Any) -> ReleaseAddress:
        d = _obj(body)
        addr = _str(d, "Address", required=True)
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise DecodeError(f"invalid Address {addr!r}") from None
        return cls(_str(d, "PoolID", required=True), addr)
