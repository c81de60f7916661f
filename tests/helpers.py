"""Test helpers: namespaces the tests own, and commands run inside them.

Every "host" a test uses is a network namespace made here, with a unique name, and
deleted afterwards (with any process still inside it), even when the test fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

IS_ROOT = os.geteuid() == 0


def unique(prefix: str, length: int = 15) -> str:
    """A name unique across parallel tests, at most ``length`` characters."""
    suffix = f"{os.getpid() % 10000:04d}{secrets.token_hex(3)}"
    return (prefix[: max(1, length - len(suffix))] + suffix)[:length]


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        list(cmd), input=input, capture_output=True, check=check, env=env, timeout=timeout
    )


def nsexec(
    ns: str,
    *cmd: str,
    check: bool = True,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``cmd`` inside the named namespace."""
    return run(
        ["ip", "netns", "exec", ns, *cmd], check=check, input=input, env=env, timeout=timeout
    )


def ip_json(ns: str, *args: str) -> Any:
    """``ip -j ARGS`` inside ``ns``, decoded."""
    out = nsexec(ns, "ip", "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def nft_json(ns: str, *args: str) -> Any:
    out = nsexec(ns, "nft", "-j", *args, check=False)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout)


def create_netns(name: str) -> str:
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "lo", "up"])
    return name


def delete_netns(name: str) -> None:
    """Kill whatever runs in ``name`` and delete it; quiet if it is gone."""
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run(["ip", "netns", "del", name], check=False)


@contextmanager
def netns(prefix: str = "kt") -> Iterator[str]:
    name = create_netns(unique(prefix, 30))
    try:
        yield name
    finally:
        delete_netns(name)


def netns_path(name: str) -> str:
    return f"/run/netns/{name}"


def go_plugin_dir() -> str | None:
    """The Debian reference plugins, used as the oracle."""
    d = "/usr/lib/cni"
    return d if os.path.exists(os.path.join(d, "bridge")) else None


def have(cmd: str) -> bool:
    return shutil.which(cmd) is not None


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def etcd_server(data_dir: str) -> Iterator[str]:
    """A single-member etcd on loopback (random ports); yields ``host:port``."""
    import time
    import urllib.request

    client, peer = free_port(), free_port()
    proc = subprocess.Popen(
        [
            "etcd",
            "--name",
            "kanal-test",
            "--data-dir",
            data_dir,
            "--listen-client-urls",
            f"http://127.0.0.1:{client}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{client}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer}",
            "--initial-cluster",
            f"kanal-test=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{client}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("etcd did not start")
        yield f"127.0.0.1:{client}"
    finally:
        proc.kill()
        proc.wait(10)


def busybox_tar(dest: Path) -> Path:
    """An offline image: busybox, its applets and a page to serve."""
    root = dest / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "www").mkdir()
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for a in applets:
        if a != "busybox":
            (root / "bin" / a).symlink_to("busybox")
    (root / "www" / "index.html").write_text("hello from kanal\n")
    tar = dest / "busybox.tar"
    with tarfile.open(tar, "w") as t:
        t.add(root, arcname=".")
    return tar


def kanal_nft_leftovers(ns: str, needles: Sequence[str]) -> list[Any]:
    """Objects of kanal's nftables table in ``ns`` that mention any of ``needles``.

    The sets holding a network's subnets (``skip4/6``, ``pm_subnets4/6``) are shared
    by the network's containers and left out.
    """
    objs = (nft_json(ns, "list", "table", "inet", "kanal") or {}).get("nftables", [])
    return [
        o
        for o in objs
        if not o.get("set", {}).get("name", "").startswith(("skip", "pm_subnets"))
        and any(n in json.dumps(o) for n in needles)
    ]


@contextmanager
def kanald_in(
    host: str, sock: Path, log: Path, *, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """``kanald --no-engine`` serving plugins on ``sock`` in namespace ``host``."""
    import time

    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin"
    with open(log, "ab") as f:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{host}", str(venv / "kanald"), "--no-engine",
             "--socket", str(sock), "--log-level", "info"],
            stderr=f,
            cwd=cwd,
        )  # fmt: skip
    try:
        for _ in range(500):
            if sock.exists():
                break
            time.sleep(0.02)
        if not sock.exists():
            raise RuntimeError(f"kanald did not start: {log.read_text()}")
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)
