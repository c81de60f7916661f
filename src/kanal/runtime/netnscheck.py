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

__all__ = ["check_netns"]

_NS_GET_NSTYPE = 0xB703  # ioctl of an nsfs file: the namespace's CLONE_* type
_CLONE_NEWNET = 0x40000000


def check_netns(path: str) -> None:
    """Raise unless ``path`` is a network namespace here (before any plugin runs).

    Raises:
        NotFound: no such file. InvalidEnv: not a namespace (an empty regular file
            says why: a mount made in another mount namespace), or another type.
    """
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NotFound(f"network namespace {path} does not exist") from e
    except OSError as e:
        raise InvalidEnv(f"cannot open network namespace {path}", e.strerror or str(e)) from e
    try:
        nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        st = os.fstat(fd)
        if st.st_size == 0 and not os.path.isdir(path):
            raise InvalidEnv(
                f"{path} is not a network namespace in this mount namespace "
                f"(mnt {_mnt()}): it is the empty file a namespace mounted in another "
                "mount namespace leaves; run this and whatever made the namespace in one "
                "mount namespace (nsenter --net=PATH, not ip netns exec, which makes a "
                "new one per call)"
            ) from None
        raise InvalidEnv(f"{path} is not a network namespace") from None
    finally:
        os.close(fd)
    if nstype != _CLONE_NEWNET:
        raise InvalidEnv(f"{path} is not a network namespace (another namespace type)")


def _mnt() -> str:
    try:
        return os.readlink("/proc/self/ns/mnt").removeprefix("mnt:")
    except OSError:
        return "?"
