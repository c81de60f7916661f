"""The first process of a sandbox: bind its files over /etc, set its hostname, exec.

Run as ``nsenter --net=NETNS unshare --mount --uts [--pid --fork --kill-child]
--propagation private -- python -m kanal.engine.launch SPEC.json``: it is already
in the sandbox's network namespace and in fresh mount and UTS namespaces of its
own, so the bind mounts and the hostname are seen by this process tree only.
SPEC holds ``argv``, ``env``, ``hostname``, ``cwd``, the files to bind (target →
source), the ``pidfile`` to write (``pid start-time`` of the process kanald
started) before the command runs, and ``init``: the sandbox has a PID namespace
of its own (docker's default), whose PID 1 this process is (``initfile``: its
``pid start-time`` as kanald sees it).

With ``init`` this process is PID 1 of that namespace: it mounts a /proc of the
namespace, starts the command as its child, passes the signals it gets on to it,
reaps orphans, and exits with the command's status (128+N for signal N, as
docker reports it). When it exits the kernel kills every process left in the
namespace, so what the command started in the background ends with it. (PID 1
gets only the signals it has a handler for: a plain command as PID 1 would
ignore ``kanal stop``'s SIGTERM.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import socket
import sys
from typing import Any

MS_BIND = 4096
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
#: What PID 1 passes on to the command (SIGKILL and SIGSTOP cannot be caught).
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCONT,
    signal.SIGALRM,
)


def bind_mount(source: str, target: str) -> None:
    """``mount --bind SOURCE TARGET`` in this process's mount namespace (kanald's
    repair of a sandbox's namespace mount uses it too). Raises OSError."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount of {source} on {target}: {os.strerror(err)}")


def _mount_proc() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"proc", b"/proc", b"proc", flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount of /proc: {os.strerror(err)}")


def _host_pid() -> int:
    """This process's pid as kanald sees it: the first NSpid (read through the
    /proc mounted before ours, which is the daemon's namespace's)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return int(line.split()[1])
    return os.getpid()


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _write_pidfile(path: str, pid: int) -> None:
    # "pid start-time", so kanald finds this process (and only this one) even if it
    # died between starting it and recording it; written before the command runs.
    start = _stat(pid)[19]
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{pid} {start}\n")
    os.replace(tmp, path)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    for target, source in spec.get("binds", {}).items():
        if os.path.exists(target):
            bind_mount(source, target)
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    me = _host_pid()
    if spec.get("init"):
        # The pidfile names the process kanald started (unshare, our parent: the
        # sandbox's leader); the initfile this one, docker's State.Pid.
        if spec.get("initfile"):
            _write_pidfile(spec["initfile"], me)
        if spec.get("pidfile"):
            _write_pidfile(spec["pidfile"], int(_stat(me)[1]))
    elif spec.get("pidfile"):
        _write_pidfile(spec["pidfile"], me)
    if spec.get("init"):
        _mount_proc()
        sys.exit(_init(spec))
    _exec(spec)


def _exec(spec: dict[str, Any]) -> None:
    argv = list(spec["argv"])
    env = spec.get("env") or {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    }
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 (the sandbox's own command, no shell)
    except OSError as e:
        sys.stderr.write(f"kanal: cannot run {argv[0]!r}: {e.strerror}\n")
        os._exit(127)


def _init(spec: dict[str, Any]) -> int:
    """PID 1: run the command as a child, pass signals on, reap, return its status."""
    child = os.fork()
    if child == 0:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        _exec(spec)

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    main()
