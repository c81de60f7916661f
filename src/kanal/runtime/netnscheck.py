"""Is a CNI_NETNS path a network namespace, as seen from this mount namespace?

A namespace made with ``ip netns add`` is a bind mount on an empty file in
/run/netns. A process in another mount namespace (``ip netns exec`` makes one
per call, ``unshare -m`` too) sees only the empty file: handed to a plugin it
ends in a kernel error (``failed to create veth ... Invalid argument``) that
says nothing about the cause. The runtime checks first and says what to do.
"""

from __future__ import annotations

import os

from kanal.errors import InvalidEnv, NotFound
from kanal.netlink.ns import netns_file_kind

__all__ = ["check_netns"]


def check_netns(path: str) -> None:
    """Raise unless ``path`` is a network namespace here (before any plugin runs).

    Raises:
        NotFound: no such file. InvalidEnv: not a namespace (an empty regular file
            says why: a mount made in another mount namespace), or another type.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NotFound(f"network namespace {path} does not exist") from e
    except OSError as e:
        raise InvalidEnv(f"cannot open network namespace {path}", e.strerror or str(e)) from e
    try:
        kind = netns_file_kind(fd)
    finally:
        os.close(fd)
    if kind == "empty-file" and not os.path.isdir(path):
        raise InvalidEnv(
            f"{path} is not a network namespace in this mount namespace "
            f"(mnt {_mnt()}): it is the empty file a namespace mounted in another "
            "mount namespace leaves; run this and whatever made the namespace in one "
            "mount namespace (nsenter --net=PATH, not ip netns exec, which makes a "
            "new one per call)"
        )
    if kind in ("empty-file", "file"):
        raise InvalidEnv(f"{path} is not a network namespace")
    if kind != "net":
        raise InvalidEnv(f"{path} is not a network namespace (another namespace type)")


def _mnt() -> str:
    try:
        return os.readlink("/proc/self/ns/mnt").removeprefix("mnt:")
    except OSError:
        return "?"
