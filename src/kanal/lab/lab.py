"""A lab: hosts (namespaces with a kanald each) and an etcd cluster on one underlay,
made, faulted and removed on one machine.

See :mod:`kanal.lab` for the overview and :mod:`kanal.lab.spec` for the layout.
Every link, bridge, address, route, neighbour entry, sysctl and process of a lab
lives in a namespace the lab created; nothing is done in the caller's namespace.

Each host has a mount namespace of its own too (pinned at ``hosts/<h>/mnt``): the
namespaces of its sandboxes are mounted there only, so one host's kanald is not
woken by every mount the other hosts make (with all hosts in one mount namespace,
50 kanalds each re-read the mount table for each of 1000 sandboxes), and it has
its own ``/run/netns`` (``ip netns`` on a lab host lists that host's names, as on
a machine of its own). ``kanal lab exec`` enters both namespaces.

The kernel's neighbour table: on this kernel (and most) the IPv4 neighbour
table and its limits (``gc_thresh1-3``) are one for the whole machine — only the
initial namespace has ``neigh/default`` — so a lab's dynamic entries count
against every other user's. A lab therefore resolves nothing on its underlay:
every member's ``ul0`` has a fixed MAC and every other member gets a permanent
neighbour entry, which the kernel exempts from the limits. Where a kernel has
per-namespace limits, the lab raises them inside its own namespaces only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from kanal.engine.processes import alive
from kanal.errors import Conflict, InvalidConfig, KanalError, NotFound, Unavailable
from kanal.lab import record, system
from kanal.lab.impair import Impairment
from kanal.lab.pki import USERS, Pki
from kanal.lab.record import LabRecord, ProcEntry
from kanal.lab.spec import (
    UNDERLAY_LEN,
    LabSpec,
    addr,
    etcd_name,
    host_name,
    mac,
    member_index,
    netns_name,
    new_lab_id,
)

__all__ = ["Lab"]

UNDERLAY_BRIDGE = "ul"
OVS_BRIDGE = "kphy"  # a --ovs host's underlay bridge (userspace datapath)
MAX_UNIX_PATH = 107


def _bin(name: str) -> str:
    """A kanal executable next to the running interpreter (its venv), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    found = shutil.which(name)
    if found is None:
        raise NotFound(f"{name} not found (next to {sys.executable} or on PATH)")
    return found


class Lab:
    """One lab, as its record says. Make one with :meth:`up`, find one with
    :meth:`load`. Methods that change the lab hold its lock and save the record."""

    def __init__(self, rec: LabRecord) -> None:
        self.rec = rec
        self.spec = rec.lab_spec()
        # processes started by this Python process, waited for when they end
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._ssl: ssl.SSLContext | None = None

    # ---- finding ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.rec.name

    @property
    def dir(self) -> str:
        return self.rec.dir

    @classmethod
    def load(cls, name: str, root: str | None = None) -> Lab:
        return cls(LabRecord.load(name, root))

    @staticmethod
    def names(root: str | None = None) -> list[str]:
        return record.list_labs(root)

    def hosts(self) -> list[str]:
        return [host_name(i) for i in range(1, self.spec.hosts + 1)]

    def etcd_members(self) -> list[str]:
        return [etcd_name(k) for k in range(1, self.spec.etcd + 1)]

    def _member(self, member: str) -> dict[str, str]:
        m = self.rec.members.get(member)
        if m is None:
            raise NotFound(f"lab {self.name} has no member {member!r}")
        return m

    def ns(self, member: str) -> str:
        """The network namespace of a member (``ul``: the underlay's)."""
        if member == "ul":
            return self.rec.underlay
        return self._member(member)["ns"]

    @staticmethod
    def addr(member: str) -> str:
        return addr(member)

    def mnt(self, member: str) -> str:
        """The pinned mount namespace of a host ('' for etcd members, the underlay)."""
        if member.startswith("h") and member in self.rec.members:
            return os.path.join(self.host_dir(member), "mnt")
        return ""

    def host_dir(self, host: str) -> str:
        return os.path.join(self.dir, "hosts", host)

    def api(self, host: str) -> str:
        """The API socket of a host's kanald."""
        return os.path.join(self.host_dir(host), "api.sock")

    def store_url(self) -> str:
        return self.spec.cluster_store()

    @property
    def pki(self) -> Pki:
        """The lab's certificates and etcd users (``--etcd-tls``; see kanal.lab.pki)."""
        return Pki(os.path.join(self.dir, "pki"))

    def store_opts(self, host: str, user: str = "kanal") -> list[str]:
        """The ``--cluster-store-opt`` values of ``host``'s kanald (none without TLS)."""
        return self.pki.client_opts(host, user) if self.spec.tls else []

    def env(self, member: str) -> dict[str, str]:
        """The environment ``kanal lab exec`` gives a command on ``member``: ``kanal``
        there talks to that host's kanald."""
        self.ns(member)  # NotFound for a bad name
        env = {"KANAL_LAB": self.name, "KANAL_LAB_MEMBER": member}
        # this kanal's own commands first on PATH (a venv's kanal need not be on it)
        bindir = os.path.dirname(_bin("kanal"))
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        if bindir not in path.split(":"):
            env["PATH"] = f"{bindir}:{path}"
        if member.startswith("h") and self.spec.kanald:
            d = self.host_dir(member)
            env.update(
                KANAL_HOST=self.api(member),
                KANAL_SOCKET=os.path.join(d, "fp.sock"),  # installed plugins hand over
                NETCONFPATH=os.path.join(d, "net.d"),
            )
            if self.spec.tls:  # etcdctl there speaks to the lab's etcd as that host
                env.update(
                    ETCDCTL_ENDPOINTS=",".join(f"https://{e}" for e in self.spec.etcd_endpoints()),
                    ETCDCTL_CACERT=self.pki.ca_file,
                    ETCDCTL_CERT=self.pki.cert(member),
                    ETCDCTL_KEY=self.pki.key(member),
                )
            if self.spec.ovs:
                env["KANAL_OVS_DB"] = f"unix:{os.path.join(d, 'ovs', 'db.sock')}"
                env["OVS_RUNDIR"] = os.path.join(d, "ovs")  # ovs-vsctl finds the host's db
        return env

    def exec_argv(self, member: str, cmd: Sequence[str]) -> list[str]:
        return system.nsenter(self.ns(member), cmd, self.mnt(member))

    def run(
        self,
        member: str,
        *cmd: str,
        check: bool = True,
        timeout: float = 120,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``cmd`` on ``member`` (in its namespace, with :meth:`env`), captured as text."""
        p = subprocess.run(
            self.exec_argv(member, cmd),
            env={**os.environ, **self.env(member)},
            input=input.decode() if input is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise KanalError(
                f"{member}: {' '.join(cmd)} failed (exit {p.returncode})",
                (p.stderr or p.stdout).strip()[-2000:],
            )
        return p

    def kanal(
        self, host: str, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``kanal ARGS`` on ``host``, against its kanald."""
        return self.run(host, _bin("kanal"), *args, check=check, timeout=timeout)

    # ---- up --------------------------------------------------------------------------
    @classmethod
    def up(
        cls,
        spec: LabSpec,
        root: str | None = None,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> Lab:
        """Make the lab: namespaces, underlay, etcd, one kanald per host; wait until
        every kanald answers and (with etcd) sees every host. On any failure what
        was made is removed again and the error raised."""
        spec.check()
        say = progress or (lambda _m: None)
        for tool in ("ip", "nsenter", "sysctl"):
            system.check_executable(tool)
        if spec.etcd:
            system.check_executable("etcd")
        if spec.tls:
            system.check_executable("openssl")
            system.check_executable("etcdctl")
        if spec.ovs:
            for tool in ("ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovsdb-tool"):
                system.check_executable(tool)
        d = record.create_dir(spec.name, root)
        lab_id = new_lab_id()
        rec = LabRecord(spec.name, lab_id, d, spec.to_dict())
        for sock in ("api.sock", "fp.sock", *(("ovs/db.sock",) if spec.ovs else ())):
            longest = os.path.join(d, "hosts", host_name(spec.hosts), sock)
            if len(longest.encode()) > MAX_UNIX_PATH:
                os.rmdir(d)
                raise InvalidConfig(f"lab directory {d} is too long for unix sockets")
        rec.save()
        lab = cls(rec)
        try:
            lab._make_underlay(say)
            if spec.ovs:
                lab._start_ovs(say)
            if spec.etcd:
                lab._start_etcd_cluster(say)
            if spec.kanald:
                lab._start_kanalds(lab.hosts(), say)
            rec.state = "up"
            rec.save()
        except BaseException:
            with contextlib.suppress(Exception):
                lab.down()
            raise
        return lab

    def _add_netns(self, ns: str) -> None:
        self.rec.namespaces.append(ns)  # recorded first: a failure still gets it removed
        self.rec.save()
        system.add_netns(ns)

    def _make_underlay(self, say: Callable[[str], None]) -> None:
        spec, rec = self.spec, self.rec
        mtu = spec.underlay_mtu
        say(f"underlay: bridge {UNDERLAY_BRIDGE} (MTU {mtu}), {len(spec.members())} members")
        rec.underlay = netns_name(spec.name, rec.id, "ul")
        self._add_netns(rec.underlay)
        members = spec.members()
        for m in members:
            rec.members[m] = {
                "ns": netns_name(spec.name, rec.id, m),
                "addr": addr(m),
                "mac": mac(m),
            }
            self._add_netns(rec.members[m]["ns"])
        # The underlay namespace holds nothing with an address: no IPv6 on its ports.
        system.sysctl(
            rec.underlay,
            {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"},
        )
        lines = [
            "link set lo up",
            f"link add name {UNDERLAY_BRIDGE} type bridge",
            f"link set {UNDERLAY_BRIDGE} mtu {mtu} up",
        ]
        for m in members:
            lines.append(
                f"link add name {m} mtu {mtu} type veth peer name ul0 mtu {mtu} "
                f"netns {rec.members[m]['ns']}"
            )
            lines.append(f"link set {m} master {UNDERLAY_BRIDGE} up")
        system.ip_batch(rec.underlay, lines)
        if system.mount_propagation_shared(self.dir):
            system.make_private(self.dir)
        for h in self.hosts():
            os.makedirs(self.host_dir(h), mode=0o700, exist_ok=True)
            system.make_mount_ns(self.mnt(h))
        per_ns = system.per_namespace_limits(rec.members[members[0]]["ns"])
        for m in members:
            ns = rec.members[m]["ns"]
            settings = {"net.ipv6.conf.ul0.disable_ipv6": "1"}
            if per_ns:  # only ever inside the lab's own namespaces
                n = len(members)
                settings.update(
                    {
                        "net.ipv4.neigh.default.gc_thresh1": str(max(128, 4 * n)),
                        "net.ipv4.neigh.default.gc_thresh2": str(max(512, 16 * n)),
                        "net.ipv4.neigh.default.gc_thresh3": str(max(1024, 32 * n)),
                    }
                )
            system.sysctl(ns, settings)
            lines = ["link set lo up", f"link set ul0 address {mac(m)}"]
            if not (self.spec.ovs and m.startswith("h")):
                lines += self._l3_lines("ul0", m)
            lines.append("link set ul0 up")
            system.ip_batch(ns, lines)

    def _l3_lines(self, dev: str, member: str) -> list[str]:
        """The member's underlay address on ``dev`` and a permanent neighbour entry for
        every other member (the underlay never resolves anything)."""
        lines = [f"addr add {addr(member)}/{UNDERLAY_LEN} dev {dev}"]
        for other in self.spec.members():
            if other != member:
                lines.append(
                    f"neigh replace {addr(other)} lladdr {mac(other)} dev {dev} nud permanent"
                )
        return lines

    # ---- processes -------------------------------------------------------------------
    def _spawn(
        self, key: str, member: str, argv: list[str], log: str, env: dict[str, str] | None = None
    ) -> ProcEntry:
        p = system.spawn(self.ns(member), argv, log, env=env, mnt=self.mnt(member))
        self._children[p.pid] = p
        ref = system.proc_ref(p.pid)
        entry = ProcEntry(p.pid, ref[1], argv, self.ns(member), log)
        self.rec.procs[key] = entry
        self.rec.save()
        return entry

    def proc_alive(self, key: str) -> bool:
        e = self.rec.procs.get(key)
        if e is None:
            return False
        p = self._children.get(e.pid)
        if p is not None and p.poll() is not None:
            return False
        return alive((e.pid, e.start))

    def _stop(self, key: str, sig: int = signal.SIGKILL) -> bool:
        e = self.rec.procs.get(key)
        if e is None:
            return False
        was = system.stop((e.pid, e.start), sig)
        p = self._children.pop(e.pid, None)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        if key in self.rec.frozen:
            self.rec.frozen.remove(key)
        return was

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

    def _tail(self, key: str, n: int = 1500) -> str:
        e = self.rec.procs.get(key)
        if e is None or not e.log:
            return ""
        try:
            with open(e.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    # ---- kanald ----------------------------------------------------------------------
    def kanald_argv(self, host: str) -> list[str]:
        d = self.host_dir(host)
        spec = self.spec
        argv = [
            _bin("kanald"),
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
        from kanal.daemon.client import ApiClient

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
        from kanal.daemon.client import ApiClient

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

    # ---- down ------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove everything the lab made: processes (its daemons and whatever runs
        in its namespaces, sandboxes included), mounts under its directory, its
        namespaces (their links go with them), its directory. Returns what could
        not be removed (empty when nothing is left)."""
        with record.locked(self.dir):
            self.rec.state = "removing"
            with contextlib.suppress(OSError):
                self.rec.save()
            problems: list[str] = []
            pins = [p for h in self.hosts() if os.path.exists(p := self.mnt(h))]
            nets = {
                i
                for ns in self.rec.namespaces
                if (i := system.netns_inode(f"{system.NETNS_DIR}/{ns}")) is not None
            }
            for pin in pins:  # sandboxes, and what ip netns add made on the host
                nets |= system.mount_ns_netns(pin, [self.dir, *system.PRIVATE_DIRS])
            mnts = {i for p in pins if (i := system.netns_inode(p)) is not None}
            for key in list(self.rec.procs):
                with contextlib.suppress(KanalError, OSError):
                    self._stop(key)
            left = system.kill_in_namespaces(nets, mnts)
            if left:
                problems.append(f"processes still running: {left}")
            for child in self._children.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(5)
            problems += system.umount_under(self.dir)
            for ns in reversed(self.rec.namespaces):
                system.del_netns(ns)
                if system.netns_exists(ns):
                    problems.append(f"namespace {ns} not deleted")
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.path.exists(self.dir):
            problems.append(f"directory {self.dir} not removed")
        return problems

    # ---- faults ----------------------------------------------------------------------
    def _proc_key(self, target: str) -> str:
        """``h2`` → its kanald, ``e1`` → that etcd member."""
        kind, _ = member_index(target)
        self._member(target)
        if kind == "h" and not self.spec.kanald:
            raise InvalidConfig(f"lab {self.name} runs no kanald")
        return f"kanald:{target}" if kind == "h" else f"etcd:{target}"

    def kill(self, target: str) -> bool:
        """SIGKILL the host's kanald or the etcd member; False if it was not running."""
        with record.locked(self.dir):
            key = self._proc_key(target)
            was = self._stop(key)
            self.rec.save()
            return was

    def freeze(self, target: str) -> None:
        """SIGSTOP the host's kanald or the etcd member (alive but silent)."""
        self._signal(target, signal.SIGSTOP, frozen=True)

    def thaw(self, target: str) -> None:
        self._signal(target, signal.SIGCONT, frozen=False)

    def _signal(self, target: str, sig: int, *, frozen: bool) -> None:
        from kanal.engine.processes import signal_proc

        with record.locked(self.dir):
            key = self._proc_key(target)
            e = self.rec.procs.get(key)
            if e is None or not self.proc_alive(key):
                raise Conflict(f"{target}: {key.split(':')[0]} is not running")
            signal_proc((e.pid, e.start), sig, group=False)
            if frozen and key not in self.rec.frozen:
                self.rec.frozen.append(key)
            if not frozen and key in self.rec.frozen:
                self.rec.frozen.remove(key)
            self.rec.save()

    def restart(self, target: str, *, wait: bool = True) -> None:
        """Kill (if running) and start again: kanald with the same state, the etcd
        member with its data (it rejoins the cluster)."""
        with record.locked(self.dir):
            key = self._proc_key(target)
            self._stop(key)
            if key.startswith("etcd:"):
                self.start_etcd(target, new=False)
            else:
                self.start_kanald(target, wait=False)
            self.rec.save()
        if wait:
            if key.startswith("etcd:"):
                self.wait_etcd(target)
            else:
                self.wait_kanald([target])

    def start(self, target: str, *, wait: bool = True) -> None:
        """Start a host's kanald or an etcd member that is not running."""
        key = self._proc_key(target)
        if self.proc_alive(key):
            raise Conflict(f"{target}: {key.split(':')[0]} is already running")
        self.restart(target, wait=wait)

    def _port(self, member: str) -> str:
        """The member's port on an underlay bridge: its veth end, or the relay's."""
        return f"{member}b" if member in self.rec.netem else member

    def _bridge_of(self, member: str) -> str:
        for i, group in enumerate(self.rec.partition, start=1):
            if member in group:
                return f"ulp{i}"
        return UNDERLAY_BRIDGE

    def partition(self, groups: Sequence[Sequence[str]]) -> None:
        """Cut the underlay: each group of members on a switch of its own, every member
        not named stays on the main one. Replaces any earlier partition."""
        with record.locked(self.dir):
            seen: set[str] = set()
            clean: list[list[str]] = []
            for g in groups:
                members = [m for m in g if m]
                if not members:
                    raise InvalidConfig("an empty partition group")
                for m in members:
                    self._member(m)
                    if m in seen:
                        raise InvalidConfig(f"{m} is in two partition groups")
                    seen.add(m)
                clean.append(sorted(members))
            if len(seen) == len(self.rec.members):
                clean = clean[1:]  # every member named: the first group keeps the main switch
            old = len(self.rec.partition)
            self.rec.partition = clean
            lines = []
            for i in range(1, len(clean) + 1):
                if i > old:
                    lines.append(f"link add name ulp{i} type bridge")
                lines.append(f"link set ulp{i} mtu {self.spec.underlay_mtu} up")
            for m in self.rec.members:
                lines.append(f"link set {self._port(m)} master {self._bridge_of(m)}")
            for i in range(len(clean) + 1, old + 1):
                lines.append(f"link del ulp{i}")
            system.ip_batch(self.rec.underlay, lines)
            self.rec.save()

    def heal(self) -> None:
        """Undo the partition: every member back on the main switch."""
        self.partition([])

    def netem(self, members: Iterable[str], imp: Impairment | None) -> None:
        """Impair (``imp``) or restore (None) the underlay links of ``members``, both
        directions (see :mod:`kanal.lab.impair`)."""
        with record.locked(self.dir):
            members = list(members)
            for m in members:
                self._member(m)
            if imp is not None:
                imp.check()
            lines_add, lines_del = [], []
            for m in members:
                had = m in self.rec.netem
                if imp is None:
                    if had:
                        del self.rec.netem[m]
                        lines_del += [f"link set {m} master {self._bridge_of(m)}", f"link del {m}i"]
                    continue
                self.rec.netem[m] = imp.to_dict()
                if not had:
                    mtu = self.spec.underlay_mtu
                    lines_add += [
                        f"link add name {m}i mtu {mtu} type veth peer name {m}b mtu {mtu}",
                        f"link set {m}i up",
                        f"link set {m}b master {self._bridge_of(m)} up",
                    ]
            system.ip_batch(self.rec.underlay, lines_add)
            self._configure_relay()
            # only now (the relay bridges X and Xi) is X taken off its switch
            system.ip_batch(
                self.rec.underlay, [f"link set {m} nomaster" for m in members if imp is not None]
            )
            system.ip_batch(self.rec.underlay, lines_del)
            self.rec.save()

    def _configure_relay(self) -> None:
        path = os.path.join(self.dir, "impair.json")
        generation = time.monotonic_ns()
        cfg = {
            "generation": generation,
            "links": [
                {"a": m, "b": f"{m}i", "impairment": imp}
                for m, imp in sorted(self.rec.netem.items())
            ],
        }
        tmp = path + ".tmp"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(cfg, f)
        os.replace(tmp, path)
        if not cfg["links"]:
            if self.proc_alive("impair"):
                self._stop("impair", signal.SIGTERM)
            return
        if self.proc_alive("impair"):
            from kanal.engine.processes import signal_proc

            e = self.rec.procs["impair"]
            signal_proc((e.pid, e.start), signal.SIGHUP, group=False)
        else:
            argv = [sys.executable, "-m", "kanal.lab.impair", path]
            log = os.path.join(self.dir, "impair.log")
            self._spawn("impair", "ul", argv, log, {**os.environ, "PYTHONPATH": _src_path()})
        # The relay has the links before their ports move.
        deadline = time.monotonic() + 10
        while True:
            try:
                with open(f"{path}.ack") as f:
                    if f.read().strip() == str(generation):
                        return
            except OSError:
                pass
            if not self.proc_alive("impair"):
                raise Unavailable("the impairment relay exited", self._tail("impair"))
            if time.monotonic() > deadline:
                raise Unavailable("the impairment relay did not take its new links")
            time.sleep(0.01)

    def clear(self) -> None:
        """Every fault undone: impairments, partition, frozen processes thawed."""
        self.netem(list(self.rec.netem), None)
        self.heal()
        for key in list(self.rec.frozen):
            with contextlib.suppress(KanalError):
                self.thaw(key.split(":", 1)[1])

    # ---- status ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What ``kanal lab ls NAME`` shows: members, addresses, processes, faults."""
        rows = []
        for m in self.spec.members():
            info = self.rec.members.get(m)
            if info is None:
                continue
            procs = {
                k.split(":")[0]: ("frozen" if k in self.rec.frozen else "running")
                if self.proc_alive(k)
                else "stopped"
                for k in self.rec.procs
                if k.endswith(f":{m}")
            }
            row: dict[str, Any] = {"Member": m, "Addr": info["addr"], "Netns": info["ns"]}
            row["Processes"] = procs
            if m.startswith("h") and self.spec.kanald:
                row["Api"] = self.api(m)
            if m in self.rec.netem:
                row["Netem"] = str(Impairment.from_dict(self.rec.netem[m]))
            row["Switch"] = self._bridge_of(m)
            rows.append(row)
        return {
            "Name": self.name,
            "Id": self.rec.id,
            "State": self.rec.state,
            "Dir": self.dir,
            "Hosts": self.spec.hosts,
            "Etcd": self.spec.etcd,
            "UnderlayMtu": self.spec.underlay_mtu,
            "Ovs": self.spec.ovs,
            "Tls": self.spec.tls,
            "Pki": self.pki.dir if self.spec.tls else "",
            "ClusterStore": self.store_url(),
            "Underlay": self.rec.underlay,
            "Partition": self.rec.partition,
            "Members": rows,
        }


def _src_path() -> str:
    """Where the ``kanal`` package is imported from (for ``python -m`` children)."""
    import kanal

    return os.path.dirname(os.path.dirname(os.path.abspath(kanal.__file__)))
