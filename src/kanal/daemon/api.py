"""kanald's REST API: docker's network endpoints over a root-only unix socket.

Routes (an optional ``/v1.NN`` prefix is accepted, as docker clients send one)::

    GET    /_ping                        "OK"
    GET    /networks?filters={...}       list (docker's filters JSON)
    GET    /networks/{id|name}           inspect
    POST   /networks/create              {"Name", "Driver", "IPAM", "Options", ...} -> {"Id"}
    DELETE /networks/{id|name}
    POST   /networks/prune?filters=      {"NetworksDeleted": [...]}
    POST   /networks/{id}/connect        {"Container", "EndpointConfig": {...}}
    POST   /networks/{id}/disconnect     {"Container", "Force"}
    GET    /endpoints                    every endpoint (network, sandbox, addresses, ports)
    GET    /nodes                        the cluster's hosts (kanald --cluster-store)
    GET|POST|DELETE /sandboxes/...       kanal run's sandboxes (create, start, stop, ...)
    GET    /events                       one JSON object per line, as things happen
    GET    /system/check                 {"Problems": [...]}: leaks and inconsistencies

Errors are ``{"message": "..."}`` with the status of the error's class
(kanal.errors ``http_status``), like docker's API. The protocol lives here; the
work is the controller's (and the sandbox resolver's, injected).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from kanal.engine.controller import Controller, SandboxRef
from kanal.engine.model import Endpoint, Network
from kanal.engine.views import match_filters, network_json, spec_from_request
from kanal.errors import DecodeError, InvalidConfig, KanalError, NotFound
from kanal.unixsock import PrivateUnixServer, QuietHandler

__all__ = ["ApiServer", "EventBus", "SandboxResolver"]

log = logging.getLogger("kanal.api")
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")
MAX_BODY = 1 << 20


class SandboxResolver(Protocol):
    """Finds the sandbox a ``Container`` field names (id, id prefix or name)."""

    def resolve(self, ref: str) -> SandboxRef: ...

    def names(self) -> dict[str, str]:
        """sandbox id -> name, for inspect output."""
        ...


class NoSandboxes:
    """The null resolver: an engine without sandboxes."""

    def resolve(self, ref: str) -> SandboxRef:
        raise NotFound(f"No such container: {ref}")

    def names(self) -> dict[str, str]:
        return {}


class NetnsSandboxes:
    """Named network namespaces (``ip netns add X``) as sandboxes: ``X`` or its path.

    Lets kanal manage networks for namespaces made by hand or by another tool
    (seed 004's walkthrough): the id is derived from the path, so it is stable
    across daemon restarts; the name is the namespace's name.
    """

    def __init__(self, netns_dir: str = "/run/netns") -> None:
        self.netns_dir = netns_dir

    def resolve(self, ref: str) -> SandboxRef:
        import hashlib

        from kanal.engine.model import validate_name

        if ref.startswith("/"):
            path = os.path.normpath(ref)
            if os.path.dirname(path) != os.path.normpath(self.netns_dir):
                raise NotFound(f"No such container: {ref}")
            name = os.path.basename(path)
        else:
            name = ref
            path = os.path.join(self.netns_dir, name)
        validate_name(name, "container")
        if not os.path.exists(path):
            raise NotFound(f"No such container: {ref}")
        sid = hashlib.sha256(f"netns:{path}".encode()).hexdigest()
        return SandboxRef(sid, name, path)

    def names(self) -> dict[str, str]:
        return {}


class ChainedSandboxes:
    """Asks each resolver in turn (kanal's own sandboxes first, then named netns)."""

    def __init__(self, *resolvers: SandboxResolver) -> None:
        self.resolvers = resolvers

    def resolve(self, ref: str) -> SandboxRef:
        err: NotFound | None = None
        for r in self.resolvers:
            try:
                return r.resolve(ref)
            except NotFound as e:
                err = e
        raise err or NotFound(f"No such container: {ref}")

    def names(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in reversed(self.resolvers):
            out.update(r.names())
        return out


class EventBus:
    """Fan-out of engine events to ``GET /events`` streams (bounded, lossy per client)."""

    def __init__(self) -> None:
        self._subs: list[queue.Queue[dict[str, Any]]] = []
        self._lock = threading.Lock()

    def publish(self, event: dict[str, Any]) -> None:
        event.setdefault("time", int(time.time()))
        with self._lock:
            subs = list(self._subs)
        for q in subs:
            try:
                q.put_nowait(event)
            except queue.Full:
                pass  # a client that does not read loses events, not the daemon

    def subscribe(self) -> queue.Queue[dict[str, Any]]:
        q: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1000)
        with self._lock:
            self._subs.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[dict[str, Any]]) -> None:
        with self._lock:
            if q in self._subs:
                self._subs.remove(q)

    def controller_listener(self, event: str, net: Network, ep: Endpoint) -> None:
        self.publish(
            {
                "Type": "network",
                "Action": event,
                "Actor": {
                    "ID": net.id,
                    "Attributes": {"name": net.name, "container": ep.sandbox_id},
                },
            }
        )


class _Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        self.status, self.body = status, body


class ApiServer(PrivateUnixServer):
    allow_reuse_address = True

    def __init__(
        self,
        path: str,
        controller: Controller,
        *,
        sandboxes: SandboxResolver | None = None,
        events: EventBus | None = None,
        mode: int = 0o600,
        manager: Any = None,
    ) -> None:
        self.controller = controller
        self.manager = manager  # kanal.engine.sandboxes.SandboxManager, when sandboxes are on
        self.plugin: Any = None  # kanal.dockerplugin.server.PluginServer, when served
        self.sandboxes = sandboxes or NoSandboxes()
        self.events = events or EventBus()
        controller.listeners.append(self.events.controller_listener)
        super().__init__(path, _Handler, mode=mode, dir_mode=0o700)

    # --- routes ------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        path = _VERSION_PREFIX.sub("", path).rstrip("/") or "/"
        parts = [unquote(p) for p in path.strip("/").split("/")]
        c = self.controller
        if path == "/_ping":
            return "OK"
        if parts == ["nodes"] and method == "GET":
            # The cluster's hosts (kanal node ls); a lone kanald is a cluster of one.
            cluster = c.cluster
            if cluster is None:
                return []
            return cluster.nodes()
        if parts[0] == "networks":
            if len(parts) == 1 and method == "GET":
                filters = _filters(query)
                c.sync_cni_networks()  # a conflist dropped into the directory shows up
                eps = {ep.network_id for ep in c.endpoints()}
                names = self.sandboxes.names()
                out = []
                for n in c.networks():
                    if n.driver_state.get("deleting"):
                        continue
                    if match_filters(n, filters, n.id in eps):
                        out.append(network_json(n, c.endpoints(n.id), names))
                return out
            if len(parts) == 2 and parts[1] == "create" and method == "POST":
                net = c.create_network(spec_from_request(_obj(body)))
                self.events.publish(_net_event("create", net))
                raise _Reply(201, {"Id": net.id, "Warning": ""})
            if len(parts) == 2 and parts[1] == "prune" and method == "POST":
                filters = _filters(query)
                removed = c.prune(keep=lambda n: not match_filters(n, filters))
                for n in removed:
                    self.events.publish(_net_event("destroy", n))
                return {"NetworksDeleted": [n.name for n in removed]}
            if len(parts) == 2 and method == "GET":
                n = c.get_network(parts[1])
                info = network_json(n, c.endpoints(n.id), self.sandboxes.names())
                if n.scope == "global" and c.cluster is not None:
                    # As docker's overlay inspect: the other hosts' endpoints, by host.
                    info["Peers"] = [
                        {"Name": r.name, "IP": r.ip, "Host": r.host, "VTEP": r.vtep}
                        for r in c.cluster.agent.endpoints(n.id)
                        if r.host != c.cluster.node
                    ]
                return info
            if len(parts) == 2 and method == "DELETE":
                n = c.delete_network(parts[1])
                self.events.publish(_net_event("destroy", n))
                raise _Reply(204, None)
            if len(parts) == 3 and parts[2] == "connect" and method == "POST":
                b = _obj(body)
                sb = self.sandboxes.resolve(_str(b, "Container"))
                cfg = b.get("EndpointConfig") or {}
                if not isinstance(cfg, dict):
                    raise InvalidConfig("invalid EndpointConfig: want an object")
                ipam = cfg.get("IPAMConfig") or {}
                aliases = cfg.get("Aliases") or []
                if not isinstance(ipam, dict) or not isinstance(aliases, list):
                    raise InvalidConfig("invalid EndpointConfig")
                c.connect(
                    parts[1],
                    sb,
                    ip=str(ipam.get("IPv4Address") or ""),
                    ip6=str(ipam.get("IPv6Address") or ""),
                    aliases=[str(a) for a in aliases],
                )
                return None
            if len(parts) == 3 and parts[2] == "disconnect" and method == "POST":
                b = _obj(body)
                force = bool(b.get("Force", False))
                ref = _str(b, "Container")
                try:
                    sid = self.sandboxes.resolve(ref).id
                except NotFound:
                    if not force:
                        raise
                    sid = ref  # docker's -f: a stale endpoint of a sandbox that is gone
                c.disconnect(parts[1], sid, force=force)
                return None
        if parts == ["endpoints"] and method == "GET":
            names = {n.id: n.name for n in c.networks()}
            return [
                {
                    "Id": ep.id,
                    "NetworkID": ep.network_id,
                    "Network": names.get(ep.network_id, ""),
                    "SandboxID": ep.sandbox_id,
                    "Name": ep.name,
                    "Interface": ep.ifname,
                    "MacAddress": ep.mac,
                    "IPv4Address": ep.ipv4,
                    "IPv6Address": ep.ipv6,
                    "Aliases": ep.aliases,
                    "Ports": [
                        {
                            "ContainerPort": p.container_port,
                            "Protocol": p.protocol,
                            "HostIp": p.host_ip,
                            "HostPort": p.host_port,
                        }
                        for p in ep.ports
                    ],
                }
                for ep in c.endpoints()
            ]
        if parts == ["system", "check"] and method == "GET":
            from kanal.engine.check import check

            return {"Problems": check(c, self.manager) if self.manager is not None else []}
        if parts[0] == "sandboxes" and self.manager is not None:
            return self._sandboxes(method, parts, query, body)
        raise NotFound(f"page not found: {method} {path}")

    def _sandboxes(
        self, method: str, parts: list[str], query: dict[str, list[str]], body: Any
    ) -> Any:
        from kanal.engine.sandboxes import NetworkRequest, SandboxSpec

        m = self.manager
        assert m is not None
        if len(parts) == 1 and method == "GET":
            return [self._sandbox_json(sb) for sb in m.list_all()]
        if len(parts) == 2 and parts[1] == "create" and method == "POST":
            from kanal.engine.ports import parse_publish

            b = _obj(body)
            cmd = b.get("Cmd")
            if not isinstance(cmd, list) or not cmd or not all(isinstance(x, str) for x in cmd):
                raise InvalidConfig("Cmd must be a non-empty list of strings")
            nets = []
            for n in b.get("Networks") or []:
                if not isinstance(n, dict) or not isinstance(n.get("Name"), str):
                    raise InvalidConfig("invalid Networks entry")
                nets.append(
                    NetworkRequest(
                        n["Name"],
                        str(n.get("IPv4Address") or ""),
                        str(n.get("IPv6Address") or ""),
                        [str(a) for a in n.get("Aliases") or []],
                    )
                )
            ports = [pb for spec in b.get("Publish") or [] for pb in parse_publish(str(spec))]
            env = b.get("Env") or {}
            if not isinstance(env, dict):
                raise InvalidConfig("Env must be an object")
            spec = SandboxSpec(
                argv=list(cmd),
                name=str(b.get("Name") or ""),
                network_mode=str(b.get("NetworkMode") or (nets[0].network if nets else "bridge")),
                networks=nets,
                publish=ports,
                env={str(k): str(v) for k, v in env.items()},
                hostname=str(b.get("Hostname") or ""),
                dns=[str(x) for x in b.get("Dns") or []],
                dns_search=[str(x) for x in b.get("DnsSearch") or []],
                dns_options=[str(x) for x in b.get("DnsOptions") or []],
                extra_hosts=[str(x) for x in b.get("ExtraHosts") or []],
                workdir=str(b.get("WorkingDir") or ""),
            )
            # "Start": create and start as one operation (kanal run -d): a failure or
            # a crash midway leaves nothing, not a created sandbox.
            sb = m.create(spec, start=b.get("Start") is True)
            raise _Reply(201, self._sandbox_json(sb))
        if len(parts) == 2 and method == "GET":
            return self._sandbox_json(m.get(parts[1]))
        if len(parts) == 2 and method == "DELETE":
            force = (query.get("force") or ["0"])[0] in ("1", "true")
            sb = m.remove(parts[1], force=force)
            self.events.publish({"Type": "container", "Action": "destroy", "Actor": {"ID": sb.id}})
            raise _Reply(204, None)
        if len(parts) == 3 and method == "POST":
            action = parts[2]
            b = _obj(body) if body else {}
            if action == "start":
                return self._sandbox_json(m.start(parts[1]))
            if action == "running":
                return self._sandbox_json(m.mark_running(parts[1], int(b.get("Pid", 0))))
            if action == "exited":
                return self._sandbox_json(m.mark_exited(parts[1], int(b.get("ExitCode", 0))))
            if action == "stop":
                t = float((query.get("t") or ["10"])[0])
                return self._sandbox_json(m.stop(parts[1], timeout=t))
        if len(parts) == 3 and parts[2] == "launch" and method == "GET":
            argv, _ = m.launch_argv(m.get(parts[1]))
            return {"Argv": argv}
        raise NotFound(f"page not found: {method} /{'/'.join(parts)}")

    def _sandbox_json(self, sb: Any) -> dict[str, Any]:
        eps = self.controller.sandbox_endpoints(sb.id)
        nets = {ep.network_id: ep for ep in eps}
        names = {n.id: n.name for n in self.controller.networks() if n.id in nets}
        return {
            "Id": sb.id,
            "Name": sb.name,
            "Cmd": sb.argv,
            "State": sb.state,
            "Pid": sb.pid,
            "ExitCode": sb.exit_code,
            "Created": sb.created,
            "NetworkMode": sb.network_mode,
            "Netns": sb.netns,
            "Hostname": sb.hostname,
            "Error": sb.error,
            "Networks": {
                names.get(nid, nid): {
                    "EndpointID": ep.id,
                    "IPAddress": ep.ipv4.split("/")[0] if ep.ipv4 else "",
                    "IPv6Address": ep.ipv6.split("/")[0] if ep.ipv6 else "",
                    "MacAddress": ep.mac,
                    "Aliases": ep.aliases,
                }
                for nid, ep in nets.items()
            },
            "Ports": {
                f"{p.container_port}/{p.protocol}": [
                    {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)}
                ]
                for ep in eps
                for p in ep.ports
            },
        }


def _net_event(action: str, net: Network) -> dict[str, Any]:
    return {
        "Type": "network",
        "Action": action,
        "Actor": {"ID": net.id, "Attributes": {"name": net.name, "type": net.driver}},
    }


def _obj(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidConfig("the request body must be a JSON object")
    return body


def _str(body: dict[str, Any], key: str) -> str:
    v = body.get(key)
    if not isinstance(v, str) or not v:
        raise InvalidConfig(f"{key} is required")
    return v


def _filters(query: dict[str, list[str]]) -> dict[str, list[str]]:
    raw = (query.get("filters") or [""])[0]
    if not raw:
        return {}
    try:
        f = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DecodeError("invalid filters: not JSON", str(e)) from e
    if not isinstance(f, dict):
        raise InvalidConfig("invalid filters: want an object")
    out: dict[str, list[str]] = {}
    for k, v in f.items():
        # docker sends {"key": {"value": true}} (map form) or {"key": ["value"]}
        if isinstance(v, dict):
            out[k] = [str(x) for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            raise InvalidConfig(f"invalid filter {k!r}")
    return out


class _Handler(QuietHandler):
    server: ApiServer
    server_version = "kanald"
    log = log

    def _send(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode() + b"\n"
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        if url.path.rstrip("/").endswith("/events") and method == "GET":
            self._events()
            return
        try:
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                raise InvalidConfig("request body too large")
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as e:
                raise DecodeError("invalid JSON in the request body", str(e)) from e
            result = self.server.route(method, url.path, parse_qs(url.query), body)
            self._send(200, result)
        except _Reply as r:
            self._send(r.status, r.body)
        except KanalError as e:
            self._send(e.http_status, {"message": str(e)})
        except Exception as e:  # never a dropped connection: the client gets a message
            log.exception("API %s %s", method, self.path)
            self._send(500, {"message": f"internal error: {e}"})

    def _events(self) -> None:
        bus = self.server.events
        q = bus.subscribe()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for ev in _drain(q):
                line = json.dumps(ev).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
        except OSError:
            pass
        finally:
            bus.unsubscribe(q)
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def _drain(q: queue.Queue[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    while True:
        try:
            yield q.get(timeout=30)
        except queue.Empty:
            continue


def serve_in_thread(server: ApiServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="kanal-api", daemon=True)
    t.start()
    return t
