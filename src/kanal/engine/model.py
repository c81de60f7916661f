"""The network manager's objects (CNM): networks, endpoints, and how they are stored.

A Network is a group of endpoints that talk directly; an Endpoint joins one
sandbox (a network namespace) to one network and holds its addresses; a sandbox
is identified here by its id and netns path only (the sandbox package owns the
processes). Objects are plain dataclasses, stored as JSON in the state store
under ``networks/<id>`` and ``endpoints/<network id>/<endpoint id>``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from kanal import validate

__all__ = [
    "Endpoint",
    "IPAMConfig",
    "Network",
    "NetworkSpec",
    "PortBinding",
    "SandboxRef",
    "new_id",
    "now",
    "validate_name",
]


def validate_name(name: str, what: str = "network") -> str:
    """Docker's name rule (kanal.validate.name: whole-string match, at most 128)."""
    return validate.name(name, what)


def new_id() -> str:
    return secrets.token_hex(32)


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class IPAMConfig:
    """One subnet of a network (docker's IPAM.Config entry)."""

    subnet: str
    gateway: str = ""
    ip_range: str = ""
    aux_addresses: dict[str, str] = field(default_factory=dict)


@dataclass
class PortBinding:
    """One published port: host (ip, port) → container port, as docker's -p."""

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0


@dataclass
class Network:
    id: str
    name: str
    driver: str
    created: str = ""
    scope: str = "local"
    internal: bool = False
    attachable: bool = False
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    ipam_driver: str = "default"
    ipam: list[IPAMConfig] = field(default_factory=list)
    ipam_options: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    builtin: bool = False
    # docker's configuration-only network (--config-only): IPAM and options kept for
    # networks made --config-from it; no driver, no kernel object, no endpoints
    config_only: bool = False
    config_from: str = ""  # the configuration-only network this one's config came from
    # A remote IPAM driver's pool ids and the addresses held for the network.
    ipam_state: dict[str, Any] = field(default_factory=dict)
    # What the driver decided at creation (bridge name, ...), kept so that a
    # restarted daemon programs exactly the same kernel objects.
    driver_state: dict[str, Any] = field(default_factory=dict)

    @property
    def mark(self) -> str:
        """What kernel objects kanal made for this network carry (a link alias):
        kanal's claim, visible with ``ip -d link``, checked before any delete."""
        return f"kanal:net:{self.id}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Network:
        d = json.loads(data)
        d["ipam"] = [IPAMConfig(**c) for c in d.get("ipam", [])]
        return cls(**d)


@dataclass
class Endpoint:
    id: str
    network_id: str
    name: str  # the sandbox's name: what embedded DNS answers for
    sandbox_id: str = ""
    netns: str = ""
    ifname: str = ""
    mac: str = ""
    ipv4: str = ""  # CIDR, host bits set: 172.18.0.2/16
    ipv6: str = ""
    static_ip: bool = False
    # The sandbox's default route goes through this network (the first joined
    # non-internal network has it, as docker's default gateway).
    default_gateway: bool = False
    aliases: list[str] = field(default_factory=list)
    ports: list[PortBinding] = field(default_factory=list)
    created: str = ""
    driver_state: dict[str, Any] = field(default_factory=dict)
    # docker's links on this network: "<sandbox name>:<alias>" (the alias resolves,
    # for this endpoint's sandbox only, to the other sandbox on the same network)
    links: list[str] = field(default_factory=list)
    link_local_ips: list[str] = field(default_factory=list)  # extra addresses (--link-local-ip)
    driver_opts: dict[str, str] = field(default_factory=dict)  # --driver-opt, as given

    @property
    def mark(self) -> str:
        """The alias of links kanal made for this endpoint outside any sandbox."""
        return f"kanal:ep:{self.id}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Endpoint:
        d = json.loads(data)
        d["ports"] = [PortBinding(**p) for p in d.get("ports", [])]
        return cls(**d)


@dataclass
class NetworkSpec:
    """What ``kanal network create`` asks for (docker's flags)."""

    name: str
    driver: str = "bridge"
    ipam: list[IPAMConfig] = field(default_factory=list)
    ipam_driver: str = "default"
    ipam_options: dict[str, str] = field(default_factory=dict)
    enable_ipv4: bool = True
    enable_ipv6: bool = False
    internal: bool = False
    attachable: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    scope: str = ""  # --scope: "" (the driver's), local or global; swarm is refused
    config_only: bool = False
    config_from: str = ""


@dataclass(frozen=True)
class SandboxRef:
    """The sandbox an endpoint joins: its id, name (for DNS) and netns path."""

    id: str
    name: str
    netns: str
