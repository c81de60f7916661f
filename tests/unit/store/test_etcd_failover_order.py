"""Which etcd member a request tries next (EtcdClient._order): pure logic, with the
network attempt replaced by a script of which members answer."""

from __future__ import annotations

import time

import pytest

from kanal.errors import Unavailable
from kanal.store.etcdwire import EtcdClient, _Call


class Scripted(EtcdClient):
    """Members in ``down`` time out; the others answer. Records every attempt."""

    def __init__(self, n: int) -> None:
        super().__init__([(f"192.0.2.{i + 1}", 2379) for i in range(n)], timeout=5.0)
        self.down: set[int] = set()
        self.tried: list[int] = []

    def _attempt(self, call: _Call, i: int, remaining: float) -> dict[str, object] | None:
        self.tried.append(i)
        if i in self.down:
            call.last = TimeoutError("timed out")
            call.retry = call.slow = True
            self._failed[i] = time.monotonic()
            return None
        return {"member": i}


def test_the_member_last_reached_goes_first() -> None:
    c = Scripted(3)
    c._preferred = 1
    assert c.call("/v3/kv/range", {}) == {"member": 1}
    assert c.tried == [1]


def test_a_failover_skips_a_member_that_failed_lately() -> None:
    c = Scripted(3)
    c.down = {1}  # cut off from us
    c._preferred = 1
    assert c.call("/v3/kv/range", {}) == {"member": 2}
    c.down = {2}  # the member we fell over to is slow once
    c.tried.clear()
    # Not 0 then 1 (next in turn): 1 failed a moment ago, so 0 goes before it.
    c._preferred = 2
    assert c.call("/v3/kv/range", {}) == {"member": 0}
    assert c.tried == [2, 0]
    c.down = {0, 1, 2}
    c.tried.clear()
    with pytest.raises(Unavailable):  # members that failed lately are still tried last
        c.call("/v3/kv/range", {}, timeout=0.2)
    assert set(c.tried[:3]) == {0, 1, 2}


def test_a_member_that_answers_again_is_no_longer_last() -> None:
    c = Scripted(3)
    c.down = {1}
    c._preferred = 1
    c.call("/v3/kv/range", {})
    c.down = set()
    c._preferred = 1
    c.call("/v3/kv/range", {})  # 1 answers: forgiven
    assert 1 not in c._failed
    c._preferred = 0
    assert c._order() == [0, 1, 2]
