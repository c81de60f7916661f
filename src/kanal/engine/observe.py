"""Timing the engine's operations for whoever listens (kanald's metrics).

The engine does not know about Prometheus: an operation decorated with
:func:`timed` tells ``ctx.on_operation`` (an EngineContext
field the daemon sets) its name, how long it took and whether it succeeded. With
nobody listening the cost is one attribute read.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller
from kanal.engine.model import Endpoint, Network
from kanal.engine.sandboxes import Sandbox, SandboxManager

__all__ = ["ObservedController", "ObservedSandboxManager", "timed"]

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("kanal.engine")


def timed(operation: str) -> Callable[[F], F]:
    """Decorate a method of an object with a ``ctx`` (an EngineContext): each call
    is reported to ``ctx.on_operation`` as ``operation`` (ok: it returned; not ok:
    it raised)."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            observe = self.ctx.on_operation
            if observe is None:
                return fn(self, *args, **kwargs)
            t0 = time.perf_counter()
            ok = False
            try:
                r = fn(self, *args, **kwargs)
                ok = True
                return r
            finally:
                try:
                    observe(operation, time.perf_counter() - t0, ok)
                except Exception:  # an observer must never break an operation
                    pass

        return cast(F, wrapper)

    return deco


class ObservedController(Controller):
    """The controller with its operations timed (the daemon's; the controller's own
    file stays free of the instrumentation). Same arguments as the controller's."""

    @timed("network_create")
    def create_network(self, *args: Any, **kwargs: Any) -> Network:
        return super().create_network(*args, **kwargs)

    @timed("network_delete")
    def delete_network(self, *args: Any, **kwargs: Any) -> Network:
        return super().delete_network(*args, **kwargs)

    @timed("connect")
    def connect(self, *args: Any, **kwargs: Any) -> Endpoint:
        return super().connect(*args, **kwargs)

    @timed("disconnect")
    def disconnect(self, *args: Any, **kwargs: Any) -> Endpoint:
        return super().disconnect(*args, **kwargs)


class ObservedSandboxManager(SandboxManager):
    """The sandbox manager with create and remove timed (as ObservedController), and
    its lifecycle told to ``lifecycle`` listeners: ``fn(action, sandbox, attributes)``
    with docker's container actions ``create``, ``start``, ``die`` (``exitCode``),
    ``stop``. (``destroy`` is the API's: it knows when a removal was asked.)

    ``die`` is told once per run, before the ``stop`` that caused it, whichever of
    the stop and the process's reaper records the exit first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lifecycle: list[Callable[[str, Sandbox, dict[str, str]], None]] = []
        self._told_dead: set[str] = set()  # sandboxes whose die was told since they started
        self._dead_lock = threading.Lock()

    @property
    def ctx(self) -> EngineContext:
        return self.ctrl.ctx

    def _tell(self, action: str, sb: Sandbox, **attrs: str) -> None:
        with self._dead_lock:
            if action == "start":
                self._told_dead.discard(sb.id)
            elif action == "die":
                if sb.id in self._told_dead:
                    return
                self._told_dead.add(sb.id)
        for fn in self.lifecycle:
            try:
                fn(action, sb, {"name": sb.name, **attrs})
            except Exception:  # a listener must never break an operation
                log.exception("sandbox listener failed on %s", action)

    @timed("sandbox_create")
    def create(self, *args: Any, **kwargs: Any) -> Sandbox:
        sb = super().create(*args, **kwargs)
        self._tell("create", sb)
        if kwargs.get("start"):
            self._tell("start", sb)
        return sb

    @timed("sandbox_remove")
    def remove(self, *args: Any, **kwargs: Any) -> Sandbox:
        sb = super().remove(*args, **kwargs)
        with self._dead_lock:
            self._told_dead.discard(sb.id)
        return sb

    def start(self, *args: Any, **kwargs: Any) -> Sandbox:
        sb = super().start(*args, **kwargs)
        self._tell("start", sb)
        return sb

    def mark_running(self, *args: Any, **kwargs: Any) -> Sandbox:
        sb = super().mark_running(*args, **kwargs)  # an attached run's process started
        self._tell("start", sb)
        return sb

    def mark_exited(self, *args: Any, **kwargs: Any) -> Sandbox:
        sb = super().mark_exited(*args, **kwargs)
        self._tell("die", sb, exitCode=str(sb.exit_code))
        return sb

    def stop(self, ref: str, timeout: float = 10.0) -> Sandbox:
        was = self.get(ref).state
        sb = super().stop(ref, timeout)
        if was == "running" and sb.state == "exited":
            self._tell("die", sb, exitCode=str(sb.exit_code))
        self._tell("stop", sb)
        return sb
