"""Sandboxes: kanal's own "containers" — a network namespace running a process.

kanal needs no container engine: ``kanal run`` makes a named network namespace,
joins it to networks through the controller, writes its own resolv.conf, hosts
and hostname, and starts the command in it with those files bound over /etc in a
mount namespace of its own (see kanal.engine.launch). ``--network host`` uses the
daemon's namespace, ``none`` only loopback, ``container:<name>`` another
sandbox's namespace. State is in the store (``sandboxes/<id>``), so ``ps`` and
networking survive a daemon restart; a detached process outlives the daemon.

:class:`SandboxManager` is the registry and the operations (create, start, stop,
rm, recovery's steps); it uses :class:`~kanal.engine.sandboxenv.SandboxEnv`
(namespaces and /etc files), :class:`~kanal.engine.supervisor.Supervisor` (the
processes) and :class:`~kanal.engine.nameindex.NameIndex` (embedded DNS names).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from kanal import validate
from kanal.engine import processes, sandboxlife
from kanal.engine.controller import Controller
from kanal.engine.dns.index import NameIndex
from kanal.engine.model import Endpoint, SandboxRef, new_id, now
from kanal.engine.sandboxenv import SandboxEnv, is_mount
from kanal.engine.sandboxnet import EndpointOptions
from kanal.engine.sandboxrecord import Sandbox
from kanal.engine.sandboxspec import NetworkRequest, SandboxSpec, checked_spec, link_names
from kanal.engine.supervisor import Supervisor
from kanal.errors import Conflict, KanalError, NotFound
from kanal.store import Delete, Put, Store, StoreConflict

if TYPE_CHECKING:
    from kanal.engine.journal import Intent, Journal

__all__ = ["NetworkRequest", "Sandbox", "SandboxManager", "SandboxSpec"]

log = logging.getLogger("kanal.sandbox")


class SandboxManager:
    """Creates, starts, stops and removes sandboxes; a resolver for the API.

    Args:
        netns_dir: where sandbox namespaces are made; /run/netns is ``ip netns``'s.
        state_dir: per-sandbox files (resolv.conf, hosts, hostname, logs).
        host_resolv: the resolv.conf the default nameservers come from.
    """

    def __init__(
        self,
        store: Store,
        controller: Controller,
        *,
        state_dir: str,
        netns_dir: str = "/run/netns",
        host_resolv: str = "/etc/resolv.conf",
        dns: Any = None,
        host_gateway_ip: str = "",
    ) -> None:
        self.store = store
        self.ctrl = controller
        self.dns = dns  # kanal.engine.dns.DnsService, or None: no embedded DNS
        self.env = SandboxEnv(
            controller, state_dir=state_dir, netns_dir=netns_dir, host_resolv=host_resolv
        )
        self.env.host_gateway_ip = host_gateway_ip  # what --add-host NAME:host-gateway is
        self.procs = Supervisor(self.env, self._exited)
        self.names_index = NameIndex(controller)
        #: embedded DNS's lookups (``lookup``, ``reverse``), dropped by ``invalidate``
        self.lookup = self.names_index.lookup
        self.reverse = self.names_index.reverse
        self.invalidate = self.names_index.invalidate
        self._lock = threading.Lock()
        self._changed = threading.Condition()  # a sandbox's process ended
        self._rel_locks: dict[str, threading.Lock] = {}
        self._sb_locks: dict[str, threading.Lock] = {}
        controller.listeners.append(self._on_endpoint_event)

    @property
    def netns_dir(self) -> str:
        """Where sandbox namespaces are made (the environment's)."""
        return self.env.netns_dir

    @netns_dir.setter
    def netns_dir(self, path: str) -> None:
        self.env.netns_dir = path

    @property
    def state_dir(self) -> str:
        return self.env.state_dir

    @property
    def journal(self) -> Journal:
        return self.ctrl.journal

    def _locked(self, sid: str) -> threading.Lock:
        """One operation at a time per sandbox (start, stop, rm of the same one)."""
        with self._lock:
            lock = self._sb_locks.get(sid)
            if lock is None:
                lock = self._sb_locks[sid] = threading.Lock()
            return lock

    # --- lookups -----------------------------------------------------------------

    def list_all(self) -> list[Sandbox]:
        return [self._refresh(Sandbox.from_json(e.value)) for e in self.store.list("sandboxes/")]

    def get(self, ref: str) -> Sandbox:
        """By id, name or unique id prefix."""
        sbs = self.list_all()
        for s in sbs:
            if s.id == ref or s.name == ref:
                return s
        hits = [s for s in sbs if ref and s.id.startswith(ref)]
        if len(hits) == 1:
            return hits[0]
        raise NotFound(f"No such container: {ref}")

    def resolve(self, ref: str) -> SandboxRef:
        s = self.get(ref)
        return SandboxRef(s.id, s.name, s.netns)

    def names(self) -> dict[str, str]:
        return {s.id: s.name for s in self.list_all()}

    def _save(self, s: Sandbox) -> None:
        """Store a state change of an existing sandbox; never brings back one that
        was removed meanwhile (a process that exits during ``rm`` reports late)."""
        key = f"sandboxes/{s.id}"
        while True:
            e = self.store.get(key)
            if e is None:
                return
            try:
                self.store.put(key, s.to_json(), expect=e.mod_rev)
                return
            except StoreConflict:
                continue

    def _on_endpoint_event(self, event: str, net: Any, ep: Endpoint) -> None:
        if event == "lost":
            for cidr in (ep.ipv4, ep.ipv6):
                if cidr:
                    self.note_lost(ep.sandbox_id, net.name, cidr.split("/")[0])

    def note_lost(self, sid: str, network: str, address: str) -> None:
        """Record on the sandbox that it lost ``address`` on ``network``."""
        key = f"sandboxes/{sid}"
        while True:
            e = self.store.get(key)
            if e is None:
                return
            sb = Sandbox.from_json(e.value)
            sb.lost.append({"Network": network, "Address": address, "At": now()})
            try:
                self.store.put(key, sb.to_json(), expect=e.mod_rev)
                return
            except StoreConflict:
                continue

    def _refresh(self, s: Sandbox) -> Sandbox:
        """A running sandbox whose process is gone (after a daemon restart) is exited."""
        if s.state == "running" and s.pid and not self.procs.following(s.id):
            leader = self.procs.leader(s)
            if leader is None or not processes.alive(leader):
                # (Its endpoints are given back by its next stop, start or rm: a
                # lookup does no network work, it may run inside one.)
                s.state, s.finished_at = "exited", now()
                self._save(s)
        return s

    # --- create ------------------------------------------------------------------

    def create(self, spec: SandboxSpec, *, start: bool = False) -> Sandbox:
        """Namespace, networks, files, and with ``start`` the process: one operation
        (``kanal run -d``), all undone on failure or after a crash midway. Without
        ``start`` nothing runs yet."""
        sid = new_id()
        name, mode = checked_spec(spec, sid)
        try:
            # The name is taken together with the intent: a crash from here on
            # leaves an intent that frees it again (kanal.engine.recovery).
            it = self.journal.begin(
                "sandbox-create",
                sandbox=sid,
                name=name,
                with_ops=[Put(f"sandbox-names/{name}", sid.encode(), 0)],
            )
        except StoreConflict:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use') from None
        try:
            return self._create(sid, name, mode, spec, it, start)
        except BaseException:
            try:
                self.undo_create(sid, name)
            finally:
                self.journal.end(it)
            raise

    def _create(
        self, sid: str, name: str, mode: str, spec: SandboxSpec, it: Intent, start: bool
    ) -> Sandbox:
        own = mode not in ("host",) and not mode.startswith("container:")
        if mode == "host":
            netns = f"/proc/{os.getpid()}/ns/net"
        elif mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            netns = other.netns
        else:
            netns = self.env.make_netns(sid)
        st = os.stat(netns) if own else None
        sb = Sandbox(
            id=sid,
            name=name,
            argv=list(spec.argv),
            netns=netns,
            own_netns=own,
            network_mode=mode,
            created=now(),
            hostname=spec.hostname or (validate.default_hostname(name, sid) if own else ""),
            env=dict(spec.env),
            dns=list(spec.dns),
            dns_search=list(spec.dns_search),
            dns_options=list(spec.dns_options),
            extra_hosts=list(spec.extra_hosts),
            workdir=spec.workdir,
            netns_id=[st.st_dev, st.st_ino] if st is not None else [],
            exposed=list(spec.exposed),
            pid_mode=spec.pid_mode,
            publish=[asdict(p) for p in spec.publish],
            requests=[asdict(r) for r in spec.networks],
        )
        links = link_names(spec.links, self.list_all())
        if own and mode != "none":
            reqs = spec.networks or [NetworkRequest(mode)]
            for i, r in enumerate(reqs):
                self.ctrl.connect(
                    r.network,
                    SandboxRef(sid, name, netns),
                    ip=r.ip,
                    ip6=r.ip6,
                    aliases=r.aliases,
                    ports=spec.publish if i == 0 else (),
                    opts=EndpointOptions(spec.mac_address, links) if i == 0 else None,
                )
        self.env.check_host_gateway(sb)
        self.write_files(sb)
        self.sync_dns(sb)
        p = self.procs.launch(sb) if start else None
        # The sandbox appears (ps, lookups) with the intent's end: never half made.
        self.journal.end(it, [Put(f"sandboxes/{sid}", sb.to_json(), 0)])
        if p is not None:
            self.procs.follow(sid, p)
        return sb

    def sync_dns(self, sb: Sandbox) -> None:
        """Serve (or stop serving) embedded DNS in ``sb`` as its networks say."""
        if self.dns is None or not sb.own_netns:
            return
        user = self.env.user_networks(sb)
        attached = sb.id in self.dns.attached()
        if user and not attached:
            internal = all(i for _, i in user)
            try:
                self.dns.attach(sb.id, sb.netns, self.env.upstreams(sb), internal=internal)
            except (OSError, KanalError) as e:
                log.warning("no embedded DNS for %s: %s", sb.name, e)
        elif not user and attached:
            self.dns.detach(sb.id)

    def netns_path(self, sid: str) -> str:
        """Where the sandbox's own namespace is mounted (derived from its id)."""
        return self.env.netns_path(sid)

    def _drop_name(self, name: str, sid: str) -> list[Delete]:
        """The delete of ``name``'s reservation, if it is still this sandbox's."""
        e = self.store.get(f"sandbox-names/{name}")
        return [Delete(e.key, e.mod_rev)] if e is not None and e.value.decode() == sid else []

    def undo_create(self, sid: str, name: str) -> None:
        """Take back whatever a create of ``sid`` got to: endpoints, namespace, files,
        name. Idempotent; also what recovery runs for an interrupted create."""
        if self.dns is not None:
            self.dns.detach(sid)
        self.ctrl.disconnect_all(sid)
        path = self.netns_path(sid)
        self.procs.stop_all(sid, None, path)
        if os.path.exists(path):
            self.env.del_netns(path)
        shutil.rmtree(self.env.dir(sid), ignore_errors=True)
        self.store.txn([Delete(f"sandboxes/{sid}"), *self._drop_name(name, sid)])

    # --- files ----------------------------------------------------------------------

    def _embedded_dns(self, sb: Sandbox) -> bool:
        return self.dns is not None and sb.own_netns and bool(self.env.user_networks(sb))

    def write_files(self, sb: Sandbox) -> None:
        """resolv.conf, hosts and hostname of the sandbox (:class:`SandboxEnv`)."""
        self.env.write_files(sb, embedded_dns=self._embedded_dns(sb))

    # --- processes ---------------------------------------------------------------

    def launch_argv(self, sb: Sandbox) -> tuple[list[str], str]:
        """The command line that runs ``sb``'s process, and its spec file."""
        return self.procs.launch_argv(sb)

    def start(self, ref: str) -> Sandbox:
        """Start the process detached (output to ``<state>/sandboxes/<id>/log``)."""
        sb = self.get(ref)
        with self._locked(sb.id):
            sb = self.get(sb.id)
            if sb.state == "running":
                raise Conflict(f"container {sb.name} is already running")
            if sb.error:
                raise Conflict(f"container {sb.name} is broken: {sb.error}")
            sandboxlife.retake(self, sb)
            try:
                with self.journal.intent("sandbox-start", sandbox=sb.id) as it:
                    p = self.procs.launch(sb)
                    self.journal.end(it, [Put(f"sandboxes/{sb.id}", sb.to_json())])
            except BaseException:
                sandboxlife.release(self, self.get(sb.id))
                raise
        self.procs.follow(sb.id, p)
        return sb

    def adopt_started(self, sid: str) -> Sandbox | None:
        """Recovery of an interrupted start: the process it launched, if one runs,
        becomes the sandbox's (so ``rm -f`` stops it); else nothing changes."""
        try:
            sb = self.get(sid)
        except NotFound:
            return None
        found = self.procs.find_launched(sid)
        if found is None or sb.state == "running":
            return sb
        sb.state, sb.pid, sb.exit_code = "running", found[0], None
        sb.started = float(found[1])
        self._save(sb)
        return sb

    def _exited(self, sid: str, code: int) -> None:
        """A process this daemon started ended (the supervisor's report)."""
        try:
            self.mark_exited(sid, code)
        except KanalError:
            pass
        except Exception:  # the reporting thread must not die silently
            log.exception("sandbox %s exited", sid)

    def mark_running(self, ref: str, pid: int) -> Sandbox:
        """An attached run started by the CLI itself reports its process."""
        sb = self.get(ref)
        sb.state, sb.pid, sb.exit_code = "running", pid, None
        sb.started_at, sb.finished_at = now(), ""
        start = processes.proc_start(pid)
        sb.started = float(start) if start else 0.0
        self._save(sb)
        return sb

    def mark_exited(self, ref: str, code: int) -> Sandbox:
        """Its process ended with ``code``: exited, its endpoints released."""
        sb = self.get(ref)
        sb.state, sb.exit_code, sb.finished_at = "exited", code, now()
        self._save(sb)
        sandboxlife.release(self, sb)
        with self._changed:
            self._changed.notify_all()
        return sb

    def stop(self, ref: str, timeout: float = 10.0) -> Sandbox:
        sb = self.get(ref)
        with self._locked(sb.id):
            return self._stop(sb.id, timeout)

    def _stop(self, sid: str, timeout: float) -> Sandbox:
        sb = self.get(sid)
        if sb.state != "running" or not sb.pid:
            sandboxlife.release(
                self, sb
            )  # one that ended unseen (kanald was down) still holds them
            return self.get(sid)
        followed = self.procs.following(sid)
        self.procs.stop_all(sb.id, sb, sb.netns if sb.own_netns else "", timeout)
        # The supervisor's thread reports the status it reaped (143 for SIGTERM).
        sb = sandboxlife.wait_exit(self, sid, 5.0) if followed else self.get(sid)
        if sb.state == "running" or sb.exit_code is None:
            # Not followed (started before a daemon restart): its status is not
            # ours to read; it ended on the SIGTERM or on the SIGKILL after it.
            sb.exit_code = 137 if sb.state == "running" else 143
            sb.state, sb.finished_at = "exited", now()
            self._save(sb)
        sandboxlife.release(self, sb)
        with self._changed:
            self._changed.notify_all()
        return self.get(sid)

    def remove(self, ref: str, *, force: bool = False) -> Sandbox:
        sb = self.get(ref)
        with self._locked(sb.id):
            sb = self.get(sb.id)
            if sb.state == "running" and not force:
                raise Conflict(
                    f"You cannot remove a running container {sb.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            sharing = [s.name for s in self.list_all() if s.network_mode == f"container:{sb.name}"]
            if sharing and sb.own_netns:
                raise Conflict(f"container {sb.name} shares its network with {', '.join(sharing)}")
            with self.journal.intent("sandbox-remove", sandbox=sb.id, name=sb.name) as it:
                self.finish_remove(sb.id, sb.name, it)
        with self._lock:
            self._sb_locks.pop(sb.id, None)
        return sb

    def finish_remove(self, sid: str, name: str, it: Intent | None = None) -> None:
        """Every step of ``rm -f``, each one idempotent: processes, DNS, endpoints,
        namespace, records (with the intent's end), files. Also recovery's."""
        try:
            sb: Sandbox | None = self.get(sid)
        except NotFound:
            sb = None
        own = sb.own_netns if sb is not None else True
        netns = self.netns_path(sid) if own else ""
        self.procs.stop_all(sid, sb, netns)
        with sandboxlife.release_lock(self, sid):  # no release of the ended process in between
            if self.dns is not None:
                self.dns.detach(sid)
            self.ctrl.disconnect_all(sid)
            if own and os.path.exists(netns):
                self.env.del_netns(netns)
            # Files before records: once the intent is struck off nothing may be left.
            shutil.rmtree(self.env.dir(sid), ignore_errors=True)
            ops = [Delete(f"sandboxes/{sid}"), *self._drop_name(name, sid)]
            if it is not None:
                self.journal.end(it, ops)
            else:
                self.store.txn(ops)
        with self._lock:
            self._rel_locks.pop(sid, None)

    def repair_netns(self, sid: str) -> str:
        """A sandbox whose namespace mount an outside hand removed: mounted again
        from a process still in it, else marked broken (nothing holds it any more,
        its interfaces are gone). Returns what was done ("" if nothing was needed)."""
        with self._locked(sid):
            try:
                sb = self.get(sid)
            except NotFound:
                return ""
            if not sb.own_netns or is_mount(sb.netns) or sb.error:
                return ""
            holder = self.procs.netns_holder(sb)
            if holder:
                if self.env.remount(sb.netns, holder, tuple(sb.netns_id)):
                    return f"mounted the namespace of {sb.name} again at {sb.netns}"
                return ""  # held, but not mountable now: the next pass tries again
            sb.error = (
                f"its network namespace {sb.netns} was removed from outside and no process "
                "holds it any more: its interfaces are gone (kanal rm it)"
            )
            self._save(sb)
            return f"sandbox {sb.name} is broken: {sb.error}"

    def reconcile(self) -> dict[str, int]:
        """After recovery: names whose sandbox is gone (and no operation of which
        is open) are freed. Returns counts."""
        busy = {str(i.fields.get("sandbox")) for i in self.journal.open()}
        have = {e.key.removeprefix("sandboxes/") for e in self.store.list("sandboxes/")}
        freed = 0
        for e in self.store.list("sandbox-names/"):
            sid = e.value.decode()
            if sid not in have and sid not in busy:
                self.store.txn([Delete(e.key, e.mod_rev)])
                freed += 1
        return {"names_freed": freed}

    def refresh_files(self, sandbox_id: str) -> None:
        try:
            sb = self.get(sandbox_id)
        except NotFound:
            return
        self.write_files(sb)
        self.sync_dns(sb)
