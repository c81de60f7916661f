"""Several kanal hosts and a 3-member etcd on one underlay: a kanal lab with kanald.

Topology (a kanal.lab lab; all removed by :meth:`Hosts.close`, even after a failure)::

    underlay namespace: bridge "ul" ── h1 (192.0.2.1): kanald     e1 (192.0.2.201): etcd
                                    ├─ h2 (192.0.2.2): kanald     e2 (192.0.2.202): etcd
                                    └─ h3 (192.0.2.3): kanald     e3 (192.0.2.203): etcd

Each kanald joins the cluster (``--advertise-addr 192.0.2.i``, ``--node-name hi``)
with short lease, grace and resync periods so that failures heal within seconds.
With ``tls=True`` the lab's etcd is secured (``kanal lab up --etcd-tls``; see
tests/multihost.py) and each kanald joins with ``etcds://``, its own client
certificate and the etcd user ``kanal``. ``kanal`` commands are run on a host
against its kanald. Used by tests/e2e/test_overlay.py, bench/overlay_bench.py and
demo/overlay_demo.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from kanal.lab import Lab, LabSpec
from tests.multihost import MEMBERS, Underlay

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
        self.key_prefix = f"/kov{self.token}/"

    @property
    def store(self) -> str:
        return self.etcd_url(self.key_prefix)

    def spec(self, hosts: int) -> LabSpec:
        return LabSpec(
            f"{self.prefix}{self.token}",
            hosts=hosts,
            etcd=len(MEMBERS),
            node_ttl=self.ttl,
            grace=self.grace,
            resync=self.resync,
            store_prefix=self.key_prefix,
            tls=self.tls,
        )

    def setup(self) -> None:
        self.make_underlay(self.n)

    @property
    def the_lab(self) -> Lab:
        assert self.lab is not None
        return self.lab

    def api(self, i: int) -> str:
        return self.the_lab.api(f"h{i}")

    def start_kanald(self, i: int) -> None:
        self.the_lab.start_kanald(f"h{i}")

    def kanald_argv(self, i: int, opts: list[str] | None = None) -> list[str]:
        """kanald for host i, in its namespace, with directories of its own under the
        test's; ``opts``: its --cluster-store-opt values (default: its own). For a
        host beyond the lab's (the lab starts its own hosts' kanald)."""
        d = self.tmp / f"h{i}"
        d.mkdir(exist_ok=True)
        opts = self.store_opts(i) if opts is None else opts
        return [
            *("nsenter", f"--net=/run/netns/{self.host_ns(i)}", str(VENV / "kanald")),
            *("--socket", str(d / "fp.sock"), "--state-dir", str(d / "state")),
            *("--api-socket", str(d / "api.sock"), "--netns-dir", str(d / "netns")),
            *("--cni-conf-dir", str(d / "net.d"), "--plugin-dir", str(d / "plugins")),
            *("--docker-plugin-socket", "none", "--cluster-store", self.store),
            *("--advertise-addr", self.addr(i), "--node-name", f"h{i}"),
            *("--node-ttl", str(self.ttl), "--cluster-grace", str(self.grace)),
            *("--cluster-resync", str(self.resync), "--log-level", "info"),
            *(a for o in opts for a in ("--cluster-store-opt", o)),
        ]

    def kill_kanald(self, i: int) -> None:
        self.the_lab.kill(f"h{i}")

    def freeze(self, i: int) -> None:
        self.the_lab.freeze(f"h{i}")

    def thaw(self, i: int) -> None:
        self.the_lab.thaw(f"h{i}")

    def log(self, i: int) -> str:
        p = Path(self.the_lab.host_dir(f"h{i}")) / "kanald.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # --- commands ----------------------------------------------------------------

    def kanal(
        self, i: int, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``kanal ARGS`` against host i's kanald, run inside host i's namespace."""
        p = self.the_lab.kanal(f"h{i}", *args, check=False, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"h{i}: kanal {' '.join(args)}: {p.stderr.strip()}")
        return p

    def sandbox_netns(self, i: int, name: str) -> str:
        """A path to host i's sandbox ``name``'s network namespace that works from
        outside the host's mount namespace (its process's)."""
        from kanal.daemon.client import ApiClient

        pid = ApiClient(self.api(i)).request("GET", f"/sandboxes/{name}")["Pid"]
        return f"/proc/{pid}/ns/net"

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

        store = open_etcd(self.etcd_url(self.key_prefix), self.store_opts(via))

        def read() -> dict[str, Any]:
            out: dict[str, Any] = {}
            for e in store.list(prefix):
                try:
                    out[e.key] = json.loads(e.value)
                except ValueError:
                    out[e.key] = e.value.decode()
            return out

        return in_ns(self.ns[via], read)
