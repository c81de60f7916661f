"""Resolving abandoned intents (see kanal.engine.journal): at start, before the
reconcile, and in each periodic reconcile of a running kanald.

Every operation has one resolution, idempotent and safe on an operation that in
fact completed just before the crash:

============== ============================================================
connect        undone: the endpoint goes (kernel, addresses, ports, records)
disconnect     finished: the same
sandbox-start  finished if its process runs (adopted), else nothing happened
sandbox-create undone: endpoints, namespace, files, name
sandbox-remove finished: processes, endpoints, namespace, records, files
network-create undone: only what carries the network's mark
============== ============================================================

Endpoint-level intents go first (a create's undo then sees a consistent store),
networks last (their endpoints are gone by then).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from kanal.engine.reconcile import purge_endpoint, undo_network_create
from kanal.errors import KanalError

if TYPE_CHECKING:
    from kanal.engine.controller import Controller
    from kanal.engine.journal import Intent
    from kanal.engine.sandboxes import SandboxManager

__all__ = ["ORDER", "recover"]

log = logging.getLogger("kanal.recovery")

ORDER = {
    "connect": 0,
    "disconnect": 0,
    "sandbox-start": 1,
    "sandbox-create": 2,
    "sandbox-remove": 2,
    "network-create": 3,
}


def _resolve(ctrl: Controller, sandboxes: SandboxManager | None, it: Intent) -> bool:
    f = it.fields
    if it.op in ("connect", "disconnect"):
        purge_endpoint(
            ctrl, str(f["network"]), str(f["endpoint"]), str(f["sandbox"]), f.get("addresses") or []
        )
        return True
    if it.op == "network-create":
        undo_network_create(ctrl, it)
        return True
    if sandboxes is None:
        return False  # left for a daemon that runs sandboxes
    if it.op == "sandbox-start":
        sandboxes.adopt_started(str(f["sandbox"]))
        return True
    if it.op == "sandbox-create":
        sandboxes.undo_create(str(f["sandbox"]), str(f["name"]))
        return True
    if it.op == "sandbox-remove":
        sandboxes.finish_remove(str(f["sandbox"]), str(f["name"]))
        return True
    return False


def recover(ctrl: Controller, sandboxes: SandboxManager | None = None) -> list[str]:
    """Resolve every abandoned intent; returns one line per intent resolved. One
    that cannot be resolved now (the cluster store is down, say) stays for the
    next try, and is reported by ``kanal system check``."""
    done = []
    pending = sorted(ctrl.journal.abandoned(), key=lambda i: (ORDER.get(i.op, 9), i.started))
    for it in pending:
        try:
            resolved = _resolve(ctrl, sandboxes, it)
        except (KanalError, OSError, KeyError, ValueError) as e:
            log.warning("interrupted %s (%s) not resolved yet: %s", it.op, it.id, e)
            continue
        if resolved:
            ctrl.journal.forget(it)
            done.append(f"{it.op} {it.fields}")
            log.warning("resolved an interrupted %s: %s", it.op, it.fields)
    return done
