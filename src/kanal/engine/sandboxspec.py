"""What ``kanal run`` asks for, and the checks it passes before anything is made."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kanal import validate
from kanal.engine.model import PortBinding, validate_name
from kanal.errors import InvalidConfig, KanalError

__all__ = ["NetworkRequest", "SandboxSpec", "checked_spec"]


@dataclass
class NetworkRequest:
    network: str
    ip: str = ""
    ip6: str = ""
    aliases: list[str] = field(default_factory=list)


@dataclass
class SandboxSpec:
    """What ``kanal run`` asks for."""

    argv: list[str]
    name: str = ""
    network_mode: str = "bridge"  # a network name, "host", "none" or "container:<name>"
    networks: list[NetworkRequest] = field(default_factory=list)
    publish: list[PortBinding] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    workdir: str = ""
    pid_mode: str = ""  # "" (a PID namespace of its own) or "host" (kanald's)


def checked_spec(spec: SandboxSpec, sid: str) -> tuple[str, str]:
    """The sandbox's name and network mode, once ``spec`` is found valid.

    Raises InvalidConfig."""
    if not spec.argv:
        raise InvalidConfig("no command given")
    validate.sandbox(spec)
    name = spec.name or f"kanal_{sid[:8]}"
    validate_name(name, "container")
    mode = spec.network_mode or "bridge"
    for a in spec.dns:
        try:
            ipaddress.ip_address(a)
        except ValueError:
            raise InvalidConfig(f"invalid DNS server {a!r}") from None
    for h in spec.extra_hosts:
        host, _, ip = h.partition(":")
        try:
            ipaddress.ip_address(ip)
            validate_name(host, "host")
        except (ValueError, KanalError):
            raise InvalidConfig(f"invalid --add-host {h!r}: want NAME:IP") from None
    if spec.pid_mode not in ("", "host"):
        raise InvalidConfig(f"invalid --pid {spec.pid_mode!r}: want host (or nothing)")
    if mode.startswith("container:") and (spec.publish or spec.networks or spec.hostname):
        raise InvalidConfig(
            "conflicting options: --network container: shares the other's network "
            "(no -p, --network or --hostname)"
        )
    return name, mode
