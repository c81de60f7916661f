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
    "created_at",
    "endpoint_event",
    "endpoint_json",
    "match_filters",
    "net_event",
    "network_json",
    "prune_until",
    "sandbox_json",
    "sandbox_ports",
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
        "ConfigFrom": {"Network": net.config_from},
        "ConfigOnly": net.config_only,
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
        "Links": ep.links,
        "LinkLocalIPs": ep.link_local_ips,
        "DriverOpts": ep.driver_opts,
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
                "Links": ep.links,
                "LinkLocalIPs": ep.link_local_ips,
                "DriverOpts": ep.driver_opts,
            }
            for nid, ep in nets.items()
        },
        "Ports": sandbox_ports(sb, eps),
    }


def sandbox_ports(sb: Sandbox, eps: Sequence[Endpoint]) -> dict[str, Any]:
    """docker's ``NetworkSettings.Ports``: each container port with every host
    binding it has (two ``-p`` for one port: both), and an exposed port that is
    not published with ``None``."""
    out: dict[str, Any] = {p: None for p in sb.exposed}
    for ep in eps:
        for p in ep.ports:
            key = f"{p.container_port}/{p.protocol}"
            if out.get(key) is None:
                out[key] = []
            out[key].append({"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    return out


def created_at(net: Network) -> float:
    """When the network was made, in seconds since the epoch (0 when unknown)."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(net.created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def prune_until(values: Sequence[str], now: float | None = None) -> float | None:
    """docker's ``prune --filter until=X`` as a time in seconds since the epoch: X a
    Unix timestamp, an RFC 3339 time or date, or a Go duration before now
    (``24h``, ``1h30m``). None when there is no such filter.

    Raises:
        InvalidConfig: more than one, or a value none of those.
    """
    import re
    import time
    from datetime import datetime

    if not values:
        return None
    if len(values) > 1:
        raise InvalidConfig("more than one until filter specified")
    v = values[0].strip()
    now = time.time() if now is None else now
    if re.fullmatch(r"-?\d+(\.\d+)?", v):
        return float(v)
    m = re.fullmatch(r"([+-]?)((?:\d+(?:\.\d*)?(?:ns|us|\u00b5s|ms|s|m|h))+)", v)
    if m:
        secs = sum(
            float(n) * _DURATION_UNITS[u]
            for n, u in re.findall(r"(\d+(?:\.\d*)?)(ns|us|\u00b5s|ms|s|m|h)", m.group(2))
        )
        return now - (-secs if m.group(1) == "-" else secs)
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidConfig(
            f"invalid until filter {v!r}: want a Unix timestamp, an RFC 3339 time or date, "
            "or a duration such as 24h"
        ) from None
    if t.tzinfo is None:
        from datetime import UTC

        t = t.replace(tzinfo=UTC)  # docker reads a time without zone as UTC
    return t.timestamp()


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
            "Attributes": {"name": net.name, "container": ep.sandbox_id, "type": net.driver},
        },
    }


def container_event(
    action: str, sandbox_id: str, attributes: Mapping[str, str] | str | None = None
) -> dict[str, Any]:
    """A sandbox was created, started, died, stopped, killed, restarted or went
    (docker's container events; ``attributes`` a mapping, or the sandbox's name for
    ``Actor.Attributes.name``; ``status`` and ``id`` are docker's older copies of
    Action and Actor.ID)."""
    if isinstance(attributes, str):
        attributes = {"name": attributes} if attributes else {}
    return {
        "Type": "container",
        "Action": action,
        "Actor": {"ID": sandbox_id, "Attributes": dict(attributes or {})},
        "status": action,
        "id": sandbox_id,
    }


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
