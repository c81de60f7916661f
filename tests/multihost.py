"""Hosts for multi-host tests: a kanal lab (kanal.lab), the same one users get.

::

    underlay namespace: bridge "ul" ── veth ── host i   (192.0.2.i on "ul0")
                                    └─ veth ── etcd k   (192.0.2.(200+k) on "ul0")

:class:`Underlay` makes a lab without kanald (hosts are bare namespaces, the
test runs its own processes in them) plus an etcd cluster; its namespaces,
processes and files are all removed by :meth:`close`, even after a failure.
Used by tests/netns/test_cluster.py; tests/e2e/overlay_hosts.py adds kanald.

With ``tls=True`` the lab's etcd is secured as a deployment would be (``kanal lab
up --etcd-tls``, see kanal.lab.pki): a CA of the lab's own, every member serving
HTTPS and speaking TLS to its peers, client and peer certificates required, and
etcd's authentication on with three users: ``root``, ``kanal`` (read and write
under the store prefix) and ``reader`` (read only). Host i has a client
certificate ``h<i>`` and :meth:`store_opts` gives the ``--cluster-store-opt``
values that use it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kanal.lab import Lab, LabSpec
from kanal.lab.pki import Pki
from kanal.lab.spec import addr
from tests.helpers import create_netns, delete_netns, nsexec, unique

MEMBERS = (1, 2, 3)


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


class Underlay:
    def __init__(self, tmp: Path, prefix: str = "kmh", *, tls: bool = False) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.tls = tls
        self.token = secrets.token_hex(4)
        self.lab: Lab | None = None
        self.ns: dict[int, str] = {}
        self.extra: list[str] = []  # namespaces a test made besides the lab's

    @staticmethod
    def addr(i: int) -> str:
        return addr(f"h{i}")

    @staticmethod
    def etcd_addr(k: int) -> str:
        return addr(f"e{k}")

    @staticmethod
    def etcd_index(address: str) -> int:
        """192.0.2.202 → 2."""
        return int(address.rsplit(".", 1)[1]) - 200

    def netns(self, prefix: str) -> str:
        name = create_netns(unique(prefix, 30))
        self.extra.append(name)
        return name

    def spec(self, hosts: int) -> LabSpec:
        return LabSpec(
            f"{self.prefix}{self.token}",
            hosts=hosts,
            etcd=len(MEMBERS),
            kanald=False,
            tls=self.tls,
        )

    def make_underlay(self, hosts: int) -> None:
        """The lab: ``hosts`` host namespaces and the etcd cluster (running)."""
        self.lab = Lab.up(self.spec(hosts), str(self.tmp / "lab"))
        self.ns = {i: self.lab.ns(f"h{i}") for i in range(1, hosts + 1)}

    def host_ns(self, i: int) -> str:
        """Host i's namespace: the lab's, or for a host beyond the lab's a namespace
        made here (once) with ``ul0`` (192.0.2.i) on the lab's underlay bridge
        (removed by :meth:`close`; its link goes with it)."""
        assert self.lab is not None
        if f"h{i}" in self.lab.rec.members:
            return self.lab.ns(f"h{i}")
        if i in self.ns:  # made before
            return self.ns[i]
        ns = self.ns[i] = self.netns(f"{self.prefix}h{i}")
        ul, port = self.lab.ns("ul"), f"x{i}"
        for where, cmd in (
            (ul, f"link add {port} type veth peer name ul0 netns {ns}"),
            (ul, f"link set {port} master ul up"),
            (ns, f"addr add {self.addr(i)}/24 dev ul0"),
            (ns, "link set ul0 up"),
        ):
            p = nsexec(where, "ip", *cmd.split(), check=False)
            if p.returncode != 0:
                raise AssertionError(f"ip {cmd} in {where}: {p.stderr.decode().strip()}")
        return ns

    # --- etcd --------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def etcd_url(self, key_prefix: str) -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(f"{self.etcd_addr(k)}:2379" for k in MEMBERS) + key_prefix

    @property
    def pki(self) -> Pki:
        """The lab's CA, certificates and etcd users' passwords (``tls``)."""
        assert self.lab is not None and self.tls
        return self.lab.pki

    def client_cert(self, i: int) -> tuple[Path, Path]:
        """Host i's client certificate and key (hosts beyond the lab's: made here, by
        the lab's CA, as the lab makes its own)."""
        pki = self.pki
        cert, key = Path(pki.cert(f"h{i}")), Path(pki.key(f"h{i}"))
        if not cert.exists():
            pki.issue_client(f"h{i}")
        return cert, key

    def store_opts(self, i: int, user: str = "kanal") -> list[str]:
        """``--cluster-store-opt`` values for host i (none without TLS)."""
        if not self.tls:
            return []
        self.client_cert(i)
        return self.pki.client_opts(f"h{i}", user)

    def start_etcd_cluster(self) -> None:
        """(Started with the lab.) Waits until every member has a leader."""
        for k in MEMBERS:
            self.wait_etcd(k)

    def start_etcd(self, k: int, *, new: bool) -> None:
        assert self.lab is not None
        self.lab.start_etcd(f"e{k}", new=new)

    def etcd_status(self, k: int) -> dict[str, Any] | None:
        """Member k's status when it has a leader, else None."""
        assert self.lab is not None
        return self.lab.etcd_status(f"e{k}")

    def etcd_ok(self, k: int) -> bool:
        return self.etcd_status(k) is not None

    def wait_etcd(self, k: int) -> None:
        wait_for(f"etcd e{k} with a leader", lambda: self.etcd_status(k), 60)

    def kill_etcd(self, k: int) -> None:
        assert self.lab is not None
        self.lab.kill(f"e{k}")

    def close(self) -> None:
        try:
            if self.lab is not None:
                left = self.lab.down()
                assert not left, left
        finally:
            for ns in reversed(self.extra):
                delete_netns(ns)
