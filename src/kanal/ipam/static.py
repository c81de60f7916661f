"""The static IPAM plugin's logic: fixed addresses, routes and DNS from the config.

Go reference: ``plugins/ipam/static/main.go``. Address sources, later ones
replacing earlier ones as Go does:

1. ``ipam.addresses`` ``[{address: CIDR, gateway?}]``, plus CNI_ARGS ``IP``
   (comma-separated CIDRs, appended); CNI_ARGS ``GATEWAY`` (comma-separated)
   sets the gateway of the CNI_ARGS addresses whose subnet contains it;
2. ``args.cni.ips`` (CIDRs) replaces all of the above;
3. ``runtimeConfig.ips`` (CIDRs) replaces all of the above.

Addresses keep their host bits (``10.0.0.5/24``). Error texts are Go's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kanal.errors import DecodeError, InvalidConfig, InvalidEnv, KanalError
from kanal.ipam.ranges import canonical_ip
from kanal.spec import gotypes
from kanal.spec.args import load_args
from kanal.spec.gojson import STRING, Ptr, Slice, Struct, decode
from kanal.spec.gotypes import IP, ROUTE
from kanal.spec.types import DNS, IPAddr, IPConfig, IPInterface, Result, Route, parse_cidr, parse_ip
from kanal.spec.versions import version_ge
from kanal.spec.wirefields import dns_from_go, routes_from_go

__all__ = ["StaticAddress", "StaticConf", "check", "load_conf", "result"]


@dataclass(frozen=True)
class StaticAddress:
    address: IPInterface
    gateway: IPAddr | None = None


@dataclass(frozen=True)
class StaticConf:
    name: str
    cni_version: str
    addresses: tuple[StaticAddress, ...]
    routes: tuple[Route, ...] = ()
    dns: DNS | None = None


_ADDRESS = Struct(
    "Address",
    [
        ("address", STRING),
        ("gateway", IP),
        # Go's Address struct also has untagged fields, matched by their Go names.
        ("Address", Struct("IPNet", [("IP", IP), ("Mask", STRING)], pkg="net")),
        ("Version", STRING),
    ],
)
IPAM_CONFIG = Struct(
    "IPAMConfig",
    [
        ("Name", STRING),
        ("type", STRING),
        ("routes", Slice(Ptr(ROUTE))),
        ("addresses", Slice(_ADDRESS)),
        ("dns", gotypes.DNS),
    ],
)
NET = Struct(
    "Net",
    [
        ("name", STRING),
        ("cniVersion", STRING),
        ("ipam", Ptr(IPAM_CONFIG)),
        ("runtimeConfig", Struct("", [("ips", gotypes.STRINGS)], pkg="")),
        (
            "args",
            Ptr(Struct("", [("cni", Ptr(Struct("IPAMArgs", [("ips", gotypes.STRINGS)])))], pkg="")),
        ),
    ],
)


def _cidr(s: str, err: str) -> IPInterface:
    try:
        return parse_cidr(s)
    except DecodeError:
        raise InvalidConfig(err.format(s)) from None


def _from_cni_args(cni_args: str) -> list[StaticAddress]:
    """The addresses in CNI_ARGS ``IP``, each with the ``GATEWAY`` in its subnet.

    Raises:
        InvalidEnv: a bad address, gateway or key.
    """
    from_env: list[StaticAddress] = []
    env = load_args(cni_args, ("IP", "GATEWAY"))
    if env.get("IP"):
        for item in env["IP"].split(","):
            s = item.strip()
            try:
                from_env.append(StaticAddress(parse_cidr(s)))
            except DecodeError:
                raise InvalidEnv(
                    f"the 'ip' field is expected to be in CIDR notation, got: '{s}'"
                ) from None
    if env.get("GATEWAY"):
        for item in env["GATEWAY"].split(","):
            try:
                gw = canonical_ip(parse_ip(item.strip()))
            except DecodeError:
                raise InvalidEnv(f"invalid gateway address: {item}") from None
            from_env = [
                StaticAddress(a.address, gw) if gw in a.address.network else a for a in from_env
            ]
    return from_env


def load_conf(conf: Mapping[str, Any], cni_args: str = "") -> StaticConf:
    """Validate a static config (the plugin's whole stdin object), as Go does.

    Raises:
        InvalidConfig: "IPAM config missing 'ipam' key", "the 'address' field is
            expected to be in CIDR notation, got: '<s>'", "an entry in the 'ips'
            field is NOT in CIDR notation, got: '<s>'", "CNI version X does not
            support more than 1 address per family", or Go's decode error.
        InvalidEnv: bad ``CNI_ARGS`` ("the 'ip' field is expected to be in CIDR
            notation, got: '<s>'", "invalid gateway address: <s>", unknown keys).
    """
    net = decode(NET, conf, "")
    ipam = net["ipam"]
    if ipam is None:
        raise InvalidConfig("IPAM config missing 'ipam' key")
    name: str = net["name"]
    cni_version: str = net["cniVersion"]

    # Configured addresses are parsed after CNI_ARGS in Go, so GATEWAY never
    # applies to them; keep them raw until then.
    configured: list[tuple[str, IPAddr | None]] = [
        (a["address"], None if a["gateway"] is None else canonical_ip(a["gateway"]))
        for a in ipam["addresses"] or []
    ]

    from_env = _from_cni_args(cni_args) if cni_args else []

    addresses: list[StaticAddress] | None = None
    args_cni = (net["args"] or {}).get("cni") or {}
    for source in (args_cni.get("ips"), net["runtimeConfig"]["ips"]):
        if source:
            addresses = [
                StaticAddress(
                    _cidr(s, "an entry in the 'ips' field is NOT in CIDR notation, got: '{}'")
                )
                for s in source
            ]
    if addresses is None:
        addresses = [
            StaticAddress(
                _cidr(s, "the 'address' field is expected to be in CIDR notation, got: '{}'"),
                gw,
            )
            for s, gw in configured
        ]
        addresses += from_env

    v4 = sum(1 for a in addresses if a.address.version == 4)
    v6 = len(addresses) - v4
    if v4 > 1 or v6 > 1:
        try:
            ok = version_ge(cni_version, "0.3.0")
        except KanalError:
            ok = False
        if not ok:
            raise InvalidConfig(
                f"CNI version {cni_version} does not support more than 1 address per family"
            )

    try:
        routes = tuple(routes_from_go(ipam["routes"], "ipam.routes"))
    except DecodeError as e:
        raise InvalidConfig("invalid ipam config", e.details or e.msg) from None
    return StaticConf(name, cni_version, tuple(addresses), routes, dns_from_go(ipam["dns"]))


def result(conf: StaticConf) -> Result:
    """ADD's IPAM result: the addresses, routes and DNS as configured."""
    return Result(
        ips=[IPConfig(address=a.address, gateway=a.gateway) for a in conf.addresses],
        routes=list(conf.routes),
        dns=conf.dns if conf.dns is not None else DNS(),
    )


def check(conf: StaticConf, prev: Result, ifname: str) -> None:
    """CHECK against the previous result, as Go does.

    For each configured address, the first result IP with the same address must
    have the configured gateway (when one is configured). Like Go, a configured
    address absent from the result is not an error.

    Raises:
        KanalError: "static: Failed to match addr <ip> on interface <ifname>".
    """
    for a in conf.addresses:
        for ipc in prev.ips:
            if canonical_ip(ipc.address.ip) != canonical_ip(a.address.ip):
                continue
            if a.gateway is None or (
                ipc.gateway is not None and canonical_ip(ipc.gateway) == a.gateway
            ):
                break
            raise KanalError(f"static: Failed to match addr {ipc.address.ip} on interface {ifname}")
