"""Published ports as the Docker plugin protocol writes them (docs/cnm.md, "Ports").

Shared by the served plugin (:mod:`kanal.dockerplugin.messages`) and the remote
driver (:mod:`kanal.engine.drivers.remote`): IP protocol numbers and the
``com.docker.network.portmap`` list.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kanal.engine.model import PortBinding

__all__ = ["PROTOCOLS", "PROTOCOL_NUMBERS", "portmap_wire"]

PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
PROTOCOL_NUMBERS = {v: k for k, v in PROTOCOLS.items()}


def portmap_wire(ports: Iterable[PortBinding], ip: str) -> list[dict[str, Any]]:
    """Published ports (engine PortBindings) as ``com.docker.network.portmap``."""
    return [
        {
            "Proto": PROTOCOL_NUMBERS[p.protocol],
            "IP": ip,
            "Port": p.container_port,
            "HostIP": p.host_ip,
            "HostPort": p.host_port,
            "HostPortEnd": p.host_port,
        }
        for p in ports
    ]
