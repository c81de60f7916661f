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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class EtcdTls:
    """A TLS etcd's files: the CA it trusts for clients and its own certificate."""

    ca: str
    cert: str
    key: str
    client_cert_auth: bool = True


@contextmanager
def etcd_server(
    data_dir: str, *, tls: EtcdTls | None = None, extra: Sequence[str] = ()
) -> Iterator[str]:
    """A single-member etcd on loopback (random ports); yields ``host:port``.

    With ``tls`` it serves HTTPS only (and requires client certificates signed by
    ``tls.ca`` unless ``client_cert_auth`` is off). ``extra``: more etcd flags.
    """
    import ssl
    import time
    import urllib.request

    client, peer = free_port(), free_port()
    scheme = "https" if tls else "http"
    cmd = [
        "etcd",
        "--name",
        "kanal-test",
        "--data-dir",
        data_dir,
        "--listen-client-urls",
        f"{scheme}://127.0.0.1:{client}",
        "--advertise-client-urls",
        f"{scheme}://127.0.0.1:{client}",
        "--listen-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls",
        f"http://127.0.0.1:{peer}",
        "--initial-cluster",
        f"kanal-test=http://127.0.0.1:{peer}",
        *extra,
    ]
    ctx = None
    if tls:
        cmd += ["--cert-file", tls.cert, "--key-file", tls.key, "--trusted-ca-file", tls.ca]
        if tls.client_cert_auth:
            cmd += ["--client-cert-auth"]
        # /health needs no client certificate at the HTTP level, but the TLS handshake
        # does: present the member's own (it is signed by the same CA).
        ctx = ssl.create_default_context(cafile=tls.ca)
        ctx.load_cert_chain(tls.cert, tls.key)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                url = f"{scheme}://127.0.0.1:{client}/health"
                urllib.request.urlopen(url, timeout=1, context=ctx).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("etcd exited") from None
                time.sleep(0.05)
        else:
            raise RuntimeError("etcd did not start")
        yield f"127.0.0.1:{client}"
    finally:
        proc.kill()
        proc.wait(10)


def etcdctl(base: Sequence[str], *args: str, ns: str = "") -> str:
    """``etcdctl BASE ARGS`` (in namespace ``ns`` if given), for setting etcd up.

    A loaded machine can make etcd answer "request timed out": the command is tried
    again, and a retried change that had landed the first time ("... already ...")
    counts as done.
    """
    import time

    cmd = ["etcdctl", "--command-timeout=30s", *base, *args]
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    err = ""
    for attempt in range(4):
        p = run(cmd, check=False, timeout=90)
        if p.returncode == 0:
            return p.stdout.decode()
        err = p.stderr.decode(errors="replace")
        if attempt and "already" in err:
            return ""
        if not any(w in err for w in ("timed out", "Unavailable", "deadline", "leader")):
            break
        time.sleep(1)
    raise RuntimeError(f"etcdctl {' '.join(args)}: {err.strip()[-500:]}")


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
