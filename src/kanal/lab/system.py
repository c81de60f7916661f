"""The lab's hands on the machine: namespaces, ``ip`` batches, processes, HTTP inside
a namespace. Everything here acts inside a namespace it is given, never in the
caller's own (the one exception, reading the kernel's neighbour table limits, only
reads).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterable, Sequence
from typing import Any

from kanal.engine.processes import ProcRef, alive, proc_start, signal_proc
from kanal.errors import Internal, KanalError, NotFound, Unavailable
from kanal.netlink.ns import netns_socket, open_netns

__all__ = [
    "NETNS_DIR",
    "add_netns",
    "del_netns",
    "http_in_ns",
    "ip_batch",
    "kill_in_namespaces",
    "make_mount_ns",
    "make_private",
    "mount_ns_netns",
    "mount_propagation_shared",
    "neighbour_table",
    "netns_exists",
    "netns_inode",
    "nsenter",
    "spawn",
    "stop",
    "sysctl",
    "umount_under",
]

NETNS_DIR = "/run/netns"
MNT_DETACH = 2


def nsenter(ns: str, argv: Sequence[str], mnt: str = "") -> list[str]:
    """``argv`` run in network namespace ``ns`` and, given ``mnt`` (a pinned mount
    namespace, see :func:`make_mount_ns`), in that mount namespace too."""
    enter = ["nsenter", f"--net={NETNS_DIR}/{ns}"]
    if mnt:
        enter.append(f"--mount={mnt}")
    return [*enter, "--", *argv]


def _run(argv: Sequence[str], *, input: bytes | None = None, timeout: float = 60) -> str:
    try:
        p = subprocess.run(list(argv), input=input, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Internal(f"{argv[0]} failed", str(e)) from None
    if p.returncode != 0:
        err = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
        raise Internal(
            f"{' '.join(argv[:4])}... failed", err[-1] if err else f"exit {p.returncode}"
        )
    return p.stdout.decode(errors="replace")


def netns_exists(ns: str) -> bool:
    return os.path.exists(f"{NETNS_DIR}/{ns}")


def netns_inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def add_netns(ns: str) -> None:
    _run(["ip", "netns", "add", ns])


def del_netns(ns: str) -> None:
    if netns_exists(ns):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=60)


def ip_batch(ns: str, lines: Iterable[str]) -> None:
    """Run ``ip`` commands (one per line, as ``ip -batch`` reads them) in ``ns``."""
    text = "".join(line + "\n" for line in lines)
    if text:
        _run(["ip", "-n", ns, "-batch", "-"], input=text.encode())


def sysctl(ns: str, settings: dict[str, str]) -> None:
    """Write sysctls inside ``ns`` (``/proc/sys/net`` is the writer's namespace's)."""
    if settings:
        args = [f"{k}={v}" for k, v in settings.items()]
        _run(nsenter(ns, ["sysctl", "-q", "-w", *args]))


def spawn(
    ns: str,
    argv: Sequence[str],
    log: str,
    *,
    env: dict[str, str] | None = None,
    mnt: str = "",
) -> subprocess.Popen[bytes]:
    """Start a daemon in ``ns`` (and mount namespace ``mnt``), detached (its own
    session; it outlives the caller), output appended to ``log``. nsenter executes
    it in place: the pid is the daemon's."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            nsenter(ns, argv, mnt),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            env=env,
        )
    finally:
        os.close(fd)


#: What a lab host sees instead of the machine's: its own ``ip netns`` names and
#: host-local IPAM state (each mounted only if the machine has the directory).
PRIVATE_DIRS = ("/run/netns", "/var/lib/cni")


def mount_propagation_shared(path: str) -> bool:
    """Whether the mount holding ``path`` propagates to other mount namespaces."""
    real = os.path.realpath(path)
    best, shared = "", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mp = fields[4].encode().decode("unicode_escape")
            if (real.rstrip("/") + "/").startswith(mp.rstrip("/") + "/") and len(mp) >= len(best):
                tags = fields[6 : fields.index("-")]
                best, shared = mp, any(t.startswith("shared:") for t in tags)
    return shared


def make_private(path: str) -> None:
    """Make ``path`` a mount of its own that propagates nowhere (a pinned mount
    namespace must not sit on a shared mount: it would propagate into itself)."""
    _run(["mount", "--bind", path, path])
    _run(["mount", "--make-private", path])


def make_mount_ns(pin: str) -> None:
    """A new mount namespace pinned at the file ``pin``: a private copy of the
    machine's mounts (nothing propagates either way), with a fresh tmpfs on each
    of :data:`PRIVATE_DIRS` that exists."""
    with open(pin, "w"):
        pass
    _run(["unshare", f"--mount={pin}", "--propagation", "private", "true"])
    for d in PRIVATE_DIRS:
        if os.path.isdir(d):
            # the machine's mounts below it are dropped from the copy first
            subprocess.run(["nsenter", f"--mount={pin}", "umount", "-l", d], capture_output=True)
            _run(["nsenter", f"--mount={pin}", "mount", "-t", "tmpfs", "-o", "mode=0755",
                  "kanal-lab", d])  # fmt: skip


def mount_ns_netns(pin: str, under: Iterable[str]) -> set[tuple[int, int]]:
    """The (device, inode) of the network namespaces mounted (bound to files) inside
    the pinned mount namespace at or below one of the directories ``under``: the
    host's sandboxes and whatever ``ip netns add`` made there.

    Only there: the namespace began as a copy of the machine's mounts, so it also
    holds every namespace file mounted elsewhere on the machine at that moment
    (other users' sandboxes and ``ip netns`` names) — never the lab's to take down."""
    try:
        out = _run(["nsenter", f"--mount={pin}", "cat", "/proc/self/mountinfo"])
    except KanalError:
        return set()
    bases = [d.rstrip("/") + "/" for d in under]
    nsfs = os.stat("/proc/self/ns/net").st_dev
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) <= 4 or not fields[3].startswith("net:["):
            continue
        mp = fields[4].encode().decode("unicode_escape").rstrip("/") + "/"
        if any(mp.startswith(b) for b in bases):
            with contextlib.suppress(ValueError):
                found.add((nsfs, int(fields[3][5:].rstrip("]"))))
    return found


def proc_ref(pid: int) -> ProcRef:
    return pid, proc_start(pid)


def stop(ref: ProcRef, sig: int = signal.SIGKILL, timeout: float = 10.0) -> bool:
    """Signal the process (never a recycled pid) and wait until it is gone; False if
    it was not running. A stopped process is continued after a SIGTERM, to act on it."""
    if not alive(ref):
        return False
    signal_proc(ref, sig, group=False)
    if sig != signal.SIGKILL:
        signal_proc(ref, signal.SIGCONT, group=False)
    deadline = time.monotonic() + timeout
    while alive(ref) and time.monotonic() < deadline:
        _reap(ref[0])
        time.sleep(0.01)
    if alive(ref):
        signal_proc(ref, signal.SIGKILL, group=False)
        while alive(ref) and time.monotonic() < deadline + 5:
            _reap(ref[0])
            time.sleep(0.01)
    _reap(ref[0])
    return True


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status if it is our child (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def kill_in_namespaces(
    net: Iterable[tuple[int, int]], mnt: Iterable[tuple[int, int]] = (), timeout: float = 15.0
) -> list[int]:
    """SIGKILL every process whose network namespace (device, inode) is in ``net`` or
    whose mount namespace's is in ``mnt`` (until none is left: a process forked meanwhile
    is taken too); returns the pids still alive after ``timeout``."""
    nets, mnts = set(net), set(mnt)
    if not nets and not mnts:
        return []
    me = os.getpid()
    deadline = time.monotonic() + timeout
    while True:
        found: list[ProcRef] = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            n = netns_inode(f"/proc/{name}/ns/net")
            m = netns_inode(f"/proc/{name}/ns/mnt")
            if (n is not None and n in nets) or (m is not None and m in mnts):
                start = proc_start(int(name))
                if start:
                    found.append((int(name), start))
        if not found:
            return []
        for ref in found:
            signal_proc(ref, signal.SIGKILL, group=False)
            _reap(ref[0])
        if time.monotonic() > deadline:
            return [r[0] for r in found if alive(r)]
        time.sleep(0.05)


def umount_under(directory: str) -> list[str]:
    """Detach every mount at or below ``directory`` (deepest first), in the caller's
    mount namespace; returns the mount points that could not be detached."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    base = os.path.realpath(directory).rstrip("/") + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].encode().decode("unicode_escape")
            if (mp.rstrip("/") + "/").startswith(base):
                points.append(mp)
    failed = []
    for mp in sorted(set(points), key=len, reverse=True):
        if libc.umount2(mp.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):
                failed.append(f"{mp}: {os.strerror(err)}")
    return failed


def http_in_ns(
    ns: str,
    host: str,
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    timeout: float = 2.0,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request from inside namespace ``ns`` (status, body); over TLS with
    ``tls`` (the server's certificate checked for ``host``).
    Raises Unavailable when nothing answers."""
    fd = open_netns(f"{NETNS_DIR}/{ns}")
    try:
        s = netns_socket(fd, socket.AF_INET, socket.SOCK_STREAM)
    finally:
        os.close(fd)
    data = b"" if body is None else json.dumps(body).encode()
    req = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    try:
        if tls is not None:
            s = tls.wrap_socket(s, server_hostname=host, do_handshake_on_connect=True)
        with s:
            s.settimeout(timeout)
            s.connect((host, port))
            s.sendall(req)
            chunks = []
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
    except OSError as e:
        raise Unavailable(f"no answer from {host}:{port} in {ns}", str(e)) from None
    raw = b"".join(chunks)
    head, _, rest = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise Unavailable(f"bad HTTP answer from {host}:{port}") from None
    if b"transfer-encoding: chunked" in head.lower():
        rest = _unchunk(rest)
    return status, rest


def _unchunk(data: bytes) -> bytes:
    out, off = [], 0
    while off < len(data):
        line_end = data.find(b"\r\n", off)
        if line_end < 0:
            break
        size = int(data[off:line_end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(data[line_end + 2 : line_end + 2 + size])
        off = line_end + 2 + size + 2
    return b"".join(out)


def neighbour_table() -> dict[str, Any]:
    """The kernel's IPv4 neighbour table: entries now, the limits, the overflows so
    far (``table_fulls``: "neighbor table overflow"), and whether the limits are per
    namespace on this kernel. Read only; the table counts the entries of every
    namespace of the machine unless ``per_namespace``."""
    out: dict[str, Any] = {}
    for k in ("gc_thresh1", "gc_thresh2", "gc_thresh3"):
        try:
            with open(f"/proc/sys/net/ipv4/neigh/default/{k}") as f:
                out[k] = int(f.read())
        except (OSError, ValueError):
            out[k] = 0
    try:
        with open("/proc/net/stat/arp_cache") as f:
            lines = f.read().split("\n")
        cols = lines[0].split()
        rows = [dict(zip(cols, (int(x, 16) for x in ln.split()))) for ln in lines[1:] if ln]
        out["entries"] = rows[0]["entries"] if rows else 0
        out["table_fulls"] = sum(r.get("table_fulls", 0) for r in rows)
    except (OSError, ValueError, KeyError):
        out.setdefault("entries", 0)
        out.setdefault("table_fulls", 0)
    out["per_namespace"] = False
    return out


def per_namespace_limits(ns: str) -> bool:
    """Whether ``ns`` has neighbour table limits of its own (newer kernels) — then a
    lab may raise them there; on kernels where only the initial namespace has
    ``neigh/default/gc_thresh*`` the table and its limits are the machine's."""
    try:
        _run(nsenter(ns, ["test", "-e", "/proc/sys/net/ipv4/neigh/default/gc_thresh3"]))
    except KanalError:
        return False
    return True


def check_executable(name: str) -> None:
    from shutil import which

    if which(name) is None:
        raise NotFound(f"{name} is not installed (needed by kanal lab)")
