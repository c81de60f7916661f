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
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import kanal
from kanal.engine.processes import signal_proc
from kanal.errors import Conflict, InvalidConfig, KanalError, Unavailable
from kanal.lab import record, system
from kanal.lab.core import MAX_UNIX_PATH
from kanal.lab.impair import Impairment
from kanal.lab.members import LabMembers
from kanal.lab.record import LabRecord
from kanal.lab.spec import (
    LabSpec,
    host_name,
    member_index,
    new_lab_id,
)

__all__ = ["Lab"]


class Lab(LabMembers):
    """One lab, as its record says. Make one with :meth:`up`, find one with
    :meth:`load`. Methods that change the lab hold its lock and save the record."""

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
    return os.path.dirname(os.path.dirname(os.path.abspath(kanal.__file__)))
