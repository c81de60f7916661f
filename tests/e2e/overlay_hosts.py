"""Several kanal hosts in namespaces, joined by an underlay bridge, sharing a 3-member etcd.

Topology (all made here, all removed by :meth:`Hosts.close`, even after a failure)::

    underlay namespace: bridge "ul" ── veth ── h1 (192.0.2.1): etcd m1 + kanald
                                    ├─ veth ── h2 (192.0.2.2): etcd m2 + kanald
                                    └─ veth ── h3 (192.0.2.3): etcd m3 + kanald

Each kanald joins the cluster (``--cluster-store etcd://192.0.2.1:2379,...``,
``--advertise-addr 192.0.2.i``, ``--node-name hi``) with short lease, grace and
resync periods so that failures heal within seconds. With ``tls=True`` etcd is
secured (see tests/multihost.py) and each kanald joins with ``etcds://``, its own
client certificate and the etcd user ``kanal``. ``kanal`` commands are run
against one host's API socket. Used by tests/e2e/test_overlay.py,
bench/overlay_bench.py and demo/overlay_demo.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import unique
from tests.multihost import MEMBERS, Underlay, wait_for

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def available() -> str:
    """Why this cannot run here, or ''."""
    for tool in ("etcd", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install etcd-server curl)"
    return ""


class Hosts(Underlay):
    def __init__(
        self,
        tmp: Path,
        n: int = 3,
        *,
        ttl: int = 3,
        grace: float = 3.0,
        resync: float = 1.0,
        tls: bool = False,
    ) -> None:
        super().__init__(tmp, "kov", tls=tls)
        self.n = n
        self.ttl, self.grace, self.resync = ttl, grace, resync
        self.kanald: dict[int, subprocess.Popen[bytes]] = {}
        self.key_prefix = f"/kov{self.token}/"
        self.store = ""

    def setup(self) -> None:
        self.make_underlay(max(self.n, len(MEMBERS)))
        self.start_etcd_cluster()
        self.store = self.etcd_url(self.key_prefix)
        for i in range(1, self.n + 1):
            self.start_kanald(i)

    def api(self, i: int) -> Path:
        return self.tmp / f"h{i}" / "api.sock"

    def kanald_argv(self, i: int, opts: list[str] | None = None) -> list[str]:
        """kanald for host i; ``opts``: its --cluster-store-opt values (default: its own)."""
        d = self.tmp / f"h{i}"
        d.mkdir(exist_ok=True)
        opts = self.store_opts(i) if opts is None else opts
        return [
            *("nsenter", f"--net=/run/netns/{self.ns[i]}", str(VENV / "kanald")),
            *("--socket", str(d / "fp.sock"), "--state-dir", str(d / "state")),
            *("--api-socket", str(self.api(i)), "--default-bridge", unique("kob", 15)),
            *("--default-subnet", f"10.{90 + i}.0.0/24", "--cni-conf-dir", str(d / "net.d")),
            *("--default-address-pool", f"base=10.{95 + i}.0.0/16,size=24"),
            *("--docker-plugin-socket", "none", "--cluster-store", self.store),
            *("--advertise-addr", self.addr(i), "--node-name", f"h{i}"),
            *("--node-ttl", str(self.ttl), "--cluster-grace", str(self.grace)),
            *("--cluster-resync", str(self.resync), "--log-level", "info"),
            *(a for o in opts for a in ("--cluster-store-opt", o)),
        ]

    def start_kanald(self, i: int) -> None:
        d = self.tmp / f"h{i}"
        argv = self.kanald_argv(i)
        self.api(i).unlink(missing_ok=True)
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
        from kanal.store.etcd import open_etcd
        from tests.netns.inns import in_ns

        scheme = "etcds" if self.tls else "etcd"
        store = open_etcd(
            f"{scheme}://{self.addr(via)}:2379{self.key_prefix}", self.store_opts(via)
        )

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
        """Remove everything, even when a kanald no longer answers (each step on its own:
        a stuck ``kanal rm`` must not leave the daemons, etcd and namespaces behind)."""
        for i in list(self.kanald):
            try:
                if self.kanald[i].poll() is None:
                    self.kanal(i, "rm", "-f", *self._sandboxes(i), check=False, timeout=60)
            except subprocess.TimeoutExpired:
                pass  # its sandboxes' namespaces go below
            self.kill_kanald(i)
        super().close()
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
        p = self.kanal(i, "ps", "-a", "-q", check=False, timeout=30)
        return p.stdout.split() if p.returncode == 0 else []
