"""Docker's JSON shapes for the engine's objects, and docker's request fields.

The REST API and the CLI speak what ``docker network`` speaks (cnm.md §2.8):
``network_json`` is one element of ``docker network inspect``; ``spec_from_request``
reads the body of ``POST /networks/create``; ``match_filters`` is ``ls -f``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from kanal import validate
from kanal.engine.model import Endpoint, IPAMConfig, Network, NetworkSpec
from kanal.errors import InvalidConfig

__all__ = ["match_filters", "network_json", "spec_from_request"]

_DRIVER_NAMES = {"null": "null"}


def network_json(
    net: Network, endpoints: Sequence[Endpoint], names: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``docker network inspect``'s object (``names``: sandbox id → name, optional)."""
    containers: dict[str, Any] = {}
    for ep in endpoints:
        containers[ep.sandbox_id] = {
            "Name": (names or {}).get(ep.sandbox_id, ep.name),
            "EndpointID": ep.id,
            "MacAddress": ep.mac,
            "IPv4Address": ep.ipv4,
            "IPv6Address": ep.ipv6,
        }
    subnets: dict[str, Any] = {}
    for c in net.ipam:
        sub = ipaddress.ip_network(c.subnet)
        used = sum(
            1
            for ep in endpoints
            for a in (ep.ipv4, ep.ipv6)
            if a and ipaddress.ip_interface(a).ip in sub
        )
        reserved = 1 + (1 if c.gateway else 0) + len(c.aux_addresses) + (sub.version == 4)
        rng = ipaddress.ip_network(c.ip_range) if c.ip_range else sub
        subnets[c.subnet] = {
            "IPsInUse": used + reserved,
            "DynamicIPsAvailable": max(0, min(rng.num_addresses, 1 << 62) - used - reserved),
        }
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": net.scope,
        "Driver": net.driver,
        "EnableIPv4": net.enable_ipv4,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {
            "Driver": net.ipam_driver,
            "Options": dict(net.ipam_options),
            "Config": [
                {
                    "Subnet": c.subnet,
                    **({"IPRange": c.ip_range} if c.ip_range else {}),
                    **({"Gateway": c.gateway} if c.gateway else {}),
                    **({"AuxiliaryAddresses": dict(c.aux_addresses)} if c.aux_addresses else {}),
                }
                for c in net.ipam
            ],
        },
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": dict(net.options),
        "Labels": dict(net.labels),
        "Status": {"IPAM": {"Subnets": subnets}},
    }


def _str_map(v: Any, what: str) -> dict[str, str]:
    return validate.str_map(v, what)


def _bool(v: Any, what: str, default: bool) -> bool:
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InvalidConfig(f"invalid {what}: want true or false")
    return v


def spec_from_request(body: Mapping[str, Any]) -> NetworkSpec:
    """The fields of docker's ``POST /networks/create`` as a NetworkSpec.

    Raises:
        InvalidConfig: a missing name, a field of the wrong type.
    """
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise InvalidConfig("a network name is required")
    driver = body.get("Driver", "bridge")
    if driver is None:
        driver = "bridge"
    if not isinstance(driver, str) or not driver:
        raise InvalidConfig("invalid Driver: want a non-empty string")
    validate.no_control(driver, "Driver")
    ipam = body.get("IPAM")
    if ipam is None:
        ipam = {}
    if not isinstance(ipam, dict):
        raise InvalidConfig("invalid IPAM: want an object")
    cfgs = []
    config = ipam.get("Config")
    if config is None:
        config = []
    if not isinstance(config, list):
        raise InvalidConfig("invalid IPAM.Config: want a list")
    for i, c in enumerate(config):
        if not isinstance(c, dict):
            raise InvalidConfig(f"invalid IPAM.Config[{i}]: want an object")
        sub = c.get("Subnet", "")
        if not isinstance(sub, str) or not sub:
            raise InvalidConfig(f"IPAM.Config[{i}] has no Subnet")
        gw, rng = c.get("Gateway") or "", c.get("IPRange") or ""
        if not isinstance(gw, str) or not isinstance(rng, str):
            raise InvalidConfig(f"invalid IPAM.Config[{i}]: Gateway and IPRange are strings")
        aux = _str_map(c.get("AuxiliaryAddresses") or c.get("AuxAddress"), "AuxiliaryAddresses")
        cfgs.append(IPAMConfig(sub, gw, rng, aux))
    ipam_driver = ipam.get("Driver")
    if ipam_driver is None:
        ipam_driver = "default"
    if not isinstance(ipam_driver, str) or not ipam_driver:
        raise InvalidConfig("invalid IPAM.Driver: want a non-empty string")
    validate.no_control(ipam_driver, "IPAM.Driver")
    return NetworkSpec(
        name=name,
        driver=driver,
        ipam=cfgs,
        ipam_driver=ipam_driver,
        ipam_options=_str_map(ipam.get("Options"), "IPAM.Options"),
        enable_ipv4=_bool(body.get("EnableIPv4"), "EnableIPv4", True),
        enable_ipv6=_bool(body.get("EnableIPv6"), "EnableIPv6", False),
        internal=_bool(body.get("Internal"), "Internal", False),
        attachable=_bool(body.get("Attachable"), "Attachable", False),
        options=_str_map(body.get("Options"), "Options"),
        labels=_str_map(body.get("Labels"), "Labels"),
    )


FILTER_KEYS = ("driver", "id", "label", "name", "scope", "type", "dangling")


def match_filters(
    net: Network, filters: Mapping[str, Sequence[str]], has_endpoints: bool = False
) -> bool:
    """docker network ls -f: values of one key are OR'ed, keys AND'ed.

    ``name`` and ``id`` match substrings/prefixes as docker's; ``label`` is ``k``
    or ``k=v``; ``type`` is custom|builtin; ``dangling`` true = no endpoints.

    Raises:
        InvalidConfig: an unknown filter key or a bad value.
    """
    for key, values in filters.items():
        if key not in FILTER_KEYS:
            raise InvalidConfig(f"invalid filter {key!r}")
        if not values:
            continue
        ok = False
        for v in values:
            if key == "driver":
                ok = net.driver == v or (v == "none" and net.driver == "null")
            elif key == "id":
                ok = net.id.startswith(v)
            elif key == "name":
                ok = v in net.name
            elif key == "scope":
                ok = v == net.scope
            elif key == "type":
                if v not in ("custom", "builtin"):
                    raise InvalidConfig(f"invalid filter 'type={v}'")
                ok = (v == "builtin") == net.builtin
            elif key == "label":
                k, eq, want = v.partition("=")
                ok = k in net.labels and (not eq or net.labels[k] == want)
            elif key == "dangling":
                if v not in ("true", "false", "1", "0"):
                    raise InvalidConfig(f"invalid filter 'dangling={v}'")
                ok = (v in ("true", "1")) == (not has_endpoints and not net.builtin)
            if ok:
                break
        if not ok:
            return False
    return True
