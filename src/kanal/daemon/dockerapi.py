"""The Docker Engine API's container and system endpoints, over kanal's sandboxes.

With these next to the ``/networks`` endpoints the docker CLI and the docker SDK
for Python work unchanged against kanald's API socket for what kanal has::

    GET|HEAD /_ping                  "OK", with the Api-Version header (negotiation)
    GET    /version, /info           the daemon: kanal's version, API 1.24 to 1.47
    GET    /containers/json          docker ps (all, filters, limit)
    GET    /containers/{id}/json     docker inspect (kanal.daemon.containers)
    POST   /containers/{id}/start|stop|restart|kill|wait
    GET    /containers/{id}/logs     stdout/stderr, multiplexed as docker's (follow, tail)
    DELETE /containers/{id}          docker rm (force)

Every request may carry a ``/v1.NN`` prefix; a version above
:data:`API_VERSION` or below :data:`MIN_API_VERSION` is refused in docker's
words. What kanal does not have — creating containers from images, images,
volumes, builds, exec, attach — answers 501 with ``{"message": "... not
supported by kanal"}``.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kanal import __version__, validate
from kanal.daemon import messages as msg
from kanal.daemon.containers import (
    check_filters,
    container_json,
    container_summary,
    match_container,
)
from kanal.daemon.getters import query_one
from kanal.daemon.replies import Reply, Stream
from kanal.daemon.shapes import container_event
from kanal.engine import sandboxlife
from kanal.errors import Conflict, InvalidConfig, NotFound, NotSupported

if TYPE_CHECKING:
    from kanal.daemon.api import ApiServer
    from kanal.daemon.routes import Request
    from kanal.engine.sandboxes import Sandbox, SandboxManager

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "UNSUPPORTED",
    "check_version",
    "container",
    "parse_signal",
]

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
#: First path segments of docker's API that kanal has nothing behind.
UNSUPPORTED = {
    "images": "images",
    "volumes": "volumes",
    "build": "building images",
    "exec": "exec",
    "commit": "commit",
    "swarm": "swarm mode",
    "services": "swarm mode",
    "tasks": "swarm mode",
    "secrets": "swarm mode",
    "configs": "swarm mode",
    "plugins": "plugins",
    "distribution": "images",
    "auth": "registries",
}

_VERSION = re.compile(r"^/v(\d+)\.(\d+)(?=/)")


def _vkey(v: str) -> tuple[int, int]:
    a, b = v.split(".")
    return int(a), int(b)


def check_version(path: str) -> str:
    """``path`` without its ``/vX.Y`` prefix, once X.Y is one this API speaks.

    Raises:
        InvalidConfig: a version outside MIN_API_VERSION..API_VERSION (docker's words).
    """
    m = _VERSION.match(path)
    if m is None:
        return path
    v = (int(m.group(1)), int(m.group(2)))
    if v > _vkey(API_VERSION):
        raise InvalidConfig(
            f"client version {v[0]}.{v[1]} is too new. Maximum supported API version is "
            f"{API_VERSION}"
        )
    if v < _vkey(MIN_API_VERSION):
        raise InvalidConfig(
            f"client version {v[0]}.{v[1]} is too old. Minimum supported API version is "
            f"{MIN_API_VERSION}, please upgrade your client to a newer version"
        )
    return path[m.end() :]


def unsupported(what: str) -> NotSupported:
    return NotSupported(
        f"{what} not supported by kanal: kanal runs commands in sandboxes without images "
        "(kanal run); it serves docker's network and container lifecycle endpoints"
    )


# --- the daemon --------------------------------------------------------------------------


def version(api: ApiServer, req: Request) -> Any:
    uname = platform.uname()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(uname.machine, uname.machine)
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": f"python{platform.python_version()}",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": uname.release,
        "Experimental": "false",
        "BuildTime": "",
    }
    # docker repeats the engine's details at the top level (but "Experimental"), in order
    top = {k: v for k, v in details.items() if k != "Experimental"}
    return {
        "Platform": {"Name": f"kanal {__version__}"},
        "Components": [{"Name": "Engine", "Version": f"kanal-{__version__}", "Details": details}],
        "Version": f"kanal-{__version__}",
        **top,
    }


def _meminfo() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def info(api: ApiServer, req: Request) -> Any:
    sbs = api.manager.list_all() if api.manager is not None else []
    running = sum(1 for s in sbs if s.state == "running")
    uname = platform.uname()
    drivers = sorted({n.driver for n in api.controller.networks()} | {"bridge", "host", "null"})
    return {
        "ID": "",
        "Containers": len(sbs),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": len(sbs) - running,
        "Images": 0,
        "Driver": "kanal",
        "DriverStatus": [],
        "Plugins": {"Volume": [], "Network": drivers, "Authorization": None, "Log": []},
        "MemoryLimit": False,
        "SwapLimit": False,
        "CpuCfsPeriod": False,
        "CpuCfsQuota": False,
        "CPUShares": False,
        "CPUSet": False,
        "PidsLimit": False,
        "IPv4Forwarding": True,
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": 0,
        "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "LoggingDriver": "kanal",
        "CgroupDriver": "none",
        "CgroupVersion": "2",
        "NEventsListener": 0,
        "KernelVersion": uname.release,
        "OperatingSystem": "kanal (no images; network and sandbox endpoints only)",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": uname.machine,
        "IndexServerAddress": "",
        "RegistryConfig": None,
        "NCPU": os.cpu_count() or 1,
        "MemTotal": _meminfo(),
        "DockerRootDir": api.manager.state_dir if api.manager is not None else "",
        "Name": socket.gethostname(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": f"kanal-{__version__}",
        "Runtimes": {},
        "DefaultRuntime": "",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": False,
            "Error": "",
            "RemoteManagers": None,
        },
        "LiveRestoreEnabled": True,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": [],
    }


# --- containers (sandboxes) -------------------------------------------------------------


def _manager(api: ApiServer) -> SandboxManager:
    m = api.manager
    if m is None:
        raise unsupported("containers (this kanald runs no sandboxes)")
    return m


def container(api: ApiServer, sb: Sandbox) -> dict[str, Any]:
    """``docker inspect``'s object for ``sb``, as this daemon sees it now."""
    m = _manager(api)
    eps = api.controller.sandbox_endpoints(sb.id)
    ids = {ep.network_id for ep in eps} | {p["network"] for p in sb.parked}
    # host and none are found by name (a sandbox in either mode has no endpoint)
    nets = api.controller.records.by_ids(ids, frozenset({sb.network_mode}))
    pid = m.procs.init_pid(sb)
    return container_json(sb, eps, nets, pid=pid, files_dir=m.env.dir(sb.id))


def list_containers(api: ApiServer, req: Request) -> Any:
    if api.manager is None:
        return []
    show_all = validate.parse_bool(query_one(req.query, "all", "0"), "all")
    filters = msg.filters(req.query)
    check_filters(filters)
    limit_s = query_one(req.query, "limit", "-1")
    try:
        limit = int(limit_s)
    except ValueError:
        raise InvalidConfig(f"invalid limit {limit_s!r}: want a number") from None
    if limit > 0:
        show_all = True  # docker: -n implies -a
    if "status" in filters or "exited" in filters:
        show_all = True
    shown = [
        (sb, api.controller.sandbox_endpoints(sb.id))
        for sb in sorted(api.manager.list_all(), key=lambda s: s.created, reverse=True)
        if show_all or sb.state == "running"
    ]
    ids = {ep.network_id for _, eps in shown for ep in eps}
    ids |= {p["network"] for sb, _ in shown for p in sb.parked}
    nets = api.controller.records.by_ids(ids, frozenset({"host", "none"}))
    out = []
    for sb, eps in shown:
        summary = container_summary(sb, eps, nets)
        if match_container(sb, summary, filters):
            out.append(summary)
    return out[:limit] if limit > 0 else out


def inspect_container(api: ApiServer, req: Request) -> Any:
    return container(api, _manager(api).get(req.params["ref"]))


def parse_signal(text: str) -> int:
    """``SIGTERM``, ``TERM``, ``15`` → 15. Raises InvalidConfig (docker's words)."""
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 0 < n < signal.NSIG:
            return n
    else:
        name = t if t.startswith("SIG") else "SIG" + t
        got = getattr(signal.Signals, name, None) if name.isidentifier() else None
        if isinstance(got, signal.Signals):
            return int(got)
    raise InvalidConfig(f"Invalid signal: {text}")


def _timeout(req: Request) -> float:
    return validate.parse_seconds(query_one(req.query, "t", "10"), "t", maximum=3600)


def container_action(api: ApiServer, req: Request) -> Any:
    """``POST /containers/{id}/{start|stop|restart|kill|wait}`` as docker answers them."""
    m, ref, action = _manager(api), req.params["ref"], req.params["action"]
    if action == "start":
        sb = m.get(ref)
        if sb.state == "running":
            return Reply(304)
        m.start(sb.id)  # (its start event is the sandbox manager's)
        return Reply(204)
    if action == "stop":
        sb = m.get(ref)
        if sb.state != "running":
            return Reply(304)
        m.stop(sb.id, _timeout(req))  # (its die and stop events are the manager's)
        return Reply(204)
    if action == "restart":
        sb = sandboxlife.restart(m, ref, _timeout(req))
        api.events.publish(container_event("restart", sb.id, sb.name))
        return Reply(204)
    if action == "kill":
        sig = parse_signal(query_one(req.query, "signal", "SIGKILL"))
        sb = sandboxlife.kill(m, ref, sig)
        api.events.publish(container_event("kill", sb.id, sb.name))
        return Reply(204)
    if action == "wait":
        return wait_result(api, req)
    if action in ("attach", "exec", "pause", "unpause", "resize", "update", "rename"):
        raise unsupported(f"container {action}")
    raise NotFound(f"page not found: {req.method} /containers/{ref}/{action}")


def wait_result(api: ApiServer, req: Request) -> Any:
    """docker wait: block until the sandbox is not running; its exit status."""
    m = _manager(api)
    cond = query_one(req.query, "condition", "not-running")
    if cond not in ("not-running", "next-exit", "removed"):
        raise InvalidConfig(f"invalid condition: {cond!r}")
    sb = m.get(req.params["ref"])
    if cond == "next-exit" and sb.state != "running":
        raise Conflict(f"container {sb.name} is not running")
    sb = sandboxlife.wait_exit(m, sb.id, cancel=api.stopping)
    if sb.state == "running":
        raise Conflict("kanald is stopping: the container is still running")
    return {"StatusCode": sb.exit_code or 0, "Error": None}


def remove_container(api: ApiServer, req: Request) -> Any:
    force = validate.parse_bool(query_one(req.query, "force", "0"), "force")
    for k in ("v", "link"):
        validate.parse_bool(query_one(req.query, k, "0"), k)
    sb = _manager(api).remove(req.params["ref"], force=force)
    api.events.publish(container_event("destroy", sb.id, sb.name))
    return Reply(204)


def create_container(api: ApiServer, req: Request) -> Any:
    raise unsupported("creating containers from images (docker run, docker create)")


# --- logs --------------------------------------------------------------------------------


def log_chunks(
    api: ApiServer, ref: str, *, follow: bool, tail: int, frame: bool
) -> Iterator[bytes]:
    """What the sandbox's detached process wrote (its log file), the last ``tail``
    lines (-1: all), then with ``follow`` what it writes until it stops or kanald
    does. ``frame``: docker's multiplexed stream (8-byte headers, stream 1)."""
    m = _manager(api)
    sb, path = sandboxlife.log_path(m, ref)

    def out(data: bytes) -> bytes:
        if not frame:
            return data
        return bytes([1, 0, 0, 0]) + len(data).to_bytes(4, "big") + data

    try:
        f = open(path, "rb")  # noqa: SIM115 (held while following)
    except FileNotFoundError:
        return
    with f:
        data = f.read()
        if tail >= 0:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-tail:]) if tail else b""
        if data:
            yield out(data)
        while follow and not api.stopping.is_set():
            data = f.read(65536)
            if data:
                yield out(data)
                continue
            try:
                if m.get(sb.id).state != "running":
                    rest = f.read()
                    if rest:
                        yield out(rest)
                    return
            except NotFound:
                return
            yield b""  # a chance to notice a client that left
            time.sleep(0.2)


def logs_params(req: Request) -> tuple[bool, int]:
    follow = validate.parse_bool(query_one(req.query, "follow", "0"), "follow")
    tail_s = query_one(req.query, "tail", "all")
    if tail_s == "all":
        return follow, -1
    try:
        tail = int(tail_s)
    except ValueError:
        raise InvalidConfig(f"invalid tail {tail_s!r}: want a number or all") from None
    return follow, tail if tail >= 0 else -1


def container_logs(api: ApiServer, req: Request) -> Any:
    follow, tail = logs_params(req)
    for k in ("stdout", "stderr", "timestamps"):
        validate.parse_bool(query_one(req.query, k, "0"), k)
    if validate.parse_bool(query_one(req.query, "timestamps", "0"), "timestamps"):
        raise unsupported("logs --timestamps")
    _manager(api).get(req.params["ref"])  # 404 before the stream starts
    chunks = log_chunks(api, req.params["ref"], follow=follow, tail=tail, frame=True)
    return Stream("application/vnd.docker.multiplexed-stream", chunks)
