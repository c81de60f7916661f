"""The first process of a sandbox: bind its files over /etc, set its hostname, exec.

Run as ``nsenter --net=NETNS unshare --mount --uts --propagation private --
python -m kanal.engine.launch SPEC.json``: it is already in the sandbox's network
namespace and in fresh mount and UTS namespaces of its own, so the bind mounts
and the hostname are seen by this process tree only. SPEC holds ``argv``,
``env``, ``hostname``, ``cwd``, the files to bind (target → source) and the
``pidfile`` to write (``pid start-time``) before the command runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import socket
import sys

MS_BIND = 4096


def _bind(source: str, target: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.mount(source.encode(), target.encode(), None, MS_BIND, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bind mount of {source} on {target}: {os.strerror(err)}")


def _write_pidfile(path: str) -> None:
    # "pid start-time", so kanald finds this process (and only this one) even if it
    # died between starting it and recording it; written before the command runs.
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = f.read().rsplit(")", 1)[1].split()[19]
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{os.getpid()} {start}\n")
    os.replace(tmp, path)


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    for target, source in spec.get("binds", {}).items():
        if os.path.exists(target):
            _bind(source, target)
    if spec.get("hostname"):
        socket.sethostname(spec["hostname"])
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    if spec.get("pidfile"):
        _write_pidfile(spec["pidfile"])
    argv = spec["argv"]
    env = spec.get("env") or {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    }
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 (the sandbox's own command, no shell)
    except OSError as e:
        sys.stderr.write(f"kanal: cannot run {argv[0]!r}: {e.strerror}\n")
        sys.exit(127)


if __name__ == "__main__":
    main()
