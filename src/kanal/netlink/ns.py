"""Network namespace handles.

Why threads: ``setns(2)`` changes only the calling thread, so a short-lived thread
that enters the target namespace can create sockets there or write its
``/proc/sys/net`` entries while the daemon's own threads stay in the host
namespace. pyroute2's own ``netns=`` support forks a child per socket, which
costs more than the whole netlink work of an ADD.

This module is on every plugin exec's path: it uses ``_thread`` and
:mod:`kanal._ffi` rather than ``threading`` and ``ctypes`` (~5 ms of imports).
"""

from __future__ import annotations

import _thread
import errno
import os

from kanal.errors import Internal, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

__all__ = [
    "CLONE_NEWNET",
    "current_netns_id",
    "netns_id",
    "netns_socket",
    "open_netns",
    "run_in_netns",
]

CLONE_NEWNET = 0x40000000


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
    kind = netns_file_kind(fd)
    if kind != "net":
        os.close(fd)
        raise NetnsNotFound(f"failed to open netns {path!r}: not a network namespace", _WHY[kind])
    return fd


_NS_GET_NSTYPE = 0xB703  # ioctl: the CLONE_NEW* type of a namespace file (Linux 4.11)
_NS_TYPES = {
    0x40000000: "net",
    0x00020000: "mount",
    0x02000000: "cgroup",
    0x04000000: "UTS",
    0x08000000: "IPC",
    0x10000000: "user",
    0x20000000: "PID",
    0x00000080: "time",
}
_WHY = {
    "empty-file": (
        "it is an empty file here (if `ip netns add` or a runtime made it, the namespace is"
        " mounted on it in another mount namespace: start the runtime and kanal so that"
        " they see the same mounts)"
    ),
    "file": "it is not a namespace file",
    **{k: f"it is a {k} namespace" for k in _NS_TYPES.values()},
}


def netns_file_kind(fd: int) -> str:
    """What the file at ``fd`` is: ``net`` for a network namespace, another
    namespace type (``mount``, ``PID``...), ``empty-file`` (what a namespace mounted
    in another mount namespace leaves here: ``ip netns add`` bind-mounts it onto an
    empty file) or ``file``."""
    # lazy: plugin ADD/CHECK and the runtime's check only; fcntl is a small builtin
    import fcntl
    import stat

    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        st = os.fstat(fd)
        return "empty-file" if stat.S_ISREG(st.st_mode) and st.st_size == 0 else "file"
    return _NS_TYPES.get(kind, "file")


def netns_id(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of a namespace file: equal ids mean the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def current_netns_id() -> tuple[int, int]:
    return netns_id(f"/proc/self/task/{_thread.get_native_id()}/ns/net")


_SETNS: Callable[[int, int], int] | None = None


def _setns_raw(fd: int) -> int:
    """setns(fd, CLONE_NEWNET): 0, or the errno."""
    global _SETNS
    own = getattr(os, "setns", None)  # Python 3.12+
    if own is not None:
        try:
            own(fd, CLONE_NEWNET)
        except OSError as e:
            return e.errno or errno.EINVAL
        return 0
    if _SETNS is None:
        # lazy: only entering a namespace needs setns(2) (_ctypes)
        from kanal._ffi import Library, c_int

        _SETNS = Library(None).function("setns", c_int, (c_int, c_int))
    if _SETNS(fd, CLONE_NEWNET) != 0:
        # lazy: only entering a namespace needs setns(2) (_ctypes)
        from kanal._ffi import get_errno

        return get_errno() or errno.EINVAL
    return 0


def _setns(fd: int) -> None:
    err = _setns_raw(fd)
    if err == errno.EINVAL:
        raise NetnsNotFound("not a network namespace", os.strerror(err))
    if err:
        raise Internal("setns failed", os.strerror(err))


def run_in_netns(fd: int, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that has entered the namespace ``fd``.

    The thread ends afterwards, so no thread of the process is left in a foreign
    namespace. Exceptions from ``fn`` are re-raised in the caller.
    """
    return start_in_netns(fd, fn)()


def start_in_netns(fd: int, fn: Callable[[], T]) -> Callable[[], T]:
    """:func:`run_in_netns` begun now: returns at once, and the function it returns
    waits for ``fn``'s result (or re-raises its exception). ``fd`` must stay open
    until then. Lets a caller do other work while the kernel does this work."""
    box: dict[str, object] = {}
    done = _thread.allocate_lock()
    done.acquire()

    def worker() -> None:
        try:
            _setns(fd)
            box["ok"] = fn()
        except BaseException as e:  # re-raised in the caller's thread
            box["err"] = e
        finally:
            done.release()

    _thread.start_new_thread(worker, ())

    def result() -> T:
        if "ok" not in box and "err" not in box:
            done.acquire()
        if "err" in box:
            raise box["err"]  # type: ignore[misc]
        return box["ok"]  # type: ignore[return-value]

    return result


def netns_socket(fd: int, family: int, type_: int, proto: int = 0) -> socket.socket:
    """A socket that lives in the namespace ``fd``."""
    # lazy: socket's enums cost a plugin exec ~5 ms; only kanald makes sockets in namespaces
    import socket

    return run_in_netns(fd, lambda: socket.socket(family, type_, proto))
