"""Sandboxes: kanal's own "containers" — a network namespace running a process.

kanal needs no container engine: ``kanal run`` makes a named network namespace,
joins it to networks through the controller, writes its own resolv.conf, hosts
and hostname, and starts the command in it with those files bound over /etc in a
mount namespace of its own (see kanal.engine.launch). ``--network host`` uses the
daemon's namespace, ``none`` only loopback, ``container:<name>`` another
sandbox's namespace. State is in the store (``sandboxes/<id>``), so ``ps`` and
networking survive a daemon restart; a detached process outlives the daemon.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kanal import validate
from kanal.engine import processes
from kanal.engine.controller import Controller, SandboxRef
from kanal.engine.model import PortBinding, new_id, now, validate_name
from kanal.errors import Conflict, InvalidConfig, KanalError, NotFound
from kanal.store import Delete, Put, Store, StoreConflict

if TYPE_CHECKING:
    from kanal.engine.journal import Intent, Journal
    from kanal.engine.model import Endpoint

__all__ = ["NetworkRequest", "Sandbox", "SandboxManager", "SandboxSpec"]

log = logging.getLogger("kanal.sandbox")


@dataclass
class NetworkRequest:
    network: str
    ip: str = ""
    ip6: str = ""
    aliases: list[str] = field(default_factory=list)


@dataclass
class SandboxSpec:
    """What ``kanal run`` asks for."""

    argv: list[str]
    name: str = ""
    network_mode: str = "bridge"  # a network name, "host", "none" or "container:<name>"
    networks: list[NetworkRequest] = field(default_factory=list)
    publish: list[PortBinding] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    workdir: str = ""


@dataclass
class Sandbox:
    id: str
    name: str
    argv: list[str]
    netns: str
    own_netns: bool
    network_mode: str
    state: str = "created"  # created | running | exited
    pid: int = 0
    exit_code: int | None = None
    created: str = ""
    started: float = 0.0  # /proc/<pid>/stat starttime (ticks): tells a reused pid apart
    hostname: str = ""
    env: dict[str, str] = field(default_factory=dict)
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    workdir: str = ""
    # (device, inode) of its own namespace: found again after an outside unmount
    netns_id: list[int] = field(default_factory=list)
    error: str = ""  # why it is broken (docker's State.Error); "" when it is not
    # overlay addresses the cluster freed while this host was cut off (the sandbox was
    # disconnected from those networks): {"Network", "Address", "At"}
    lost: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Sandbox:
        return cls(**json.loads(data))


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
    ) -> None:
        self.store = store
        self.ctrl = controller
        self.dns = dns  # kanal.engine.dns.DnsService, or None: no embedded DNS
        self.state_dir = state_dir
        self.netns_dir = netns_dir
        self.host_resolv = host_resolv
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()
        self._index: _Index | None = None
        self._index_gen = 0  # bumped by invalidate(): an index built before is stale
        self._sb_locks: dict[str, threading.Lock] = {}
        controller.listeners.append(self._on_endpoint_event)

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
        if s.state == "running" and s.pid and s.id not in self._procs:
            leader = self._leader(s)
            if leader is None or not processes.alive(leader):
                s.state = "exited"
                self._save(s)
        return s

    # --- create ------------------------------------------------------------------

    def create(self, spec: SandboxSpec, *, start: bool = False) -> Sandbox:
        """Namespace, networks, files, and with ``start`` the process: one operation
        (``kanal run -d``), all undone on failure or after a crash midway. Without
        ``start`` nothing runs yet."""
        if not spec.argv:
            raise InvalidConfig("no command given")
        validate.sandbox(spec)
        sid = new_id()
        name = spec.name or f"kanal_{sid[:8]}"
        validate_name(name, "container")
        mode = spec.network_mode or "bridge"
        for a in spec.dns:
            try:
                ipaddress.ip_address(a)
            except ValueError:
                raise InvalidConfig(f"invalid DNS server {a!r}") from None
        for h in spec.extra_hosts:
            host, _, ip = h.partition(":")
            try:
                ipaddress.ip_address(ip)
                validate_name(host, "host")
            except (ValueError, KanalError):
                raise InvalidConfig(f"invalid --add-host {h!r}: want NAME:IP") from None
        if mode.startswith("container:") and (spec.publish or spec.networks or spec.hostname):
            raise InvalidConfig(
                "conflicting options: --network container: shares the other's network "
                "(no -p, --network or --hostname)"
            )
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
            netns = self._make_netns(sid)
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
        )
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
                )
        self.write_files(sb)
        self.sync_dns(sb)
        p = self._launch(sb) if start else None
        # The sandbox appears (ps, lookups) with the intent's end: never half made.
        self.journal.end(it, [Put(f"sandboxes/{sid}", sb.to_json(), 0)])
        if p is not None:
            self._follow(sid, p)
        return sb

    def sync_dns(self, sb: Sandbox) -> None:
        """Serve (or stop serving) embedded DNS in ``sb`` as its networks say."""
        if self.dns is None or not sb.own_netns:
            return
        user = self.user_networks(sb)
        attached = sb.id in self.dns.attached()
        if user and not attached:
            internal = all(i for _, i in user)
            try:
                self.dns.attach(sb.id, sb.netns, self.upstreams(sb), internal=internal)
            except (OSError, KanalError) as e:
                log.warning("no embedded DNS for %s: %s", sb.name, e)
        elif not user and attached:
            self.dns.detach(sb.id)

    def netns_path(self, sid: str) -> str:
        """Where the sandbox's own namespace is mounted (derived from its id)."""
        return os.path.join(self.netns_dir, f"kanal-{sid[:12]}")

    def _make_netns(self, sid: str) -> str:
        path = self.netns_path(sid)
        name = os.path.basename(path)
        if os.path.abspath(self.netns_dir) == "/run/netns":
            subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        else:
            os.makedirs(self.netns_dir, mode=0o755, exist_ok=True)
            open(path, "w").close()
            subprocess.run(["unshare", f"--net={path}", "true"], check=True, capture_output=True)
        from kanal.netlink.batch import Batch, raw_socket
        from kanal.netlink.ns import open_netns, run_in_netns

        fd = open_netns(path)
        try:

            def lo_up() -> None:
                with raw_socket() as s:
                    b = Batch(s)
                    b.set_link(index=1, up=True)
                    b.commit()

            run_in_netns(fd, lo_up)
        finally:
            os.close(fd)
        return path

    def _del_netns(self, path: str) -> None:
        name = os.path.basename(path)
        if os.path.abspath(os.path.dirname(path)) == "/run/netns":
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            return
        subprocess.run(["umount", path], capture_output=True)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

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
        self._stop_all(sid, None, path)
        if os.path.exists(path):
            self._del_netns(path)
        shutil.rmtree(self._dir(sid), ignore_errors=True)
        self.store.txn([Delete(f"sandboxes/{sid}"), *self._drop_name(name, sid)])

    # --- files -------------------------------------------------------------------

    def _dir(self, sid: str) -> str:
        return os.path.join(self.state_dir, "sandboxes", sid)

    def write_files(self, sb: Sandbox) -> None:
        """resolv.conf, hosts and hostname of the sandbox; rewritten in place (the
        bind mounts pin the inodes) when its networks change."""
        d = self._dir(sb.id)
        os.makedirs(d, mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # also when it was made looser before
        eps = self.ctrl.sandbox_endpoints(sb.id)
        hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for ep in eps:
            for a in (ep.ipv4, ep.ipv6):
                if a:
                    hosts.append(f"{a.split('/')[0]}\t{sb.hostname or sb.name}")
        hosts += [f"{h.partition(':')[2]}\t{h.partition(':')[0]}" for h in sb.extra_hosts]
        files = {
            "hosts": "\n".join(hosts) + "\n",
            "hostname": (sb.hostname or sb.name) + "\n",
            "resolv.conf": self.resolv_conf(sb),
        }
        for fname, text in files.items():
            path = os.path.join(d, fname)
            # Same inode (a bind mount keeps seeing it); 0644: the sandbox's own
            # unprivileged processes read them (the directory is 0700).
            with os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+") as f:
                f.seek(0)
                f.truncate()
                f.write(text)

    def user_networks(self, sb: Sandbox) -> list[tuple[Endpoint, bool]]:
        """The sandbox's endpoints on user-defined networks, with their network's internal flag
        (docker gives embedded DNS only there, not on the default bridge)."""
        nets = {n.id: n for n in self.ctrl.networks()}
        out = []
        for ep in self.ctrl.sandbox_endpoints(sb.id):
            n = nets.get(ep.network_id)
            if n is not None and not n.builtin:
                out.append((ep, n.internal))
        return out

    def upstreams(self, sb: Sandbox) -> list[str]:
        return self._host_resolv()[0] if not sb.dns else list(sb.dns)

    def _host_resolv(self) -> tuple[list[str], list[str]]:
        servers: list[str] = []
        search: list[str] = []
        try:
            with open(self.host_resolv) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 2 and parts[0] == "nameserver":
                        servers.append(parts[1])
                    elif parts and parts[0] == "search" and not search:
                        search = parts[1:]
        except OSError:
            pass
        return servers, search

    def resolv_conf(self, sb: Sandbox) -> str:
        if self.dns is not None and sb.own_netns and self.user_networks(sb):
            # Embedded DNS: kanald answers on 127.0.0.11 inside the sandbox and
            # forwards the rest to the upstreams (from its own namespace).
            search = list(sb.dns_search) or self._host_resolv()[1]
            lines = ["nameserver 127.0.0.11"]
            if search:
                lines.append("search " + " ".join(search))
            lines.append("options " + " ".join(["ndots:0", *sb.dns_options]))
            return "\n".join(lines) + "\n"
        servers, search, options = list(sb.dns), list(sb.dns_search), list(sb.dns_options)
        if not servers:
            try:
                with open(self.host_resolv) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 2 and parts[0] == "nameserver":
                            ip = parts[1]
                            # A loopback resolver of the host is unreachable from a netns.
                            if not ipaddress.ip_address(ip.split("%")[0]).is_loopback:
                                servers.append(ip)
                        elif parts and parts[0] == "search" and not search:
                            search = parts[1:]
            except (OSError, ValueError):
                pass
        lines = [f"nameserver {s}" for s in servers]
        if search:
            lines.append("search " + " ".join(search))
        if options:
            lines.append("options " + " ".join(options))
        return "\n".join(lines) + "\n"

    # --- processes ---------------------------------------------------------------

    def launch_argv(self, sb: Sandbox) -> tuple[list[str], str]:
        """The command line that runs ``sb``'s process, and its spec file."""
        d = self._dir(sb.id)
        spec = {
            "argv": sb.argv,
            "env": sb.env
            or {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
            "hostname": sb.hostname if sb.own_netns else "",
            "cwd": sb.workdir,
            "binds": {
                "/etc/resolv.conf": os.path.join(d, "resolv.conf"),
                "/etc/hosts": os.path.join(d, "hosts"),
                "/etc/hostname": os.path.join(d, "hostname"),
            },
            "pidfile": self._pidfile(sb.id),
        }
        spec_path = os.path.join(d, "launch.json")
        # 0600 even if it existed looser: it holds the -e values.
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        uts = ["--uts"] if sb.own_netns else []
        argv = [
            "nsenter",
            f"--net={sb.netns}",
            "unshare",
            "--mount",
            *uts,
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-I",
            "-m",
            "kanal.engine.launch",
            spec_path,
        ]
        return argv, spec_path

    def _pidfile(self, sid: str) -> str:
        return os.path.join(self._dir(sid), "pid")

    def start(self, ref: str) -> Sandbox:
        """Start the process detached (output to ``<state>/sandboxes/<id>/log``)."""
        sb = self.get(ref)
        with self._locked(sb.id):
            sb = self.get(sb.id)
            if sb.state == "running":
                raise Conflict(f"container {sb.name} is already running")
            with self.journal.intent("sandbox-start", sandbox=sb.id) as it:
                p = self._launch(sb)
                self.journal.end(it, [Put(f"sandboxes/{sb.id}", sb.to_json())])
        self._follow(sb.id, p)
        return sb

    def _launch(self, sb: Sandbox) -> subprocess.Popen[bytes]:
        """Start ``sb``'s process, detached, and note it in ``sb`` (not stored yet)."""
        argv, _ = self.launch_argv(sb)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._pidfile(sb.id))
        env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        log_path = os.path.join(self._dir(sb.id), "log")
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "ab") as out:
            p = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
                env=env,
            )
        with self._lock:
            self._procs[sb.id] = p
        sb.state, sb.pid, sb.exit_code = "running", p.pid, None
        start = processes.proc_start(p.pid)
        sb.started = float(start) if start else 0.0
        return p

    def _follow(self, sid: str, p: subprocess.Popen[bytes]) -> None:
        threading.Thread(target=self._wait, args=(sid, p), daemon=True).start()

    def adopt_started(self, sid: str) -> Sandbox | None:
        """Recovery of an interrupted start: the process it launched, if one runs,
        becomes the sandbox's (so ``rm -f`` stops it); else nothing changes."""
        try:
            sb = self.get(sid)
        except NotFound:
            return None
        found = processes.find_launched(
            os.path.join(self._dir(sid), "launch.json"), self._pidfile(sid)
        )
        if found is None or sb.state == "running":
            return sb
        sb.state, sb.pid, sb.exit_code = "running", found[0], None
        sb.started = float(found[1])
        self._save(sb)
        return sb

    def _wait(self, sid: str, p: subprocess.Popen[bytes]) -> None:
        code = p.wait()
        with self._lock:
            self._procs.pop(sid, None)
        try:
            self.mark_exited(sid, code)
        except KanalError:
            pass

    def mark_running(self, ref: str, pid: int) -> Sandbox:
        """An attached run started by the CLI itself reports its process."""
        sb = self.get(ref)
        sb.state, sb.pid, sb.exit_code = "running", pid, None
        start = processes.proc_start(pid)
        sb.started = float(start) if start else 0.0
        self._save(sb)
        return sb

    def mark_exited(self, ref: str, code: int) -> Sandbox:
        sb = self.get(ref)
        sb.state, sb.exit_code = "exited", code
        self._save(sb)
        return sb

    def _leader(self, sb: Sandbox) -> processes.ProcRef | None:
        if not sb.pid:
            return None
        return sb.pid, str(int(sb.started)) if sb.started else ""

    def _stop_all(self, sid: str, sb: Sandbox | None, netns: str, timeout: float = 2.0) -> bool:
        """Stop the sandbox's processes: its recorded leader (pid and start time), the
        one a launcher's pidfile names, and — with a namespace of its own — every
        process left in it."""
        leader = self._leader(sb) if sb is not None else None
        if leader is None or not processes.alive(leader):
            leader = processes.read_pidfile(self._pidfile(sid))
        ran = processes.stop_processes(leader, netns, timeout)
        with self._lock:
            p = self._procs.get(sid)
        if p is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        return ran

    def stop(self, ref: str, timeout: float = 10.0) -> Sandbox:
        sb = self.get(ref)
        with self._locked(sb.id):
            return self._stop(sb.id, timeout)

    def _stop(self, sid: str, timeout: float) -> Sandbox:
        sb = self.get(sid)
        if sb.state != "running" or not sb.pid:
            return sb
        self._stop_all(sb.id, sb, sb.netns if sb.own_netns else "", timeout)
        sb = self.get(sid)
        if sb.state == "running":
            sb.state, sb.exit_code = "exited", 137
            self._save(sb)
        return sb

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
        self._stop_all(sid, sb, netns)
        if self.dns is not None:
            self.dns.detach(sid)
        self.ctrl.disconnect_all(sid)
        if own and os.path.exists(netns):
            self._del_netns(netns)
        # Files before records: once the intent is struck off nothing may be left.
        shutil.rmtree(self._dir(sid), ignore_errors=True)
        ops = [Delete(f"sandboxes/{sid}"), *self._drop_name(name, sid)]
        if it is not None:
            self.journal.end(it, ops)
        else:
            self.store.txn(ops)

    def repair_netns(self, sid: str) -> str:
        """A sandbox whose namespace mount an outside hand removed: mounted again
        from a process still in it, else marked broken (nothing holds it any more,
        its interfaces are gone). Returns what was done ("" if nothing was needed)."""
        with self._locked(sid):
            try:
                sb = self.get(sid)
            except NotFound:
                return ""
            if not sb.own_netns or _is_mount(sb.netns) or sb.error:
                return ""
            holder = self._netns_holder(sb)
            if holder:
                # (The hand that unmounted it may still be removing the file: retry.)
                for _ in range(5):
                    if not os.path.exists(sb.netns):
                        open(sb.netns, "w").close()
                    p = subprocess.run(
                        ["mount", "--bind", f"/proc/{holder}/ns/net", sb.netns],
                        capture_output=True,
                    )
                    if p.returncode == 0:
                        return f"mounted the namespace of {sb.name} again at {sb.netns}"
                    time.sleep(0.05)
                return ""  # held, but not mountable now: the next pass tries again
            sb.error = (
                f"its network namespace {sb.netns} was removed from outside and no process "
                "holds it any more: its interfaces are gone (kanal rm it)"
            )
            self._save(sb)
            return f"sandbox {sb.name} is broken: {sb.error}"

    def _netns_holder(self, sb: Sandbox) -> int:
        """A live process in the sandbox's namespace (its leader first), or 0."""
        want = tuple(sb.netns_id)
        leader = self._leader(sb)
        pids = ([leader[0]] if leader and processes.alive(leader) else []) + [
            int(p) for p in os.listdir("/proc") if p.isdigit()
        ]
        for pid in pids:
            try:
                st = os.stat(f"/proc/{pid}/ns/net")
            except OSError:
                continue
            if want and (st.st_dev, st.st_ino) == want:
                return pid
        return 0

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

    def _names(self) -> _Index:
        # Built outside the manager's lock: building reads the controller and the
        # overlay agent, whose listeners call invalidate() with the agent's lock held
        # (building under ours deadlocked the DNS thread against the agent's resync).
        with self._lock:
            index, gen = self._index, self._index_gen
        if index is None:
            index = self._build_index()
            with self._lock:
                if self._index_gen == gen:  # not invalidated while it was built
                    self._index = index
        return index

    def lookup(self, sandbox_id: str, qname: str) -> list[str] | None:
        """Embedded DNS: addresses of ``qname`` (a sandbox name or alias) on the user
        networks ``sandbox_id`` is on; None when no such name is there."""
        nets, names, _rev = self._names()
        found: list[str] = []
        hit = False
        for nid in nets.get(sandbox_id, ()):
            addrs = names.get((nid, qname))
            if addrs is not None:
                hit = True
                found.extend(addrs)
        return found if hit else None

    def reverse(self, sandbox_id: str, ip: str) -> str | None:
        """Embedded DNS, PTR: ``name.network`` of the sandbox holding ``ip`` on a user
        network ``sandbox_id`` is on (docker's answer); None otherwise."""
        nets, _names, rev = self._names()
        for nid in sorted(nets.get(sandbox_id, ())):
            name = rev.get((nid, ip))
            if name is not None:
                return name
        return None

    def _build_index(self) -> _Index:
        # Built on the DNS serving thread: the cluster's networks as last known.
        cluster = self.ctrl.cluster
        known = self.ctrl._local_networks() + (cluster.known_networks() if cluster else [])
        networks = {n.id: n for n in known if not n.builtin}
        nets: dict[str, set[str]] = {}
        names: dict[tuple[str, str], list[str]] = {}
        rev: dict[tuple[str, str], str] = {}

        def add(nid: str, name: str, aliases: Iterable[str], addrs: list[str]) -> None:
            for n in {name.lower(), *(a.lower() for a in aliases)}:
                if n:
                    names.setdefault((nid, n), []).extend(addrs)
            for a in addrs:
                rev.setdefault((nid, a), f"{name}.{networks[nid].name}")

        for ep in self.ctrl.endpoints():
            if ep.network_id not in networks:
                continue
            nets.setdefault(ep.sandbox_id, set()).add(ep.network_id)
            add(
                ep.network_id,
                ep.name,
                ep.aliases,
                [a.split("/")[0] for a in (ep.ipv4, ep.ipv6) if a],
            )
        cluster = self.ctrl.cluster
        if cluster is not None:
            # Overlay networks: the names other hosts published (the agent's copy).
            joined = set().union(*nets.values()) if nets else set()
            for n in networks.values():
                if n.scope != "global" or n.id not in joined:
                    continue
                for rec in cluster.agent.endpoints(n.id):
                    if rec.host != cluster.node:  # ours are in the local store already
                        add(n.id, rec.name, rec.aliases, [rec.ip])
        return nets, names, rev

    def invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._index_gen += 1


def _is_mount(path: str) -> bool:
    """Whether ``path`` is a mount point (a namespace's bind mount is one)."""
    want = path.replace(" ", "\\040")
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == want for line in f)


_Index = tuple[
    dict[str, set[str]],  # sandbox id -> its user networks
    dict[tuple[str, str], list[str]],  # (network, name or alias) -> addresses
    dict[tuple[str, str], str],  # (network, address) -> "name.network"
]


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
