"""Several kanal hosts in namespaces, joined by an underlay bridge, sharing a 3-member etcd.

Topology (all made here, all removed by :meth:`Hosts.close`, even after a failure)::

    underlay namespace: bridge "ul" ── veth ── h1 (192.0.2.1): etcd m1 + kanald
                                    ├─ veth ── h2 (192.0.2.2): etcd m2 + kanald
                                    └─ veth ── h3 (192.0.2.3): etcd m3 + kanald

Each kanald joins the cluster (``--cluster-store etcd://192.0.2.1:2379,...``,
``--advertise-addr 192.0.2.i``, ``--node-name hi``) with short lease, grace and
resync periods so that failures heal within seconds. ``kanal`` commands are run
against one host's API socket. Used by tests/e2e/test_overlay.py,
bench/overlay_bench.py and demo/overlay_demo.py.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.helpers import create_netns, delete_netns, nsexec, unique

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def available() -> str:
    """Why this cannot run here, or ''."""
    for tool in ("etcd", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install etcd-server curl)"
    return ""


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``fn`` until truthy (a bound for the event, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


class Hosts:
    def __init__(
        self, tmp: Path, n: int = 3, *, ttl: int = 3, grace: float = 3.0, resync: float = 1.0
    ) -> None:
        self.tmp = tmp
        self.n = n
        self.ttl, self.grace, self.resync = ttl, grace, resync
        self.namespaces: list[str] = []
        self.ns: dict[int, str] = {}
        self.etcd: dict[int, subprocess.Popen[bytes]] = {}
        self.kanald: dict[int, subprocess.Popen[bytes]] = {}
        self.token = secrets.token_hex(4)
        self.prefix = f"/kov{self.token}/"
        self.store = ""

    # --- set-up ------------------------------------------------------------------

    def setup(self) -> None:
        self.ul = self._netns("kovul")
        nsexec(self.ul, "ip", "link", "add", "ul", "type", "bridge")
        nsexec(self.ul, "ip", "link", "set", "ul", "up")
        for i in range(1, self.n + 1):
            self.ns[i] = self._host_ns(i)
        members = [i for i in range(1, min(self.n, 3) + 1)]
        for i in members:
            self.start_etcd(i, new=True)
        for i in members:
            wait_for(f"etcd m{i}", partial(self.etcd_ok, i), 60)
        self.store = "etcd://" + ",".join(f"{self.addr(i)}:2379" for i in members) + self.prefix
        for i in range(1, self.n + 1):
            self.start_kanald(i)

    def _netns(self, prefix: str) -> str:
        name = create_netns(unique(prefix, 30))
        self.namespaces.append(name)
        return name

    @staticmethod
    def addr(i: int) -> str:
        return f"192.0.2.{i}"

    def _host_ns(self, i: int) -> str:
        ns = self._netns(f"kovh{i}")
        nsexec(self.ul, "ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "ul0")
        nsexec(self.ul, "ip", "link", "set", "ul0", "netns", ns)
        nsexec(self.ul, "ip", "link", "set", f"p{i}", "master", "ul", "up")
        nsexec(ns, "ip", "addr", "add", f"{self.addr(i)}/24", "dev", "ul0")
        nsexec(ns, "ip", "link", "set", "ul0", "up")
        nsexec(ns, "ip", "link", "set", "lo", "up")
        return ns

    def start_etcd(self, i: int, *, new: bool) -> None:
        a = self.addr(i)
        peers = ",".join(f"m{k}=http://{self.addr(k)}:2380" for k in range(1, min(self.n, 3) + 1))
        cmd = ["ip", "netns", "exec", self.ns[i], "etcd", "--name", f"m{i}"]
        cmd += ["--data-dir", str(self.tmp / f"etcd-m{i}")]
        cmd += ["--listen-client-urls", f"http://{a}:2379", "--advertise-client-urls"]
        cmd += [f"http://{a}:2379", "--listen-peer-urls", f"http://{a}:2380"]
        cmd += ["--initial-advertise-peer-urls", f"http://{a}:2380", "--initial-cluster", peers]
        cmd += ["--initial-cluster-token", f"kov-{self.token}"]
        cmd += ["--initial-cluster-state", "new" if new else "existing"]
        log = (self.tmp / f"etcd-m{i}.log").open("ab")
        self.etcd[i] = subprocess.Popen(cmd, stdout=log, stderr=log)

    def etcd_ok(self, i: int) -> bool:
        out = nsexec(
            self.ns[i],
            *("curl", "-s", "-m", "1", "-X", "POST"),
            f"http://{self.addr(i)}:2379/v3/maintenance/status",
            *("-d", "{}"),
            check=False,
        )
        try:
            return bool(int(json.loads(out.stdout).get("leader", 0) or 0))
        except ValueError:
            return False

    def kill_etcd(self, i: int) -> None:
        p = self.etcd.get(i)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def api(self, i: int) -> Path:
        return self.tmp / f"h{i}" / "api.sock"

    def start_kanald(self, i: int) -> None:
        d = self.tmp / f"h{i}"
        d.mkdir(exist_ok=True)
        self.api(i).unlink(missing_ok=True)
        argv = [
            *("nsenter", f"--net=/run/netns/{self.ns[i]}", str(VENV / "kanald")),
            *("--socket", str(d / "fp.sock"), "--state-dir", str(d / "state")),
            *("--api-socket", str(self.api(i)), "--default-bridge", unique("kob", 15)),
            *("--default-subnet", f"10.{90 + i}.0.0/24", "--cni-conf-dir", str(d / "net.d")),
            *("--default-address-pool", f"base=10.{95 + i}.0.0/16,size=24"),
            *("--docker-plugin-socket", "none", "--cluster-store", self.store),
            *("--advertise-addr", self.addr(i), "--node-name", f"h{i}"),
            *("--node-ttl", str(self.ttl), "--cluster-grace", str(self.grace)),
            *("--cluster-resync", str(self.resync), "--log-level", "info"),
        ]
        with open(d / "kanald.log", "ab") as log:
            self.kanald[i] = subprocess.Popen(argv, stderr=log)
        wait_for(f"kanald on h{i}", lambda: self.api(i).exists() or self._dead(i), 30)
        if self._dead(i):
            raise AssertionError(f"kanald on h{i} exited: {self.log(i)[-2000:]}")

    def _dead(self, i: int) -> bool:
        return self.kanald[i].poll() is not None

    def kill_kanald(self, i: int) -> None:
        p = self.kanald.get(i)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)

    def log(self, i: int) -> str:
        p = self.tmp / f"h{i}" / "kanald.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # --- commands ----------------------------------------------------------------

    def kanal(
        self, i: int, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``kanal ARGS`` against host i's kanald, run inside host i's namespace."""
        cmd = [str(VENV / "kanal"), args[0], "-H", str(self.api(i)), *args[1:]]
        p = subprocess.run(
            ["nsenter", f"--net=/run/netns/{self.ns[i]}", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"h{i}: kanal {' '.join(args)}: {p.stderr.strip()}")
        return p

    def ip_of(self, i: int, sandbox: str, network: str) -> str:
        info = json.loads(self.kanal(i, "network", "inspect", network).stdout)[0]
        for c in info["Containers"].values():
            if c["Name"] == sandbox:
                return str(c["IPv4Address"]).split("/")[0]
        raise AssertionError(f"{sandbox} is not on {network} at h{i}")

    def etcd_list(self, prefix: str, via: int = 1) -> dict[str, Any]:
        """The cluster store's entries under ``prefix`` (decoded JSON), read from host ``via``."""
        from kanal.store.etcd import EtcdStore
        from tests.netns.inns import in_ns

        store = EtcdStore([(self.addr(via), 2379)], self.prefix)

        def read() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for e in store.list(prefix):
                try:
                    out[e.key] = json.loads(e.value)
                except ValueError:
                    out[e.key] = e.value.decode()
            return out

        return in_ns(self.ns[via], read)

    def close(self) -> None:
        for i in list(self.kanald):
            if self.kanald[i].poll() is None:
                self.kanal(i, "rm", "-f", *self._sandboxes(i), check=False)
            self.kill_kanald(i)
        for i in list(self.etcd):
            self.kill_etcd(i)
        for ns in reversed(self.namespaces):
            delete_netns(ns)
        # Sandboxes left by a host that was killed: their namespaces and processes.
        for d in Path("/run/netns").glob("kanal-*"):
            state = [p for p in self.tmp.glob("h*/state/sandboxes/*") if p.name[:12] in d.name]
            if state:
                pids = subprocess.run(
                    ["ip", "netns", "pids", d.name], capture_output=True, text=True
                ).stdout.split()
                for pid in pids:
                    subprocess.run(["kill", "-9", pid], capture_output=True)
                subprocess.run(["ip", "netns", "del", d.name], capture_output=True)

    def _sandboxes(self, i: int) -> list[str]:
        p = self.kanal(i, "ps", "-a", "-q", check=False)
        return p.stdout.split() if p.returncode == 0 else []
