"""The first process of a sandbox: bind its files over /etc, set its hostname, exec.

Run as ``nsenter --net=NETNS unshare --mount --uts --propagation private --
python -m kanal.engine.launch SPEC.json``: it is already in the sandbox's network
namespace and in fresh mount and UTS namespaces of its own, so the bind mounts
and the hostname are seen by this process tree only. SPEC holds ``argv``,
``env``, ``hostname``, ``cwd`` and the files to bind (target → source).
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
