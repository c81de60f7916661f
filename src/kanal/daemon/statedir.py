"""kanald's state directory is root's alone: directories 0700, files 0600.

Enforced at every start, not only when the directory is made: a state directory
made earlier (by hand, by an older version, restored from a backup) with looser
permissions must not keep exposing ``launch.json`` (the ``-e`` values), logs or
the store. Only owner bits are kept (an executable shim stays executable, by
root). The sandboxes' /etc files (hosts, resolv.conf, hostname) stay readable:
the sandbox's own unprivileged processes read them through their bind mounts,
and their 0700 directory keeps everyone else out.
"""

from __future__ import annotations

import os
import stat

__all__ = ["SANDBOX_PUBLIC", "tighten"]

#: Files of ``sandboxes/<id>/`` bound into the sandbox and read by its processes.
SANDBOX_PUBLIC = frozenset({"hosts", "resolv.conf", "hostname"})


def tighten(state_dir: str) -> int:
    """Make ``state_dir`` (created if missing) and everything in it root-only.

    Symlinks are not followed. Returns how many modes were changed.
    """
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    changed = _chmod(state_dir, 0o700)
    for root, dirs, files in os.walk(state_dir):
        for d in dirs:
            changed += _chmod(os.path.join(root, d), 0o700)
        sandbox_dir = os.path.basename(os.path.dirname(root)) == "sandboxes"
        for f in files:
            path = os.path.join(root, f)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets are made with their own mode; symlinks not followed
            if sandbox_dir and f in SANDBOX_PUBLIC:
                want = 0o644
            else:
                want = stat.S_IMODE(st.st_mode) & 0o700 | 0o600
            changed += _chmod(path, want)
    return changed


def _chmod(path: str, mode: int) -> int:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    if stat.S_ISLNK(st.st_mode) or stat.S_IMODE(st.st_mode) == mode:
        return 0
    os.chmod(path, mode)
    return 1
