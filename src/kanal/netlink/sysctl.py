"""Per-namespace sysctls (``/proc/sys/net`` resolves to the writer's namespace)."""

from __future__ import annotations

import os

from kanal.errors import InvalidConfig, IOFailure, NotFound

__all__ = ["read_sysctl", "sysctl_path", "write_sysctl"]


def sysctl_path(key: str) -> str:
    """``net.ipv4.conf.eth0.arp_notify`` or ``net/ipv4/...`` -> its /proc/sys path.

    Only ``net.*`` keys, which are namespace-scoped, are accepted; ``..`` is refused.
    """
    rel = key.replace(".", "/") if "/" not in key else key
    parts = rel.split("/")
    if parts[0] != "net" or any(p in ("", ".", "..") for p in parts):
        raise InvalidConfig(f"invalid sysctl key {key!r}")
    return "/proc/sys/" + rel


def write_sysctl(key: str, value: str) -> None:
    """Write in the calling thread's namespace; NotFound if the key does not exist."""
    path = sysctl_path(key)
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError as e:
        raise NotFound(f"sysctl {key!r} does not exist") from e
    try:
        os.write(fd, value.encode())
    except OSError as e:
        raise IOFailure(f"failed to write sysctl {key!r}", str(e)) from e
    finally:
        os.close(fd)


def read_sysctl(key: str) -> str:
    try:
        with open(sysctl_path(key)) as f:
            return f.read().strip()
    except FileNotFoundError as e:
        raise NotFound(f"sysctl {key!r} does not exist") from e
