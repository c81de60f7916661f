"""Hosts for multi-host tests: namespaces on an underlay bridge, and an etcd cluster on them.

::

    underlay namespace: bridge "ul" ── veth ── host i (192.0.2.i/24 on "ul0"), i = 1, 2, ...

:class:`Underlay` makes the namespaces (unique names, all deleted by :meth:`close`,
even after a failure) and runs etcd members ``m<i>`` on hosts 1-3, listening on
their underlay addresses. Used by tests/netns/test_cluster.py and
tests/e2e/overlay_hosts.py.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    def __init__(self, tmp: Path, prefix: str = "kmh") -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.namespaces: list[str] = []
        self.ns: dict[int, str] = {}
        self.etcd: dict[int, subprocess.Popen[bytes]] = {}
        self.token = secrets.token_hex(4)
        self.ul = ""

    @staticmethod
    def addr(i: int) -> str:
        return f"192.0.2.{i}"

    def netns(self, prefix: str) -> str:
        name = create_netns(unique(prefix, 30))
        self.namespaces.append(name)
        return name

    def make_underlay(self, hosts: int) -> None:
        self.ul = self.netns(f"{self.prefix}ul")
        nsexec(self.ul, "ip", "link", "add", "ul", "type", "bridge")
        nsexec(self.ul, "ip", "link", "set", "ul", "up")
        for i in range(1, hosts + 1):
            self.ns[i] = self.host_ns(i)

    def host_ns(self, i: int) -> str:
        """A host namespace with ``ul0`` (192.0.2.i) on the underlay bridge."""
        ns = self.netns(f"{self.prefix}h{i}")
        nsexec(self.ul, "ip", "link", "add", f"p{i}", "type", "veth", "peer", "name", "ul0")
        nsexec(self.ul, "ip", "link", "set", "ul0", "netns", ns)
        nsexec(self.ul, "ip", "link", "set", f"p{i}", "master", "ul", "up")
        nsexec(ns, "ip", "addr", "add", f"{self.addr(i)}/24", "dev", "ul0")
        nsexec(ns, "ip", "link", "set", "ul0", "up")
        nsexec(ns, "ip", "link", "set", "lo", "up")
        return ns

    # --- etcd --------------------------------------------------------------------

    def etcd_url(self, key_prefix: str) -> str:
        return "etcd://" + ",".join(f"{self.addr(i)}:2379" for i in MEMBERS) + key_prefix

    def start_etcd_cluster(self) -> None:
        for i in MEMBERS:
            self.start_etcd(i, new=True)
        for i in MEMBERS:
            self.wait_etcd(i)

    def start_etcd(self, i: int, *, new: bool) -> None:
        a = self.addr(i)
        peers = ",".join(f"m{k}=http://{self.addr(k)}:2380" for k in MEMBERS)
        cmd = ["ip", "netns", "exec", self.ns[i], "etcd", "--name", f"m{i}"]
        cmd += ["--data-dir", str(self.tmp / f"etcd-m{i}")]
        cmd += ["--listen-client-urls", f"http://{a}:2379", "--advertise-client-urls"]
        cmd += [f"http://{a}:2379", "--listen-peer-urls", f"http://{a}:2380"]
        cmd += ["--initial-advertise-peer-urls", f"http://{a}:2380", "--initial-cluster", peers]
        cmd += ["--initial-cluster-token", f"{self.prefix}-{self.token}"]
        cmd += ["--initial-cluster-state", "new" if new else "existing"]
        log = (self.tmp / f"etcd-m{i}.log").open("ab")
        self.etcd[i] = subprocess.Popen(cmd, stdout=log, stderr=log)

    def etcd_status(self, i: int) -> dict[str, Any] | None:
        """Member i's status when it has a leader, else None."""
        out = nsexec(
            self.ns[i],
            *("curl", "-s", "-m", "1", "-X", "POST"),
            f"http://{self.addr(i)}:2379/v3/maintenance/status",
            *("-d", "{}"),
            check=False,
        )
        try:
            st: dict[str, Any] = json.loads(out.stdout)
        except ValueError:
            return None
        return st if int(st.get("leader", 0) or 0) else None

    def etcd_ok(self, i: int) -> bool:
        return self.etcd_status(i) is not None

    def wait_etcd(self, i: int) -> None:
        wait_for(f"etcd m{i} with a leader", lambda: self.etcd_status(i), 60)

    def kill_etcd(self, i: int) -> None:
        p = self.etcd.get(i)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(10)

    def close(self) -> None:
        for i in list(self.etcd):
            self.kill_etcd(i)
        for ns in reversed(self.namespaces):
            delete_netns(ns)
