"""A lab's members: its etcd cluster (plain or TLS), one kanald per host, and
the OVS daemons of an ``--ovs`` lab."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable
from typing import Any

from kanal.daemon.client import ApiClient
from kanal.errors import KanalError, Unavailable
from kanal.lab import system
from kanal.lab.core import OVS_BRIDGE, LabCore, bin_path
from kanal.lab.pki import USERS
from kanal.lab.spec import (
    addr,
    mac,
)

__all__ = ["LabMembers"]


class LabMembers(LabCore):
    """Starting, waiting for and asking the lab's daemons."""

    # ---- etcd ------------------------------------------------------------------------
    @property
    def _scheme(self) -> str:
        return "https" if self.spec.tls else "http"

    def etcd_argv(self, member: str, *, new: bool) -> list[str]:
        a, s = addr(member), self._scheme
        cluster = ",".join(f"{e}={s}://{addr(e)}:2380" for e in self.etcd_members())
        data = os.path.join(self.dir, "etcd", member, "data")
        argv = [
            *("etcd", "--name", member, "--data-dir", data),
            *("--listen-client-urls", f"{s}://{a}:2379"),
            *("--advertise-client-urls", f"{s}://{a}:2379"),
            *("--listen-peer-urls", f"{s}://{a}:2380"),
            *("--initial-advertise-peer-urls", f"{s}://{a}:2380"),
            *("--initial-cluster", cluster),
            *("--initial-cluster-token", f"kl-{self.rec.id}"),
            *("--initial-cluster-state", "new" if new else "existing"),
            *("--heartbeat-interval", str(self.spec.etcd_heartbeat_ms)),
            *("--election-timeout", str(self.spec.etcd_election_ms)),
        ]
        if self.spec.tls:  # HTTPS only; client and peer certificates required
            pki = self.pki
            crt, key, ca = pki.cert(member), pki.key(member), pki.ca_file
            argv += [
                *("--cert-file", crt, "--key-file", key, "--trusted-ca-file", ca),
                *("--peer-cert-file", crt, "--peer-key-file", key, "--peer-trusted-ca-file", ca),
                *("--client-cert-auth", "--peer-client-cert-auth"),
            ]
        return argv

    def start_etcd(self, member: str, *, new: bool = False) -> None:
        d = os.path.join(self.dir, "etcd", member)
        os.makedirs(d, mode=0o700, exist_ok=True)
        self._spawn(
            f"etcd:{member}", member, self.etcd_argv(member, new=new), os.path.join(d, "log")
        )

    def _start_etcd_cluster(self, say: Callable[[str], None]) -> None:
        tls = " over TLS, client certificates and users" if self.spec.tls else ""
        say(f"etcd: {self.spec.etcd} members ({', '.join(self.etcd_members())}){tls}")
        if self.spec.tls:
            self.pki.make(self.rec.id, {e: addr(e) for e in self.etcd_members()}, self.hosts())
        for e in self.etcd_members():
            self.start_etcd(e, new=True)
        for e in self.etcd_members():
            self.wait_etcd(e)
        if self.spec.tls:
            self._enable_auth()

    def etcdctl(self, *args: str, user: str = "", input: str | None = None) -> str:
        """``etcdctl ARGS`` from e1's namespace as the lab's admin certificate (and
        ``user``: an etcd user of the lab, logged in with its password). A loaded
        etcd may answer "timed out": tried again, and a change that had landed the
        first time ("already ...") counts as done."""
        e = self.etcd_members()[0]
        argv = ["etcdctl", "--command-timeout=30s", "--endpoints", f"{self._scheme}://"
                f"{addr(e)}:2379"]  # fmt: skip
        if self.spec.tls:
            argv += self.pki.etcdctl_tls()
        if user:
            argv += ["--user", f"{user}:{self.pki.password(user)}"]
        err = ""
        for attempt in range(4):
            p = subprocess.run(
                system.nsenter(self.ns(e), [*argv, *args]),
                input=input, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            if p.returncode == 0:
                return p.stdout
            err = p.stderr.strip()
            if attempt and "already" in err:
                return ""
            if not any(w in err for w in ("timed out", "Unavailable", "deadline", "leader")):
                break
            time.sleep(1)
        raise Unavailable(f"etcdctl {' '.join(args[:2])} failed", err[-500:])

    def _enable_auth(self) -> None:
        """etcd's users: root; kanal may read and write under the store prefix, reader
        may only read there. Then authentication on."""
        prefix = self.spec.store_prefix
        for user in USERS:
            self.etcdctl("user", "add", user, "--interactive=false", input=self.pki.password(user))
        self.etcdctl("user", "grant-role", "root", "root")
        for role, perm in (("kanal", "readwrite"), ("reader", "read")):
            self.etcdctl("role", "add", role)
            self.etcdctl("role", "grant-permission", role, "--prefix=true", perm, prefix)
            self.etcdctl("user", "grant-role", role, role)
        self.etcdctl("auth", "enable")

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=self.pki.ca_file)
            ctx.load_cert_chain(self.pki.cert("admin"), self.pki.key("admin"))
            self._ssl = ctx
        return self._ssl

    def etcd_status(self, member: str) -> dict[str, Any] | None:
        """The member's status when it is up and knows a leader, else None."""
        try:
            code, body = system.http_in_ns(
                self.ns(member), addr(member), 2379, "POST", "/v3/maintenance/status", {},
                timeout=1.0, tls=self._tls_context() if self.spec.tls else None,
            )  # fmt: skip
            st: dict[str, Any] = json.loads(body)
        except (Unavailable, ValueError):
            return None
        return st if code == 200 and int(st.get("leader", 0) or 0) else None

    def wait_etcd(self, member: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.etcd_status(member) is None:
            if not self.proc_alive(f"etcd:{member}"):
                raise Unavailable(f"etcd {member} exited", self._tail(f"etcd:{member}"))
            if time.monotonic() > deadline:
                raise Unavailable(f"etcd {member} has no leader after {timeout:g} s")
            time.sleep(0.1)

    # ---- kanald ----------------------------------------------------------------------
    def kanald_argv(self, host: str) -> list[str]:
        d = self.host_dir(host)
        spec = self.spec
        argv = [
            bin_path("kanald"),
            *("--socket", os.path.join(d, "fp.sock")),
            *("--api-socket", self.api(host)),
            *("--state-dir", os.path.join(d, "state")),
            *("--netns-dir", os.path.join(d, "netns")),
            *("--cni-conf-dir", os.path.join(d, "net.d")),
            *("--plugin-dir", os.path.join(d, "plugins")),
            *("--docker-plugin-socket", "none"),
            *("--log-level", spec.log_level),
        ]
        if spec.etcd:
            argv += [
                *("--cluster-store", self.store_url()),
                *("--advertise-addr", addr(host), "--node-name", host),
                *("--node-ttl", str(spec.node_ttl), "--cluster-grace", str(spec.grace)),
                *("--cluster-resync", str(spec.resync)),
                *(a for o in self.store_opts(host) for a in ("--cluster-store-opt", o)),
            ]
        return argv + list(spec.kanald_args)

    def start_kanald(self, host: str, *, wait: bool = True) -> None:
        d = self.host_dir(host)
        for sub in ("", "state", "netns", "net.d", "plugins"):
            os.makedirs(os.path.join(d, sub), mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.api(host))
        env = None
        if self.spec.ovs:
            env = {**os.environ, "KANAL_OVS_DB": f"unix:{os.path.join(d, 'ovs', 'db.sock')}"}
        self._spawn(
            f"kanald:{host}", host, self.kanald_argv(host), os.path.join(d, "kanald.log"), env
        )
        if wait:
            self.wait_kanald([host])

    def _start_kanalds(self, hosts: list[str], say: Callable[[str], None]) -> None:
        say(f"kanald on {len(hosts)} hosts")
        for h in hosts:
            self.start_kanald(h, wait=False)
        self.wait_kanald(hosts)
        if self.spec.etcd:
            self.wait_nodes(hosts[0], set(hosts))

    def kanald_ok(self, host: str) -> bool:
        if not os.path.exists(self.api(host)):
            return False
        try:
            ApiClient(self.api(host), timeout=2.0).request("GET", "/_ping")
        except (KanalError, OSError):
            return False
        return True

    def wait_kanald(self, hosts: Iterable[str], timeout: float = 120.0) -> None:
        left = set(hosts)
        deadline = time.monotonic() + timeout
        while left:
            for h in sorted(left):
                if not self.proc_alive(f"kanald:{h}"):
                    raise Unavailable(f"kanald on {h} exited", self._tail(f"kanald:{h}"))
                if self.kanald_ok(h):
                    left.discard(h)
            if left and time.monotonic() > deadline:
                raise Unavailable(f"kanald not answering on {', '.join(sorted(left))}")
            if left:
                time.sleep(0.1)

    def nodes(self, host: str) -> list[str]:
        """The cluster's hosts as ``host``'s kanald sees them."""
        rows = ApiClient(self.api(host), timeout=5.0).request("GET", "/nodes")
        return sorted(str(r["Name"]) for r in rows)

    def wait_nodes(self, host: str, want: set[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if want <= set(self.nodes(host)):
                    return
            except (KanalError, OSError):
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"{host} does not see every host in the cluster")
            time.sleep(0.2)

    # ---- Open vSwitch (--ovs) ----------------------------------------------------------
    def _start_ovs(self, say: Callable[[str], None]) -> None:
        """Per host: its own ovsdb-server and ovs-vswitchd (userspace datapath), and a
        netdev bridge kphy holding ul0 and the host's underlay address: the OVS
        userspace datapath sends its VXLAN packets through such a bridge."""
        say("Open vSwitch on every host (userspace datapath, underlay on bridge kphy)")
        schema = "/usr/share/openvswitch/vswitch.ovsschema"
        for h in self.hosts():
            d = os.path.join(self.host_dir(h), "ovs")
            os.makedirs(d, mode=0o700, exist_ok=True)
            subprocess.run(
                ["ovsdb-tool", "create", f"{d}/conf.db", schema], check=True, capture_output=True
            )
            env = {**os.environ, "OVS_RUNDIR": d, "OVS_LOGDIR": d, "OVS_DBDIR": d}
            self._spawn(
                f"ovsdb:{h}", h,
                ["ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                 f"--pidfile={d}/ovsdb.pid", f"--unixctl={d}/ovsdb.ctl", "--no-chdir"],
                f"{d}/ovsdb.log", env,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while not os.path.exists(f"{d}/db.sock"):
                if time.monotonic() > deadline:
                    raise Unavailable(f"ovsdb-server on {h} did not start")
                time.sleep(0.02)
            vsctl = ["ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=30"]
            subprocess.run([*vsctl, "--no-wait", "init"], check=True, capture_output=True)
            self._spawn(
                f"vswitchd:{h}", h,
                ["ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/vswitchd.pid",
                 f"--unixctl={d}/vswitchd.ctl", "--no-chdir"],
                f"{d}/vswitchd.log", env,
            )  # fmt: skip
            subprocess.run(
                [*vsctl, "add-br", OVS_BRIDGE, "--", "set", "Bridge", OVS_BRIDGE,
                 "datapath_type=netdev", f"other_config:hwaddr={mac(h)}",
                 "--", "add-port", OVS_BRIDGE, "ul0"],
                check=True, capture_output=True,
            )  # fmt: skip
            lines = [f"link set {OVS_BRIDGE} mtu {self.spec.underlay_mtu} up"]
            system.ip_batch(self.ns(h), lines + self._l3_lines(OVS_BRIDGE, h))
