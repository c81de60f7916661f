"""The core of a lab: its record, members, namespaces, processes and underlay.

See :mod:`kanal.lab.lab` for what a lab is; :class:`~kanal.lab.lab.Lab` adds etcd,
kanald, OVS (:mod:`kanal.lab.members`), making, faults and removal on top.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Self

from kanal.engine.processes import alive
from kanal.errors import KanalError, NotFound
from kanal.lab import record, system
from kanal.lab.pki import Pki
from kanal.lab.record import LabRecord, ProcEntry
from kanal.lab.spec import (
    UNDERLAY_LEN,
    addr,
    etcd_name,
    host_name,
    mac,
    netns_name,
)

__all__ = ["LabCore", "bin_path"]

UNDERLAY_BRIDGE = "ul"
OVS_BRIDGE = "kphy"  # a --ovs host's underlay bridge (userspace datapath)
MAX_UNIX_PATH = 107


def bin_path(name: str) -> str:
    """A kanal executable next to the running interpreter (its venv), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    if os.access(here, os.X_OK):
        return here
    found = shutil.which(name)
    if found is None:
        raise NotFound(f"{name} not found (next to {sys.executable} or on PATH)")
    return found


class LabCore:
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
    def load(cls, name: str, root: str | None = None) -> Self:
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
        bindir = os.path.dirname(bin_path("kanal"))
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
        return self.run(host, bin_path("kanal"), *args, check=check, timeout=timeout)

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

    def _tail(self, key: str, n: int = 1500) -> str:
        e = self.rec.procs.get(key)
        if e is None or not e.log:
            return ""
        try:
            with open(e.log, errors="replace") as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def _port(self, member: str) -> str:
        """The member's port on an underlay bridge: its veth end, or the relay's."""
        return f"{member}b" if member in self.rec.netem else member

    def _bridge_of(self, member: str) -> str:
        for i, group in enumerate(self.rec.partition, start=1):
            if member in group:
                return f"ulp{i}"
        return UNDERLAY_BRIDGE
