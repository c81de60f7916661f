"""Hosts for multi-host tests: namespaces on an underlay bridge, and an etcd cluster on them.

::

    underlay namespace: bridge "ul" ── veth ── host i (192.0.2.i/24 on "ul0"), i = 1, 2, ...

:class:`Underlay` makes the namespaces (unique names, all deleted by :meth:`close`,
even after a failure) and runs etcd members ``m<i>`` on hosts 1-3, listening on
their underlay addresses. Used by tests/netns/test_cluster.py and
tests/e2e/overlay_hosts.py.

With ``tls=True`` the cluster is secured as a deployment would be: a CA made
here (tests/certs.py), every member serving HTTPS and speaking TLS to its peers,
client and peer certificates required (``--client-cert-auth``,
``--peer-client-cert-auth``), and etcd's authentication on with three users:
``root``, ``kanal`` (read and write under ``/``) and ``reader`` (read only).
Host i gets a client certificate ``h<i>`` and :meth:`store_opts` gives the
``--cluster-store-opt`` values that use it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import create_netns, delete_netns, etcdctl, nsexec, unique

MEMBERS = (1, 2, 3)
USERS = {"root": "root-pw", "kanal": "kanal-pw", "reader": "reader-pw"}


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
        self.pki: Any = None  # tests.certs.Pki when tls
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

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def etcd_url(self, key_prefix: str) -> str:
        scheme = "etcds" if self.tls else "etcd"
        return f"{scheme}://" + ",".join(f"{self.addr(i)}:2379" for i in MEMBERS) + key_prefix

    def client_cert(self, i: int) -> tuple[Path, Path]:
        """Host i's client certificate and key (made on first use)."""
        cert, key = self.tmp / "pki" / f"h{i}.crt", self.tmp / "pki" / f"h{i}.key"
        if not cert.exists():
            self.pki.client(f"h{i}")
        return cert, key

    def store_opts(self, i: int, user: str = "kanal") -> list[str]:
        """``--cluster-store-opt`` values for host i (none without TLS)."""
        if not self.tls:
            return []
        cert, key = self.client_cert(i)
        pw = self.tmp / "pki" / f"{user}.password"
        pw.write_text(USERS[user] + "\n")
        return [
            f"kv.cacertfile={self.pki.ca_file},kv.certfile={cert},kv.keyfile={key}",
            f"kv.username={user},kv.passwordfile={pw}",
        ]

    def start_etcd_cluster(self) -> None:
        if self.tls:
            from tests.certs import Pki

            self.pki = Pki(self.tmp / "pki")
            for i in MEMBERS:
                self.pki.server(f"m{i}", self.addr(i))
        for i in MEMBERS:
            self.start_etcd(i, new=True)
        for i in MEMBERS:
            self.wait_etcd(i)
        if self.tls:
            self._enable_auth()

    def start_etcd(self, i: int, *, new: bool) -> None:
        a, s = self.addr(i), self.scheme
        peers = ",".join(f"m{k}={s}://{self.addr(k)}:2380" for k in MEMBERS)
        cmd = ["ip", "netns", "exec", self.ns[i], "etcd", "--name", f"m{i}"]
        cmd += ["--data-dir", str(self.tmp / f"etcd-m{i}")]
        cmd += ["--listen-client-urls", f"{s}://{a}:2379", "--advertise-client-urls"]
        cmd += [f"{s}://{a}:2379", "--listen-peer-urls", f"{s}://{a}:2380"]
        cmd += ["--initial-advertise-peer-urls", f"{s}://{a}:2380", "--initial-cluster", peers]
        cmd += ["--initial-cluster-token", f"{self.prefix}-{self.token}"]
        cmd += ["--initial-cluster-state", "new" if new else "existing"]
        if self.tls:
            crt, key, ca = (
                self.tmp / "pki" / f"m{i}.crt",
                self.tmp / "pki" / f"m{i}.key",
                self.pki.ca_file,
            )
            cmd += ["--cert-file", str(crt), "--key-file", str(key), "--trusted-ca-file", str(ca)]
            cmd += ["--client-cert-auth", "--peer-client-cert-auth"]
            cmd += ["--peer-cert-file", str(crt), "--peer-key-file", str(key)]
            cmd += ["--peer-trusted-ca-file", str(ca)]
        log = (self.tmp / f"etcd-m{i}.log").open("ab")
        self.etcd[i] = subprocess.Popen(cmd, stdout=log, stderr=log)

    def _tls_args(self, i: int) -> list[str]:
        if not self.tls:
            return []
        cert, key = self.client_cert(i)
        return ["--cacert", str(self.pki.ca_file), "--cert", str(cert), "--key", str(key)]

    def etcdctl(self, i: int, *args: str, user: str = "") -> str:
        """``etcdctl ARGS`` against member i, from host i's namespace."""
        base = ["--endpoints", f"{self.scheme}://{self.addr(i)}:2379", *self._tls_args(i)]
        if user:
            base += ["--user", f"{user}:{USERS[user]}"]
        return etcdctl(base, *args, ns=self.ns[i])

    def _enable_auth(self) -> None:
        for args in (
            ("user", "add", f"root:{USERS['root']}"),
            ("user", "grant-role", "root", "root"),
            ("role", "add", "rw"),
            ("role", "grant-permission", "rw", "--prefix=true", "readwrite", "/"),
            ("user", "add", f"kanal:{USERS['kanal']}"),
            ("user", "grant-role", "kanal", "rw"),
            ("role", "add", "ro"),
            ("role", "grant-permission", "ro", "--prefix=true", "read", "/"),
            ("user", "add", f"reader:{USERS['reader']}"),
            ("user", "grant-role", "reader", "ro"),
            ("auth", "enable"),
        ):
            self.etcdctl(1, *args)

    def etcd_status(self, i: int) -> dict[str, Any] | None:
        """Member i's status when it has a leader, else None."""
        out = nsexec(
            self.ns[i],
            *("curl", "-s", "-m", "1", "-X", "POST", *self._tls_args(i)),
            f"{self.scheme}://{self.addr(i)}:2379/v3/maintenance/status",
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
