"""Run test code with the calling thread inside a namespace the test made."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from kanal.netlink.ns import open_netns, run_in_netns

T = TypeVar("T")


def in_ns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that entered /run/netns/NAME (the "host" of a test)."""
    fd = open_netns(f"/run/netns/{name}")
    try:
        return run_in_netns(fd, fn)
    finally:
        os.close(fd)
