"""A sandbox's processes: found, signalled and reaped without ever hitting a
recycled pid.

A process is named by its pid *and* its start time (``/proc/<pid>/stat`` field
22, in clock ticks since boot): a pid whose start time differs is someone else.
Signals go through a pidfd opened and then checked against that start time, so
the process signalled is the one checked. A sandbox's first process is the
leader of its own session and process group (it was started that way), so the
group is signalled too; for a sandbox with a network namespace of its own every
process still inside that namespace is found and signalled as well (a child
that left the group with ``setsid`` is still in the namespace).

The launcher (kanal.engine.launch) writes ``pid start`` to the sandbox's pidfile
before it executes the command, and its command line names the sandbox's spec
file until then: either way a process started just before kanald died is found.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

__all__ = [
    "ProcRef",
    "find_launched",
    "netns_pids",
    "proc_start",
    "read_pidfile",
    "signal_proc",
    "stop_processes",
]

ProcRef = tuple[int, str]  # (pid, start time)


def proc_start(pid: int) -> str:
    """The process's start time, or "" if there is no such process (or a zombie's)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    if fields and fields[0] in ("Z", "X"):
        return ""
    return fields[19] if len(fields) > 19 else ""


def alive(ref: ProcRef) -> bool:
    pid, start = ref
    got = proc_start(pid)
    return bool(got) and (not start or got == start)


def read_pidfile(path: str) -> ProcRef | None:
    try:
        with open(path) as f:
            pid, start = f.read().split()
        return int(pid), start
    except (OSError, ValueError):
        return None


def _pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


def find_launched(spec_path: str, pidfile: str) -> ProcRef | None:
    """The live process started from ``spec_path`` (pidfile first, then command lines)."""
    ref = read_pidfile(pidfile)
    if ref is not None and alive(ref):
        return ref
    needle = spec_path.encode()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if needle in args:
            start = proc_start(pid)
            if start:
                return pid, start
    return None


def netns_pids(netns_path: str) -> list[int]:
    """Every process whose network namespace is the one mounted at ``netns_path``."""
    try:
        st = os.stat(netns_path)
    except OSError:
        return []
    want = (st.st_dev, st.st_ino)
    me = os.getpid()
    out = []
    for pid in _pids():
        if pid == me:
            continue
        try:
            ns = os.stat(f"/proc/{pid}/ns/net")
        except OSError:
            continue
        if (ns.st_dev, ns.st_ino) == want:
            out.append(pid)
    return out


def signal_proc(ref: ProcRef, sig: int, *, group: bool = True) -> bool:
    """Send ``sig`` to the process (and its process group); False if it is gone.

    The pidfd pins the process: once its start time is checked through it, the
    signal cannot reach a newcomer that took over the pid.
    """
    pid, start = ref
    try:
        fd = os.pidfd_open(pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        if not alive(ref):
            return False
        if group:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _wait_gone(refs: list[ProcRef], timeout: float) -> list[ProcRef]:
    deadline = time.monotonic() + timeout
    left = [r for r in refs if alive(r)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [r for r in left if alive(r)]
    return left


def stop_processes(leader: ProcRef | None, netns_path: str = "", timeout: float = 10.0) -> bool:
    """SIGTERM the leader's group (and every process in ``netns_path``), SIGKILL what
    is left after ``timeout``; returns whether anything was running."""
    refs: list[ProcRef] = []
    if leader is not None and alive(leader):
        refs.append(leader)
    if netns_path:
        refs += [(p, s) for p in netns_pids(netns_path) if (s := proc_start(p))]
    if not refs:
        return False
    for ref in refs:
        signal_proc(ref, signal.SIGTERM)
    left = _wait_gone(refs, timeout)
    for ref in left:
        signal_proc(ref, signal.SIGKILL)
    if netns_path:
        # Forked between the scan and the kill: take them too.
        for p in netns_pids(netns_path):
            s = proc_start(p)
            if s:
                signal_proc((p, s), signal.SIGKILL)
    _wait_gone(left, 5.0)
    return True
