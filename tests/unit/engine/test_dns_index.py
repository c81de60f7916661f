"""The embedded DNS's name index: built without holding the sandbox manager's lock.

The overlay agent calls ``invalidate()`` with its own lock held, and building the
index reads the agent: building under the manager's lock deadlocked the two.
Here the controller (a stand-in: this is the manager's locking logic alone) calls
``invalidate()`` from another thread while the index is being built.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kanal.engine.sandboxes import SandboxManager
from kanal.store.memory import MemoryStore


class Ctrl:
    """What _build_index reads; ``local_networks()`` lets another thread invalidate first."""

    def __init__(self) -> None:
        self.mgr: SandboxManager | None = None
        self.builds = 0
        self.invalidated_during_build = False
        self.cluster = None
        self.listeners: list[Any] = []  # SandboxManager subscribes to endpoint events

    def local_networks(self) -> list[Any]:
        self.builds += 1
        if self.builds == 1:
            assert self.mgr is not None
            th = threading.Thread(target=self.mgr.invalidate, daemon=True)
            th.start()
            th.join(10)
            self.invalidated_during_build = not th.is_alive()
        return []

    def endpoints(self) -> list[Any]:
        return []


def test_invalidate_during_a_build_neither_blocks_nor_is_lost(tmp_path: Path) -> None:
    ctrl = Ctrl()
    mgr = SandboxManager(MemoryStore(), ctrl, state_dir=str(tmp_path))  # type: ignore[arg-type]
    ctrl.mgr = mgr
    assert mgr.lookup("sb", "name") is None
    assert ctrl.invalidated_during_build  # it did not wait for the build
    assert mgr.lookup("sb", "name") is None
    assert ctrl.builds == 2  # the index built across the invalidation was not kept
    assert mgr.lookup("sb", "name") is None
    assert ctrl.builds == 2  # the second one was
