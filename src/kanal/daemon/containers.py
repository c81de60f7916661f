"""Sandboxes in docker's container shapes: ``docker inspect`` and ``docker ps``.

:func:`container_json` is what ``GET /containers/{id}/json`` answers and ``kanal
inspect`` prints: docker's fields that mean something for a sandbox (State,
Config, HostConfig's network fields, NetworkSettings with SandboxKey, Ports and
one entry per network), the rest at docker's zero values so that templates
written for docker (``{{.State.Pid}}``, ``{{.NetworkSettings.SandboxKey}}``,
``{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}``) work unchanged.
kanal adds ``LostAddresses`` (overlay addresses freed while the host was cut
off). :func:`container_summary` is one element of ``GET /containers/json``.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kanal.errors import InvalidConfig

if TYPE_CHECKING:
    from kanal.engine.model import Endpoint, Network
    from kanal.engine.sandboxes import Sandbox

__all__ = [
    "CONTAINER_FILTERS",
    "check_filters",
    "container_json",
    "container_summary",
    "human_duration",
    "match_container",
    "status_text",
]

#: Go's zero time as docker prints an unset StartedAt/FinishedAt.
ZERO_TIME = "0001-01-01T00:00:00Z"


def _ports(sb: Sandbox, eps: Sequence[Endpoint]) -> dict[str, Any]:
    """NetworkSettings.Ports: every published container port → its host bindings."""
    out: dict[str, Any] = {}
    for ep in eps:
        for p in ep.ports:
            out.setdefault(f"{p.container_port}/{p.protocol}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)}
            )
    return out


def _gateway(net: Network | None, cidr: str) -> str:
    if net is None or not cidr:
        return ""
    ip = ipaddress.ip_interface(cidr).ip
    for c in net.ipam:
        if c.gateway and ip in ipaddress.ip_network(c.subnet):
            return c.gateway
    return ""


def _endpoint_settings(
    sb: Sandbox, ep: Endpoint | None, net: Network | None, name: str, parked: dict[str, Any]
) -> dict[str, Any]:
    """One NetworkSettings.Networks entry (a stopped sandbox's: its request only)."""
    req = next((r for r in sb.requests if r.get("network") == name), None)
    ip4 = (ep.ipv4 if ep else "") or ""
    ip6 = (ep.ipv6 if ep else "") or ""
    static4 = (req or {}).get("ip") or parked.get("ip", "")
    static6 = (req or {}).get("ip6") or parked.get("ip6", "")
    aliases = list(ep.aliases if ep else parked.get("aliases", []))
    return {
        "IPAMConfig": (
            {"IPv4Address": static4, "IPv6Address": static6} if static4 or static6 else None
        ),
        "Links": None,
        "Aliases": aliases or None,
        "MacAddress": ep.mac if ep else "",
        "DriverOpts": None,
        "GwPriority": 0,
        "NetworkID": net.id if net else parked.get("network", ""),
        "EndpointID": ep.id if ep else "",
        "Gateway": _gateway(net, ip4),
        "IPAddress": ip4.split("/")[0] if ip4 else "",
        "IPPrefixLen": int(ip4.split("/")[1]) if ip4 else 0,
        "IPv6Gateway": _gateway(net, ip6),
        "GlobalIPv6Address": ip6.split("/")[0] if ip6 else "",
        "GlobalIPv6PrefixLen": int(ip6.split("/")[1]) if ip6 else 0,
        "DNSNames": [sb.name, sb.id[:12], *aliases]
        if net is not None and not net.builtin
        else None,
    }


def _networks(sb: Sandbox, eps: Sequence[Endpoint], nets: Mapping[str, Network]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ep in sorted(eps, key=lambda e: e.created):
        net = nets.get(ep.network_id)
        name = net.name if net else ep.network_id
        out[name] = _endpoint_settings(sb, ep, net, name, {})
    for p in sb.parked:  # stopped: the networks a start joins again, without addresses
        net = nets.get(p["network"])
        name = net.name if net else p.get("name", p["network"])
        out.setdefault(name, _endpoint_settings(sb, None, net, name, p))
    if not out and sb.network_mode in ("host", "none"):
        net = next((n for n in nets.values() if n.name == sb.network_mode), None)
        out[sb.network_mode] = _endpoint_settings(sb, None, net, sb.network_mode, {})
    return out


_LEGACY: dict[str, Any] = {
    "EndpointID": "",
    "Gateway": "",
    "GlobalIPv6Address": "",
    "GlobalIPv6PrefixLen": 0,
    "IPAddress": "",
    "IPPrefixLen": 0,
    "IPv6Gateway": "",
    "MacAddress": "",
}


def _port_bindings(sb: Sandbox) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in sb.publish:
        out.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"]) if p["host_port"] else ""}
        )
    return out


# long: docker's container object is one literal, field by field, as docker prints it
def container_json(
    sb: Sandbox,
    eps: Sequence[Endpoint],
    nets: Mapping[str, Network],
    *,
    pid: int,
    files_dir: str,
) -> dict[str, Any]:
    """``docker inspect``'s object for a sandbox (``eps``: its endpoints; ``nets``:
    network id → network; ``pid``: its first process, 0 when not running;
    ``files_dir``: where its hosts/resolv.conf/hostname/log are)."""
    running = sb.state == "running"
    networks = _networks(sb, eps, nets)
    bridge = networks.get("bridge") or {}
    ports = _port_bindings(sb)
    exposed: dict[str, Any] | None = {k: {} for k in ports} or None
    return {
        "Id": sb.id,
        "Created": sb.created,
        "Path": sb.argv[0] if sb.argv else "",
        "Args": sb.argv[1:],
        "State": {
            "Status": sb.state if not sb.error else "dead",
            "Running": running,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": bool(sb.error),
            "Pid": pid if running else 0,
            "ExitCode": sb.exit_code or 0,
            "Error": sb.error,
            "StartedAt": sb.started_at or ZERO_TIME,
            "FinishedAt": sb.finished_at or ZERO_TIME,
        },
        "Image": "",
        "ResolvConfPath": os.path.join(files_dir, "resolv.conf"),
        "HostnamePath": os.path.join(files_dir, "hostname"),
        "HostsPath": os.path.join(files_dir, "hosts"),
        "LogPath": os.path.join(files_dir, "log"),
        "Name": "/" + sb.name,
        "RestartCount": 0,
        "Driver": "kanal",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "NetworkMode": sb.network_mode,
            "PortBindings": ports,
            "PublishAllPorts": False,
            "Dns": list(sb.dns),
            "DnsOptions": list(sb.dns_options),
            "DnsSearch": list(sb.dns_search),
            "ExtraHosts": list(sb.extra_hosts) or None,
            "PidMode": sb.pid_mode,
            "UTSMode": "",
            "Links": None,
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "AutoRemove": False,
        },
        "Mounts": [],
        "Config": {
            "Hostname": sb.hostname,
            "Domainname": "",
            "User": "",
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "ExposedPorts": exposed,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": [f"{k}={v}" for k, v in sb.env.items()],
            "Cmd": list(sb.argv),
            "Image": "",
            "Volumes": None,
            "WorkingDir": sb.workdir,
            "Entrypoint": None,
            "OnBuild": None,
            "Labels": {},
        },
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": sb.id if sb.own_netns else "",
            "SandboxKey": sb.netns if sb.own_netns else "",
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": _ports(sb, eps),
            "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None,
            # docker's deprecated top-level fields: the default bridge's endpoint
            **{k: bridge.get(k, z) for k, z in _LEGACY.items()},
            "Networks": networks,
        },
        "LostAddresses": sb.lost,
    }


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: "Less than a second", "5 seconds", "About a minute"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // (24 * 7)} weeks"
    if h < 24 * 365 * 2:
        return f"{h // (24 * 30)} months"
    return f"{h // (24 * 365)} years"


def _since(stamp: str, now: datetime) -> float:
    if not stamp:
        return 0.0
    return (now - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()


def status_text(sb: Sandbox, now: datetime | None = None) -> str:
    """docker ps's STATUS: "Up 5 seconds", "Exited (143) 2 minutes ago", "Created"."""
    now = now or datetime.now(UTC)
    if sb.error:
        return "Dead"
    if sb.state == "running":
        return "Up " + human_duration(_since(sb.started_at or sb.created, now))
    if sb.state == "exited":
        ago = human_duration(_since(sb.finished_at, now)) + " ago" if sb.finished_at else ""
        return f"Exited ({sb.exit_code or 0}) {ago}".rstrip()
    return "Created"


def container_summary(
    sb: Sandbox, eps: Sequence[Endpoint], nets: Mapping[str, Network]
) -> dict[str, Any]:
    """One element of ``GET /containers/json`` (docker ps)."""
    created = datetime.fromisoformat(sb.created.replace("Z", "+00:00")) if sb.created else None
    ports = [
        {
            "IP": p.host_ip or "0.0.0.0",
            "PrivatePort": p.container_port,
            "PublicPort": p.host_port,
            "Type": p.protocol,
        }
        for ep in eps
        for p in ep.ports
    ]
    return {
        "Id": sb.id,
        "Names": ["/" + sb.name],
        "Image": "",
        "ImageID": "",
        "Command": " ".join(sb.argv),
        "Created": int(created.timestamp()) if created else 0,
        "Ports": ports,
        "Labels": {},
        "State": sb.state if not sb.error else "dead",
        "Status": status_text(sb),
        "HostConfig": {"NetworkMode": sb.network_mode},
        "NetworkSettings": {"Networks": _networks(sb, eps, nets)},
        "Mounts": [],
    }


#: docker ps --filter keys kanal answers (docker's other keys are about images,
#: volumes and health, which sandboxes have none of).
CONTAINER_FILTERS = ("id", "name", "status", "network", "exited", "publish", "label")


_STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def check_filters(filters: Mapping[str, Sequence[str]]) -> None:
    """Refuse unknown keys and bad values before any sandbox is looked at (so an
    empty list never hides a typo). Raises InvalidConfig in docker's words."""
    for key, values in filters.items():
        if key not in CONTAINER_FILTERS:
            raise InvalidConfig(f"invalid filter '{key}'")
        for v in values:
            if key == "status" and v not in _STATUSES:
                raise InvalidConfig(f"invalid filter 'status={v}': Invalid filter 'status={v}'")
            if key == "exited" and not v.lstrip("-").isdigit():
                raise InvalidConfig(f"invalid filter 'exited={v}'")


def match_container(
    sb: Sandbox, summary: Mapping[str, Any], filters: Mapping[str, Sequence[str]]
) -> bool:
    """docker ps --filter: values of one key OR'ed, keys AND'ed.

    Raises:
        InvalidConfig: an unknown key or a bad value (docker's words).
    """
    check_filters(filters)
    for key, values in filters.items():
        if key not in CONTAINER_FILTERS:
            raise InvalidConfig(f"invalid filter '{key}'")
        if not values:
            continue
        ok = False
        for v in values:
            if key == "id":
                ok = sb.id.startswith(v)
            elif key == "name":
                ok = v.lstrip("/") in sb.name
            elif key == "status":
                ok = summary["State"] == v
            elif key == "network":
                nets = summary["NetworkSettings"]["Networks"]
                ok = v in nets or any(
                    n["NetworkID"].startswith(v) for n in nets.values() if n["NetworkID"]
                )
            elif key == "exited":
                ok = sb.state == "exited" and (sb.exit_code or 0) == int(v)
            elif key == "publish":
                port, _, proto = v.partition("/")
                ok = any(
                    str(p["PublicPort"]) == port and (not proto or p["Type"] == proto)
                    for p in summary["Ports"]
                )
            elif key == "label":
                ok = False  # sandboxes have no labels
            if ok:
                break
        if not ok:
            return False
    return True
