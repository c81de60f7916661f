"""The REST API's answers: docker's JSON shapes for the engine's objects.

The API and the CLI speak what ``docker network`` speaks (docs/rest-api.md):
:func:`network_json` is one element of ``docker network inspect``,
:func:`sandbox_json` kanal's container inspect, :func:`endpoint_json` one row of
``GET /endpoints``; :func:`match_filters` is ``ls -f``; the ``*_event`` functions
are the objects ``GET /events`` streams.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kanal.engine.model import Endpoint, Network
from kanal.errors import InvalidConfig

if TYPE_CHECKING:
    from kanal.engine.sandboxes import Sandbox

__all__ = [
    "FILTER_KEYS",
    "container_event",
    "endpoint_event",
    "endpoint_json",
    "match_filters",
    "net_event",
    "network_json",
    "sandbox_json",
]


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


def endpoint_json(ep: Endpoint, network_name: str) -> dict[str, Any]:
    """One endpoint of ``GET /endpoints``."""
    return {
        "Id": ep.id,
        "NetworkID": ep.network_id,
        "Network": network_name,
        "SandboxID": ep.sandbox_id,
        "Name": ep.name,
        "Interface": ep.ifname,
        "MacAddress": ep.mac,
        "IPv4Address": ep.ipv4,
        "IPv6Address": ep.ipv6,
        "Aliases": ep.aliases,
        "Ports": [
            {
                "ContainerPort": p.container_port,
                "Protocol": p.protocol,
                "HostIp": p.host_ip,
                "HostPort": p.host_port,
            }
            for p in ep.ports
        ],
    }


def sandbox_json(
    sb: Sandbox, eps: Sequence[Endpoint], network_names: Mapping[str, str]
) -> dict[str, Any]:
    """A sandbox as ``GET /sandboxes/{id}`` shows it (``eps``: its endpoints;
    ``network_names``: network id → name)."""
    nets = {ep.network_id: ep for ep in eps}
    return {
        "Id": sb.id,
        "Name": sb.name,
        "Cmd": sb.argv,
        "State": sb.state,
        "Pid": sb.pid,
        "ExitCode": sb.exit_code,
        "Created": sb.created,
        "NetworkMode": sb.network_mode,
        "Netns": sb.netns,
        "Hostname": sb.hostname,
        "Error": sb.error,
        "LostAddresses": sb.lost,
        "Networks": {
            network_names.get(nid, nid): {
                "EndpointID": ep.id,
                "IPAddress": ep.ipv4.split("/")[0] if ep.ipv4 else "",
                "IPv6Address": ep.ipv6.split("/")[0] if ep.ipv6 else "",
                "MacAddress": ep.mac,
                "Aliases": ep.aliases,
            }
            for nid, ep in nets.items()
        },
        "Ports": {
            f"{p.container_port}/{p.protocol}": [
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)}
            ]
            for ep in eps
            for p in ep.ports
        },
    }


def net_event(action: str, net: Network) -> dict[str, Any]:
    """A network was created or destroyed."""
    return {
        "Type": "network",
        "Action": action,
        "Actor": {"ID": net.id, "Attributes": {"name": net.name, "type": net.driver}},
    }


def endpoint_event(event: str, net: Network, ep: Endpoint) -> dict[str, Any]:
    """A sandbox was connected to or disconnected from a network."""
    return {
        "Type": "network",
        "Action": event,
        "Actor": {
            "ID": net.id,
            "Attributes": {"name": net.name, "container": ep.sandbox_id},
        },
    }


def container_event(action: str, sandbox_id: str, name: str = "") -> dict[str, Any]:
    """A sandbox started, stopped, was killed, restarted or went (``name``: docker's
    ``Actor.Attributes.name``)."""
    actor: dict[str, Any] = {"ID": sandbox_id, "Attributes": {"name": name} if name else {}}
    return {"Type": "container", "Action": action, "Actor": actor}


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
