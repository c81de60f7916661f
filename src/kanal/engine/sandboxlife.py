"""A sandbox's life after create: stopped ones give back their endpoints, started
ones take them again; kill, restart, wait, its log (docker's lifecycle).

:func:`release` runs when a sandbox's process ended (the supervisor's report, a
stop, an attached run's exit): its addresses, interfaces and published host
ports go back, noted in ``parked``; :func:`retake` joins the same networks
again at the next start, with the same static addresses, aliases and ports, all
or none. Functions of :class:`~kanal.engine.sandboxes.SandboxManager`'s state.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from kanal.engine.model import PortBinding, SandboxRef
from kanal.errors import Conflict, KanalError

if TYPE_CHECKING:
    from kanal.engine.sandboxes import Sandbox, SandboxManager

__all__ = ["kill", "log_path", "release", "release_lock", "restart", "retake", "wait_exit"]

log = logging.getLogger("kanal.sandbox")


def release(m: SandboxManager, sb: Sandbox) -> None:
    """Give back the endpoints (addresses, host ports) of a sandbox whose process
    ended, as docker does on stop; noted in ``sb.parked`` for :func:`retake`.
    Idempotent: with no endpoints left nothing changes."""
    if not sb.own_netns:
        return
    # The supervisor's report and a stop may both come, and an rm -f meanwhile
    # (whose files a late release must not write again).
    with release_lock(m, sb.id):
        _release(m, sb)


def release_lock(m: SandboxManager, sid: str) -> threading.Lock:
    """The lock that orders a sandbox's releases and its removal."""
    with m._lock:
        lock = m._rel_locks.get(sid)
        if lock is None:
            lock = m._rel_locks[sid] = threading.Lock()
        return lock


def _release(m: SandboxManager, sb: Sandbox) -> None:
    if m.store.get(f"sandboxes/{sb.id}") is None:
        return  # removed meanwhile
    eps = m.ctrl.sandbox_endpoints(sb.id)
    if not eps:
        return
    nets = {n.id: n.name for n in m.ctrl.networks()}
    first = sb.requests[0]["network"] if sb.requests else sb.network_mode
    sb.parked = [
        {
            "network": ep.network_id,
            "name": nets.get(ep.network_id, ep.network_id),
            "ip": ep.ipv4.split("/")[0] if ep.static_ip and ep.ipv4 else "",
            "ip6": ep.ipv6.split("/")[0] if ep.static_ip and ep.ipv6 else "",
            "aliases": list(ep.aliases),
            "ports": bool(ep.ports) or nets.get(ep.network_id) == first,
        }
        for ep in sorted(eps, key=lambda e: e.created)
    ]
    m._save(sb)
    m.ctrl.disconnect_all(sb.id)
    m.write_files(sb)
    m.sync_dns(sb)


def retake(m: SandboxManager, sb: Sandbox) -> None:
    """Join again the networks :func:`release` gave back (same static addresses,
    aliases, published ports), all or none.

    Raises:
        KanalError: a network is gone or an address or port was taken meanwhile.
    """
    if not sb.parked:
        return
    have = {ep.network_id for ep in m.ctrl.sandbox_endpoints(sb.id)}
    ports = [PortBinding(**p) for p in sb.publish]
    done: list[str] = []
    try:
        for r in sb.parked:
            if r["network"] in have:
                continue
            m.ctrl.connect(
                r["network"],
                SandboxRef(sb.id, sb.name, sb.netns),
                ip=r["ip"],
                ip6=r["ip6"],
                aliases=r["aliases"],
                ports=ports if r["ports"] else (),
            )
            done.append(r["network"])
    except BaseException:
        for nid in done:
            try:
                m.ctrl.disconnect(nid, sb.id, force=True)
            except KanalError:
                log.exception("undoing the start of %s", sb.name)
        raise
    sb.parked = []
    m._save(sb)
    m.write_files(sb)
    m.sync_dns(sb)


def kill(m: SandboxManager, ref: str, sig: int) -> Sandbox:
    """Send ``sig`` to the sandbox's first process (docker's ``kill``).

    Raises:
        Conflict: it is not running.
    """
    sb = m.get(ref)
    if sb.state != "running" or not m.procs.kill(sb, sig):
        raise Conflict(f"Cannot kill container: {sb.name}: container is not running")
    return sb


def restart(m: SandboxManager, ref: str, timeout: float = 10.0) -> Sandbox:
    """Stop (if running), then start."""
    sb = m.stop(ref, timeout)
    return m.start(sb.id)


def wait_exit(
    m: SandboxManager, ref: str, timeout: float | None = None, cancel: threading.Event | None = None
) -> Sandbox:
    """Block until the sandbox is not running (docker's ``wait``); the sandbox
    as it is then (still running after ``timeout`` or once ``cancel`` is set)."""

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        sb = m.get(ref)
        if sb.state != "running":
            return sb
        if cancel is not None and cancel.is_set():
            return sb
        if deadline is not None and time.monotonic() >= deadline:
            return sb
        with m._changed:
            m._changed.wait(0.5)


def log_path(m: SandboxManager, ref: str) -> tuple[Sandbox, str]:
    """The sandbox and the file its detached process writes to."""
    sb = m.get(ref)
    return sb, os.path.join(m.env.dir(sb.id), "log")
