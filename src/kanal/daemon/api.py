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
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from kanal import validate
from kanal.engine.controller import Controller, SandboxRef
from kanal.engine.model import Endpoint, Network
from kanal.engine.views import match_filters, network_json, spec_from_request
from kanal.errors import DecodeError, InvalidConfig, KanalError, NotFound
from kanal.unixsock import PrivateUnixServer, QuietHandler

__all__ = ["ApiServer", "EventBus", "SandboxResolver"]

log = logging.getLogger("kanal.api")
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")
#: Seconds an API connection may sit idle (no request line) before it is closed.
IDLE_TIMEOUT = 60.0
#: Seconds a stopping daemon waits for requests already under way to finish.
DRAIN_TIMEOUT = 120.0
#: Pids (sandbox processes) go up to the kernel's pid_max limit.
PID_MAX = 1 << 22


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
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.controller = controller
        self.manager = manager  # kanal.engine.sandboxes.SandboxManager, when sandboxes are on
        self.plugin: Any = None  # kanal.dockerplugin.server.PluginServer, when served
        self.sandboxes = sandboxes or NoSandboxes()
        self.events = events or EventBus()
        controller.listeners.append(self.events.controller_listener)
        self.idle_timeout = idle_timeout
        self._busy = 0
        self._idle = threading.Condition()
        super().__init__(path, _Handler, mode=mode, dir_mode=0o700)

    @contextmanager
    def operation(self) -> Iterator[None]:
        """Around one request's work: counted, so that a stopping daemon waits for it."""
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is under way; False if some still are after ``timeout``."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def server_close(self) -> None:
        # No new connections; a request whose body was received runs to its end
        # (or its rollback) before the process may exit.
        super().server_close()
        if not self.wait_idle(DRAIN_TIMEOUT):
            log.warning("stopping with %d API requests still under way", self._busy)

    # --- routes ------------------------------------------------------------------

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        path = _VERSION_PREFIX.sub("", path).rstrip("/") or "/"
        try:
            parts = [unquote(p, errors="strict") for p in path.strip("/").split("/")]
        except UnicodeDecodeError:
            raise DecodeError(f"invalid path {path[:200]!r}: not UTF-8") from None
        for p in parts:
            validate.no_control(p, "path segment")
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
                ref = _str(b, "Container")
                cfg = _opt_obj(b, "EndpointConfig")
                ipam = _opt_obj(cfg, "IPAMConfig", "EndpointConfig.")
                ip = _opt_ip(ipam, "IPv4Address", "EndpointConfig.IPAMConfig.")
                ip6 = _opt_ip(ipam, "IPv6Address", "EndpointConfig.IPAMConfig.")
                aliases = [validate.alias(a) for a in _str_list(cfg, "Aliases", "EndpointConfig.")]
                sb = self.sandboxes.resolve(ref)
                c.connect(parts[1], sb, ip=ip, ip6=ip6, aliases=aliases)
                return None
            if len(parts) == 3 and parts[2] == "disconnect" and method == "POST":
                b = _obj(body)
                force = _opt_bool(b, "Force", False)
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
        m = self.manager
        assert m is not None
        if len(parts) == 1 and method == "GET":
            return [self._sandbox_json(sb) for sb in m.list_all()]
        if len(parts) == 2 and parts[1] == "create" and method == "POST":
            b = _obj(body)
            spec = _sandbox_spec(b)
            # "Start": create and start as one operation (kanal run -d): a failure or
            # a crash midway leaves nothing, not a created sandbox holding addresses.
            sb = m.create(spec, start=_opt_bool(b, "Start", False))
            raise _Reply(201, self._sandbox_json(sb))
        if len(parts) == 2 and method == "GET":
            return self._sandbox_json(m.get(parts[1]))
        if len(parts) == 2 and method == "DELETE":
            force = validate.parse_bool(_query_one(query, "force", "0"), "force")
            sb = m.remove(parts[1], force=force)
            self.events.publish({"Type": "container", "Action": "destroy", "Actor": {"ID": sb.id}})
            raise _Reply(204, None)
        if len(parts) == 3 and method == "POST":
            action = parts[2]
            b = _obj(body)
            if action == "start":
                return self._sandbox_json(m.start(parts[1]))
            if action == "running":
                pid = validate.parse_int(b.get("Pid"), "Pid", 1, PID_MAX)
                return self._sandbox_json(m.mark_running(parts[1], pid))
            if action == "exited":
                code = validate.parse_int(b.get("ExitCode", 0), "ExitCode", 0, 255)
                return self._sandbox_json(m.mark_exited(parts[1], code))
            if action == "stop":
                t = validate.parse_seconds(_query_one(query, "t", "10"), "t", maximum=3600)
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
            "LostAddresses": sb.lost,
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
        raise InvalidConfig(f"{key} is required (a non-empty string)")
    return validate.no_control(v, key)


def _opt_str(body: dict[str, Any], key: str, where: str = "") -> str:
    v = body.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise InvalidConfig(f"invalid {where}{key}: want a string")
    return v


def _opt_obj(body: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    v = body.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidConfig(f"invalid {where}{key}: want an object")
    return v


def _opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    v = body.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise InvalidConfig(f"invalid {key}: want true or false")
    return v


def _opt_ip(body: dict[str, Any], key: str, where: str = "") -> str:
    v = _opt_str(body, key, where)
    return validate.ip(v, f"{where}{key}") if v else ""


def _str_list(body: dict[str, Any], key: str, where: str = "") -> list[str]:
    v = body.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise InvalidConfig(f"invalid {where}{key}: want a list of strings")
    return list(v)


def _query_one(query: dict[str, list[str]], key: str, default: str) -> str:
    values = query.get(key) or [default]
    return values[-1]


def _sandbox_spec(b: dict[str, Any]) -> Any:
    """``POST /sandboxes/create``'s body as a SandboxSpec: every field's JSON type and
    value checked (kanal.validate) before anything is made."""
    from kanal.engine.ports import parse_publish
    from kanal.engine.sandboxes import NetworkRequest, SandboxSpec

    cmd = validate.argv(b.get("Cmd"))
    name = _opt_str(b, "Name")
    if name:
        validate.name(name, "container")
    nets_raw = b.get("Networks")
    if nets_raw is None:
        nets_raw = []
    if not isinstance(nets_raw, list):
        raise InvalidConfig("invalid Networks: want a list")
    nets = []
    for i, n in enumerate(nets_raw):
        if not isinstance(n, dict) or not isinstance(n.get("Name"), str):
            raise InvalidConfig(f"invalid Networks[{i}]: want an object with a Name")
        where = f"Networks[{i}]."
        nets.append(
            NetworkRequest(
                validate.name(n["Name"], "network"),
                _opt_ip(n, "IPv4Address", where),
                _opt_ip(n, "IPv6Address", where),
                [validate.alias(a) for a in _str_list(n, "Aliases", where)],
            )
        )
    mode = _opt_str(b, "NetworkMode") or (nets[0].network if nets else "bridge")
    if mode.startswith("container:"):
        validate.name(mode.split(":", 1)[1], "container")
    else:
        validate.name(mode, "network")
    ports = [
        pb
        for spec in _str_list(b, "Publish")
        for pb in parse_publish(validate.no_control(spec, "port specification"))
    ]
    env_raw = b.get("Env")
    if env_raw is None:
        env_raw = {}
    if not isinstance(env_raw, dict):
        raise InvalidConfig("invalid Env: want an object of strings")
    env = dict(validate.env(k, v) for k, v in env_raw.items())
    spec = SandboxSpec(
        argv=cmd,
        name=name,
        network_mode=mode,
        networks=nets,
        publish=ports,
        env=env,
        hostname=_opt_str(b, "Hostname"),
        dns=_str_list(b, "Dns"),
        dns_search=_str_list(b, "DnsSearch"),
        dns_options=_str_list(b, "DnsOptions"),
        extra_hosts=_str_list(b, "ExtraHosts"),
        workdir=_opt_str(b, "WorkingDir"),
    )
    validate.sandbox(spec)
    return spec


def _query(qs: str) -> dict[str, list[str]]:
    try:
        return parse_qs(qs, keep_blank_values=True, errors="strict", max_num_fields=64)
    except UnicodeDecodeError:
        raise DecodeError("invalid query string: not UTF-8") from None
    except ValueError as e:
        raise DecodeError("invalid query string", str(e)) from None


def _filters(query: dict[str, list[str]]) -> dict[str, list[str]]:
    raw = _query_one(query, "filters", "")
    if not raw:
        return {}
    f = validate.decode_json(raw.encode(), max_depth=3)
    if not isinstance(f, dict):
        raise InvalidConfig("invalid filters: want an object")
    out: dict[str, list[str]] = {}
    for k, v in f.items():
        # docker sends {"key": {"value": true}} (map form) or {"key": ["value"]}
        if isinstance(v, dict) and all(isinstance(on, bool) for on in v.values()):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list) and all(isinstance(x, str) for x in v):
            out[k] = list(v)
        else:
            raise InvalidConfig(f"invalid filter {k!r}")
    return out


class _Handler(QuietHandler):
    server: ApiServer
    server_version = "kanald"
    log = log

    def setup(self) -> None:
        super().setup()
        # An idle keep-alive connection does not hold a thread for ever.
        self.connection.settimeout(self.server.idle_timeout)

    def _send(self, status: int, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode() + b"\n"
        try:
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            # The client left: what its request did stays done (or undone), only
            # the answer is lost.
            self.close_connection = True

    def _handle(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            if url.path.rstrip("/").endswith("/events") and method == "GET":
                self._events()
                return
            raw = self.read_body()
            if raw is None:
                return  # the body never arrived whole: nothing is done
            body = validate.decode_json(raw)
            query = _query(url.query)
            # From here on the request runs to its end whatever the client does.
            with self.server.operation():
                result = self.server.route(method, url.path, query, body)
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
            for ev in _drain(q, self.connection):
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


def _drain(q: queue.Queue[dict[str, Any]], conn: socket.socket) -> Iterator[dict[str, Any]]:
    """Events as they come, until the client hangs up (checked while none come)."""
    while True:
        try:
            yield q.get(timeout=5)
        except queue.Empty:
            if _hung_up(conn):
                return


def _hung_up(conn: socket.socket) -> bool:
    try:
        ready, _, _ = select.select([conn], [], [], 0)
        return bool(ready) and conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def serve_in_thread(server: ApiServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="kanal-api", daemon=True)
    t.start()
    return t
