"""Timing the engine's operations for whoever listens (kanald's metrics).

The engine does not know about Prometheus: an operation decorated with
:func:`timed` tells ``ctx.on_operation`` (an EngineContext
field the daemon sets) its name, how long it took and whether it succeeded. With
nobody listening the cost is one attribute read.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller
from kanal.engine.model import Endpoint, Network
from kanal.engine.sandboxes import Sandbox, SandboxManager

__all__ = ["TimedController", "TimedSandboxManager", "timed"]

F = TypeVar("F", bound=Callable[..., Any])


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


class TimedController(Controller):
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


class TimedSandboxManager(SandboxManager):
    """The sandbox manager with create and remove timed (as TimedController)."""

    @property
    def ctx(self) -> EngineContext:
        return self.ctrl.ctx

    @timed("sandbox_create")
    def create(self, *args: Any, **kwargs: Any) -> Sandbox:
        return super().create(*args, **kwargs)

    @timed("sandbox_remove")
    def remove(self, *args: Any, **kwargs: Any) -> Sandbox:
        return super().remove(*args, **kwargs)
