"""Network namespace handles.

Why threads: ``setns(2)`` changes only the calling thread, so a short-lived thread
that enters the target namespace can create sockets there or write its
``/proc/sys/net`` entries while the daemon's own threads stay in the host
namespace. pyroute2's own ``netns=`` support forks a child per socket, which
costs more than the whole netlink work of an ADD.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

from kanal.errors import Internal, NotFound

__all__ = [
    "CLONE_NEWNET",
    "current_netns_id",
    "netns_id",
    "netns_socket",
    "open_netns",
    "run_in_netns",
]

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class NetnsNotFound(NotFound):
    """The namespace path does not exist or is not a network namespace."""


def open_netns(path: str) -> int:
    """Open ``path`` (e.g. /run/netns/x, /proc/PID/ns/net) and return an fd.

    Raises NetnsNotFound when the path is missing or not a namespace.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise NetnsNotFound(f"failed to open netns {path!r}", "no such file") from e
    except OSError as e:
        raise NetnsNotFound(f"failed to open netns {path!r}", e.strerror or str(e)) from e
    # Whether it really is a network namespace is checked by setns when it is used.
    return fd


def netns_id(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of a namespace file: equal ids mean the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def current_netns_id() -> tuple[int, int]:
    return netns_id(f"/proc/self/task/{threading.get_native_id()}/ns/net")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:
            raise NetnsNotFound("not a network namespace", os.strerror(err))
        raise Internal("setns failed", os.strerror(err))


def run_in_netns(fd: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that has entered the namespace ``fd``.

    The thread ends afterwards, so no thread of the process is left in a foreign
    namespace. Exceptions from ``fn`` are re-raised in the caller.
    """
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            _setns(fd)
            box["ok"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["err"] = e

    th = threading.Thread(target=worker, name="kanal-netns")
    th.start()
    th.join()
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["ok"]  # type: ignore[return-value]


def netns_socket(fd: int, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the namespace ``fd``."""
    return run_in_netns(fd, lambda: socket.socket(family, type_, proto))
