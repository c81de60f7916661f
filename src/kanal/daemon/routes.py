"""The REST API's one route table: a request's method and path → its handler.

Routes (an optional ``/v1.NN`` prefix is accepted, as docker clients send one;
docker's container and system endpoints are :mod:`.dockerapi`'s)::

    GET|HEAD /_ping                      "OK" (text), with the Api-Version header
    GET    /networks?filters={...}       list (docker's filters JSON)
    GET    /networks/{id|name}           inspect
    POST   /networks/create              {"Name", "Driver", "IPAM", "Options", ...} -> {"Id"}
    DELETE /networks/{id|name}
    POST   /networks/prune?filters=      {"NetworksDeleted": [...]}
    POST   /networks/{id}/connect        {"Container", "EndpointConfig": {...}}
    POST   /networks/{id}/disconnect     {"Container", "Force"}
    GET    /endpoints                    every endpoint (network, sandbox, addresses, ports)
    GET    /nodes                        the cluster's hosts (kanald --cluster-store)
    GET|POST|DELETE /sandboxes/...       kanal run's sandboxes (create, start, stop, kill,
                                         restart, wait, logs, ...)
    GET|POST|DELETE /containers/...      the same sandboxes in docker's shapes
    GET    /version, /info               docker's daemon descriptions
    GET    /events?filters=&since=&until= one JSON object per line (served by the server)
    GET    /metrics                      Prometheus text (served by the server, kanald only)
    GET    /system/check                 {"Problems": [...]}: leaks and inconsistencies
    GET    /topology?network=NAME        the store's objects matched with the kernel's (kanal graph)
    GET    /explain?src=&dst=            why a packet would (not) get there (kanal explain)

A handler gets the typed request (:mod:`.messages`) and returns the answer's body
(200), a :class:`Reply` with another status, or a :class:`Stream` (chunks sent as
they come: logs); it raises kanal errors, which the
server maps to ``{"message": ...}`` at its one boundary (:mod:`.api`). The
table is tried in order; the first route whose method and segments match wins
(``{x}`` matches any one segment). See docs/rest-api.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from kanal import validate
from kanal.daemon import dockerapi
from kanal.daemon import messages as msg
from kanal.daemon.explainroute import explain_route
from kanal.daemon.getters import obj, query_one
from kanal.daemon.replies import Reply, Stream
from kanal.daemon.shapes import (
    container_event,
    created_at,
    endpoint_json,
    match_filters,
    net_event,
    network_json,
    prune_until,
    sandbox_json,
)
from kanal.engine import sandboxlife
from kanal.engine.check import check
from kanal.engine.sandboxnet import EndpointOptions
from kanal.engine.topology import topology
from kanal.errors import DecodeError, InvalidConfig, NotFound

if TYPE_CHECKING:
    from kanal.daemon.api import ApiServer
    from kanal.engine.model import Network
    from kanal.engine.sandboxes import Sandbox, SandboxManager

__all__ = ["ROUTES", "Reply", "Request", "Route", "Stream", "route"]


@dataclass(frozen=True)
class Request:
    """One request, its path split into unquoted segments; ``params``: the
    segments a route's ``{x}`` matched."""

    method: str
    parts: list[str]
    query: dict[str, list[str]]
    body: Any
    params: dict[str, str] = field(default_factory=dict)


Handler = Callable[["ApiServer", Request], Any]


@dataclass(frozen=True)
class Route:
    method: str  # "*": any
    pattern: tuple[str, ...]
    handler: Handler
    #: only when the daemon runs sandboxes (kanal run)
    sandboxes: bool = False

    def match(self, method: str, parts: list[str]) -> dict[str, str] | None:
        if (self.method not in ("*", method)) or len(parts) != len(self.pattern):
            return None
        params = {}
        for want, got in zip(self.pattern, parts, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


def route(api: ApiServer, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
    """The answer to one request (a body for 200, or a :class:`Reply`).

    Raises KanalError (mapped to the wire by the server); NotFound for no route."""
    path = dockerapi.check_version(path).rstrip("/") or "/"
    try:
        parts = [unquote(p, errors="strict") for p in path.strip("/").split("/")]
    except UnicodeDecodeError:
        raise DecodeError(f"invalid path {path[:200]!r}: not UTF-8") from None
    for p in parts:
        validate.no_control(p, "path segment")
    if path == "/_ping":  # the liveness probe: any method, the path as sent
        return Reply(200, b"OK")
    for r in ROUTES:
        if r.sandboxes and api.manager is None:
            continue
        params = r.match(method, parts)
        if params is not None:
            return r.handler(api, Request(method, parts, query, body, params))
    if parts[0] in dockerapi.UNSUPPORTED:
        raise dockerapi.unsupported(dockerapi.UNSUPPORTED[parts[0]])
    if parts[0] == "containers":
        raise dockerapi.unsupported(f"{method} /{'/'.join(parts)}")
    if parts[0] == "sandboxes" and api.manager is not None:
        path = "/" + "/".join(parts)
    raise NotFound(f"page not found: {method} {path}")


# --- networks ------------------------------------------------------------------------


def list_networks(api: ApiServer, req: Request) -> Any:
    c = api.controller
    filters = msg.filters(req.query)
    c.sync_cni_networks()  # a conflist dropped into the directory shows up
    eps = {ep.network_id for ep in c.endpoints()}
    names = api.sandboxes.names()
    out = []
    for n in c.networks():
        if n.driver_state.get("deleting"):
            continue
        if match_filters(n, filters, n.id in eps):
            out.append(network_json(n, c.endpoints(n.id), names))
    return out


def create_network(api: ApiServer, req: Request) -> Any:
    net = api.controller.create_network(msg.CreateNetwork.parse(req.body).spec)
    api.events.publish(net_event("create", net))
    return Reply(201, {"Id": net.id, "Warning": ""})


def prune_networks(api: ApiServer, req: Request) -> Any:
    filters = msg.filters(req.query)
    until = prune_until(filters.pop("until", []))
    labels_not = filters.pop("label!", [])
    if set(filters) - {"label"}:  # docker's prune takes until, label and label! only
        bad = sorted(set(filters) - {"label"})[0]
        raise InvalidConfig(f"invalid filter {bad!r}")

    def keep(n: Network) -> bool:
        if not match_filters(n, filters):
            return True
        if until is not None and created_at(n) >= until:
            return True  # created at or after "until": too new to prune
        return any(match_filters(n, {"label": [x]}) for x in labels_not)

    removed = api.controller.prune(keep=keep)
    for n in removed:
        api.events.publish(net_event("destroy", n))
    return {"NetworksDeleted": [n.name for n in removed]}


def inspect_network(api: ApiServer, req: Request) -> Any:
    c = api.controller
    n = c.get_network(req.params["ref"])
    info = network_json(n, c.endpoints(n.id), api.sandboxes.names())
    if n.scope == "global" and c.cluster is not None:
        # As docker's overlay inspect: the other hosts' endpoints, by host.
        info["Peers"] = [
            {"Name": r.name, "IP": r.ip, "Host": r.host, "VTEP": r.vtep}
            for r in c.cluster.agent.endpoints(n.id)
            if r.host != c.cluster.node
        ]
    return info


def delete_network(api: ApiServer, req: Request) -> Any:
    n = api.controller.delete_network(req.params["ref"])
    api.events.publish(net_event("destroy", n))
    return Reply(204)


def connect(api: ApiServer, req: Request) -> Any:
    m = msg.Connect.parse(req.body)
    sb = api.sandboxes.resolve(m.container)
    links = []
    for target, alias in m.links:  # docker's check: the linked container exists
        try:
            links.append(f"{api.sandboxes.resolve(target).name}:{alias}")
        except NotFound:
            raise NotFound(
                f"could not get container for {target}: No such container: {target}"
            ) from None
    api.controller.connect(
        req.params["ref"],
        sb,
        ip=m.ip,
        ip6=m.ip6,
        aliases=m.aliases,
        opts=EndpointOptions(m.mac, links, m.link_local_ips, m.driver_opts),
    )
    if api.manager is not None:
        api.manager.refresh_files(sb.id)  # /etc/hosts: legacy links on the default bridge
    return None


def disconnect(api: ApiServer, req: Request) -> Any:
    m = msg.Disconnect.parse(req.body)
    try:
        sid = api.sandboxes.resolve(m.container).id
    except NotFound:
        if not m.force:
            raise
        sid = m.container  # docker's -f: a stale endpoint of a sandbox that is gone
    api.controller.disconnect(req.params["ref"], sid, force=m.force)
    return None


# --- the rest of the engine ------------------------------------------------------------


def nodes(api: ApiServer, req: Request) -> Any:
    # The cluster's hosts (kanal node ls); a lone kanald is a cluster of one.
    cluster = api.controller.cluster
    if cluster is None:
        return []
    return cluster.nodes()


def endpoints(api: ApiServer, req: Request) -> Any:
    c = api.controller
    names = {n.id: n.name for n in c.networks()}
    return [endpoint_json(ep, names.get(ep.network_id, "")) for ep in c.endpoints()]


def get_topology(api: ApiServer, req: Request) -> Any:
    for ref in req.query.get("network", []):
        validate.no_control(ref, "network")
    return topology(api.controller, api.manager, req.query.get("network", []))


def system_check(api: ApiServer, req: Request) -> Any:
    problems = check(api.controller, api.manager) if api.manager is not None else []
    return {"Problems": problems}


# --- sandboxes -------------------------------------------------------------------------


def _manager(api: ApiServer) -> SandboxManager:
    m = api.manager
    assert m is not None  # the route table only routes here with sandboxes on
    return m


def _sandbox(api: ApiServer, sb: Sandbox) -> dict[str, Any]:
    eps = api.controller.sandbox_endpoints(sb.id)
    nets = api.controller.records.by_ids({ep.network_id for ep in eps})
    return sandbox_json(sb, eps, {i: n.name for i, n in nets.items()})


def list_sandboxes(api: ApiServer, req: Request) -> Any:
    return [_sandbox(api, sb) for sb in _manager(api).list_all()]


def create_sandbox(api: ApiServer, req: Request) -> Any:
    m = msg.CreateSandbox.parse(req.body)
    # "Start": create and start as one operation (kanal run -d): a failure or a
    # crash midway leaves nothing, not a created sandbox holding addresses.
    sb = _manager(api).create(m.spec, start=m.start)
    warnings = []
    if m.spec.network_mode == "host" and m.spec.publish:
        warnings.append("Published ports are discarded when using host network mode")
    return Reply(201, {**_sandbox(api, sb), "Warnings": warnings})


def inspect_sandbox(api: ApiServer, req: Request) -> Any:
    return _sandbox(api, _manager(api).get(req.params["ref"]))


def remove_sandbox(api: ApiServer, req: Request) -> Any:
    force = validate.parse_bool(query_one(req.query, "force", "0"), "force")
    sb = _manager(api).remove(req.params["ref"], force=force)
    api.events.publish(container_event("destroy", sb.id, sb.name))
    return Reply(204)


def sandbox_action(api: ApiServer, req: Request) -> Any:
    """``POST /sandboxes/{id}/{start|running|exited|stop}``."""
    m, ref, action = _manager(api), req.params["ref"], req.params["action"]
    b = obj(req.body)
    if action == "start":
        sb = m.start(ref)  # (its start event is the sandbox manager's)
        return _sandbox(api, sb)
    if action == "running":
        return _sandbox(api, m.mark_running(ref, msg.SandboxRunning.parse(b).pid))
    if action == "exited":
        return _sandbox(api, m.mark_exited(ref, msg.SandboxExited.parse(b).code))
    if action == "stop":
        t = validate.parse_seconds(query_one(req.query, "t", "10"), "t", maximum=3600)
        sb = m.stop(ref, timeout=t)  # (its die and stop events are the manager's)
        return _sandbox(api, sb)
    if action == "restart":
        t = validate.parse_seconds(query_one(req.query, "t", "10"), "t", maximum=3600)
        sb = sandboxlife.restart(m, ref, timeout=t)
        api.events.publish(container_event("restart", sb.id, sb.name))
        return _sandbox(api, sb)
    if action == "kill":
        sig = dockerapi.parse_signal(query_one(req.query, "signal", "SIGKILL"))
        sb = sandboxlife.kill(m, ref, sig)
        api.events.publish(container_event("kill", sb.id, sb.name))
        return _sandbox(api, sb)
    if action == "wait":
        return dockerapi.wait_result(api, req)
    raise NotFound(f"page not found: {req.method} /{'/'.join(req.parts)}")


def sandbox_logs(api: ApiServer, req: Request) -> Any:
    """``GET /sandboxes/{id}/logs?follow=&tail=``: the log as it is written (raw)."""
    follow, tail = dockerapi.logs_params(req)
    _manager(api).get(req.params["ref"])  # 404 before the stream starts
    chunks = dockerapi.log_chunks(api, req.params["ref"], follow=follow, tail=tail, frame=False)
    return Stream("text/plain; charset=utf-8", chunks)


def inspect_container_kanal(api: ApiServer, req: Request) -> Any:
    """``GET /sandboxes/{id}/json``: docker's container object (kanal inspect)."""
    return dockerapi.container(api, _manager(api).get(req.params["ref"]))


def launch_argv(api: ApiServer, req: Request) -> Any:
    m = _manager(api)
    sb = m.get(req.params["ref"])
    argv, _ = m.launch_argv(sb)
    # A CLI that runs the argv itself must see the sandbox's namespace mount as
    # kanald does: it compares its own mount namespace with this one.
    return {"Argv": argv, "Netns": sb.netns, "MountNamespace": _mount_ns()}


def _mount_ns() -> str:
    import os

    try:
        return os.readlink("/proc/self/ns/mnt")
    except OSError:
        return ""


ROUTES: list[Route] = [
    Route("GET", ("nodes",), nodes),
    Route("GET", ("networks",), list_networks),
    Route("POST", ("networks", "create"), create_network),
    Route("POST", ("networks", "prune"), prune_networks),
    Route("GET", ("networks", "{ref}"), inspect_network),
    Route("DELETE", ("networks", "{ref}"), delete_network),
    Route("POST", ("networks", "{ref}", "connect"), connect),
    Route("POST", ("networks", "{ref}", "disconnect"), disconnect),
    Route("GET", ("endpoints",), endpoints),
    Route("GET", ("system", "check"), system_check),
    Route("GET", ("sandboxes",), list_sandboxes, sandboxes=True),
    Route("POST", ("sandboxes", "create"), create_sandbox, sandboxes=True),
    Route("GET", ("sandboxes", "{ref}"), inspect_sandbox, sandboxes=True),
    Route("DELETE", ("sandboxes", "{ref}"), remove_sandbox, sandboxes=True),
    Route("POST", ("sandboxes", "{ref}", "{action}"), sandbox_action, sandboxes=True),
    Route("GET", ("sandboxes", "{ref}", "launch"), launch_argv, sandboxes=True),
    Route("GET", ("sandboxes", "{ref}", "logs"), sandbox_logs, sandboxes=True),
    Route("GET", ("sandboxes", "{ref}", "json"), inspect_container_kanal, sandboxes=True),
    # docker's Engine API (kanal.daemon.dockerapi)
    Route("GET", ("version",), dockerapi.version),
    Route("GET", ("info",), dockerapi.info),
    Route("GET", ("containers", "json"), dockerapi.list_containers),
    Route("POST", ("containers", "create"), dockerapi.create_container),
    Route("GET", ("containers", "{ref}", "json"), dockerapi.inspect_container, sandboxes=True),
    Route("GET", ("containers", "{ref}", "logs"), dockerapi.container_logs, sandboxes=True),
    Route("POST", ("containers", "{ref}", "{action}"), dockerapi.container_action, sandboxes=True),
    Route("DELETE", ("containers", "{ref}"), dockerapi.remove_container, sandboxes=True),
    Route("GET", ("explain",), explain_route, sandboxes=True),
    Route("GET", ("topology",), get_topology),
]
