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

import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from kanal import validate
from kanal.engine.controller import Controller, SandboxRef
from kanal.engine.model import PortBinding, new_id, now, validate_name
from kanal.errors import Conflict, InvalidConfig, KanalError, NotFound
from kanal.store import Delete, Store

if TYPE_CHECKING:
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

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Sandbox:
        return cls(**json.loads(data))


def _proc_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


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
        self.store.put(f"sandboxes/{s.id}", s.to_json())

    def _refresh(self, s: Sandbox) -> Sandbox:
        """A running sandbox whose process is gone (after a daemon restart) is exited."""
        if s.state == "running" and s.pid and s.id not in self._procs:
            start = str(int(s.started)) if s.started else ""
            alive = os.path.exists(f"/proc/{s.pid}") and (not start or _proc_start(s.pid) == start)
            if not alive:
                s.state = "exited"
                self._save(s)
        return s

    # --- create ------------------------------------------------------------------

    def create(self, spec: SandboxSpec) -> Sandbox:
        """Namespace, networks, files; nothing runs yet. All undone on failure."""
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
            self.store.put(f"sandbox-names/{name}", sid.encode(), expect=0)
        except Conflict:
            raise Conflict(f'Conflict. The container name "/{name}" is already in use') from None
        sb: Sandbox | None = None
        try:
            sb = self._create(sid, name, mode, spec)
            return sb
        except BaseException:
            self.store.delete(f"sandbox-names/{name}")
            if sb is None:
                self._cleanup(sid, name, mode)
            raise

    def _create(self, sid: str, name: str, mode: str, spec: SandboxSpec) -> Sandbox:
        own = mode not in ("host",) and not mode.startswith("container:")
        if mode == "host":
            netns = f"/proc/{os.getpid()}/ns/net"
        elif mode.startswith("container:"):
            other = self.get(mode.split(":", 1)[1])
            netns = other.netns
        else:
            netns = self._make_netns(sid)
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
        )
        self.store.put(f"sandboxes/{sid}", sb.to_json(), expect=0)
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

    def _make_netns(self, sid: str) -> str:
        name = f"kanal-{sid[:12]}"
        path = os.path.join(self.netns_dir, name)
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

    def _cleanup(self, sid: str, name: str, mode: str) -> None:
        self.ctrl.disconnect_all(sid)
        path = os.path.join(self.netns_dir, f"kanal-{sid[:12]}")
        if os.path.exists(path):
            self._del_netns(path)
        self.store.delete(f"sandboxes/{sid}")
        shutil.rmtree(self._dir(sid), ignore_errors=True)

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

    def start(self, ref: str) -> Sandbox:
        """Start the process detached (output to ``<state>/sandboxes/<id>/log``)."""
        sb = self.get(ref)
        if sb.state == "running":
            raise Conflict(f"container {sb.name} is already running")
        argv, _ = self.launch_argv(sb)
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
        start = _proc_start(p.pid)
        sb.started = float(start) if start else 0.0
        self._save(sb)
        threading.Thread(target=self._wait, args=(sb.id, p), daemon=True).start()
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
        start = _proc_start(pid)
        sb.started = float(start) if start else 0.0
        self._save(sb)
        return sb

    def mark_exited(self, ref: str, code: int) -> Sandbox:
        sb = self.get(ref)
        sb.state, sb.exit_code = "exited", code
        self._save(sb)
        return sb

    def stop(self, ref: str, timeout: float = 10.0) -> Sandbox:
        sb = self.get(ref)
        if sb.state != "running" or not sb.pid:
            return sb
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(sb.pid, sig)
            except ProcessLookupError:
                break
            except PermissionError:
                os.kill(sb.pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and os.path.exists(f"/proc/{sb.pid}"):
                if _proc_state(sb.pid) == "Z":
                    break
                time.sleep(0.05)
            else:
                continue
            break
        with self._lock:
            p = self._procs.get(sb.id)
        if p is not None:
            p.wait(5)
        sb = self.get(ref)
        if sb.state == "running":
            sb.state, sb.exit_code = "exited", 137
            self._save(sb)
        return sb

    def remove(self, ref: str, *, force: bool = False) -> Sandbox:
        sb = self.get(ref)
        if sb.state == "running":
            if not force:
                raise Conflict(
                    f"You cannot remove a running container {sb.id}. Stop the container "
                    "before attempting removal or force remove"
                )
            sb = self.stop(ref, timeout=2)
        sharing = [s.name for s in self.list_all() if s.network_mode == f"container:{sb.name}"]
        if sharing and sb.own_netns:
            raise Conflict(f"container {sb.name} shares its network with {', '.join(sharing)}")
        if self.dns is not None:
            self.dns.detach(sb.id)
        self.ctrl.disconnect_all(sb.id)
        if sb.own_netns:
            self._del_netns(sb.netns)
        self.store.txn([Delete(f"sandboxes/{sb.id}"), Delete(f"sandbox-names/{sb.name}")])
        shutil.rmtree(self._dir(sb.id), ignore_errors=True)
        return sb

    def refresh_files(self, sandbox_id: str) -> None:
        try:
            sb = self.get(sandbox_id)
        except NotFound:
            return
        self.write_files(sb)
        self.sync_dns(sb)

    def _names(self) -> _Index:
        with self._lock:
            index = self._index
            if index is None:
                index = self._index = self._build_index()
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
        networks = {n.id: n for n in self.ctrl.networks() if not n.builtin}
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
