"""What ``kanal run`` asks for, and the checks it passes before anything is made."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kanal import validate
from kanal.engine.model import PortBinding, validate_name
from kanal.errors import InvalidConfig, NotFound

__all__ = ["NetworkRequest", "SandboxSpec", "checked_spec", "link_names"]


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
    # of the first network, as docker's run flags: --mac-address, --link NAME:ALIAS
    mac_address: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)  # --expose: "80/tcp"
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
        validate.extra_host(h)
    if spec.pid_mode not in ("", "host"):
        raise InvalidConfig(f"invalid --pid {spec.pid_mode!r}: want host (or nothing)")
    if mode.startswith("container:") and (
        spec.publish or spec.networks or spec.hostname or spec.mac_address or spec.exposed
    ):
        raise InvalidConfig(
            "conflicting options: --network container: shares the other's network "
            "(no -p, -P, --expose, --mac-address, --network or --hostname)"
        )
    if mode in ("host", "none") and (spec.mac_address or spec.links):
        raise InvalidConfig(
            f"conflicting options: --network {mode} has no endpoint for --mac-address or --link"
        )
    return name, mode


def link_names(links: Sequence[tuple[str, str]], sandboxes: Sequence[Any]) -> list[str]:
    """``--link NAME:ALIAS`` pairs as ``<sandbox name>:<alias>``, NAME an existing
    sandbox's id or name (``sandboxes``: those there are).

    Raises:
        NotFound: no such sandbox (docker's words).
    """
    out = []
    for ref, alias in links:
        hit = [s.name for s in sandboxes if ref in (s.id, s.name)]
        if not hit:
            raise NotFound(f"could not get container for {ref}: No such container: {ref}")
        out.append(f"{hit[0]}:{alias}")
    return out
