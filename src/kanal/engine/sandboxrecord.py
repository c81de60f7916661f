"""A sandbox's record: what the store keeps under ``sandboxes/<id>``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Sandbox"]


@dataclass
class Sandbox:
    id: str
    name: str
    argv: list[str]
    netns: str
    own_netns: bool
    network_mode: str
    state: str = "created"  # created | running | exited
    pid: int = 0
    exit_code: int | None = None
    created: str = ""
    started: float = 0.0  # /proc/<pid>/stat starttime (ticks): tells a reused pid apart
    hostname: str = ""
    env: dict[str, str] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    workdir: str = ""
    # (device, inode) of its own namespace: found again after an outside unmount
    netns_id: list[int] = field(default_factory=list)
    error: str = ""  # why it is broken (docker's State.Error); "" when it is not
    # overlay addresses the cluster freed while this host was cut off (the sandbox was
    # disconnected from those networks): {"Network", "Address", "At"}
    lost: list[dict[str, str]] = field(default_factory=list)
    pid_mode: str = ""  # "host": no PID namespace of its own (kanal run --pid host)
    started_at: str = ""
    finished_at: str = ""
    # what kanal run asked for: ports published on the first network ({"container_port",
    # "protocol", "host_ip", "host_port"}) and the networks ({"network", "ip", "ip6",
    # "aliases"}), as docker's HostConfig and NetworkingConfig keep them
    publish: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    # the endpoints a stop released, taken again by the next start (same network,
    # same static addresses, aliases; "ports": whether it carried the published ports)
    parked: list[dict[str, Any]] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)  # --expose / -P: "80/tcp"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Sandbox:
        return cls(**json.loads(data))
