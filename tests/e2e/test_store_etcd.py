"""The store contract against a real etcd (single member on loopback, started here)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanal.errors import Unavailable
from kanal.store import Store, StoreConflict, open_store
from kanal.store.etcd import EtcdStore
from tests.helpers import etcd_server, free_port, unique
from tests.unit.store.test_store import (  # noqa: F401 (collected here against etcd)
    test_bad_keys_and_urls,
    test_compare_and_swap,
    test_concurrent_cas_increments_lose_nothing,
    test_put_get_list_delete,
    test_txn_is_all_or_nothing,
)

pytestmark = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with etcd_server(str(tmp_path_factory.mktemp("etcd"))) as ep:
        yield ep


@pytest.fixture
def store(etcd: str) -> Iterator[Store]:
    s = open_store(f"etcd://{etcd}/{unique('t', 20)}")  # each test in its own prefix
    yield s
    s.close()


def test_failover_and_unreachable(etcd: str, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    s = open_store(f"etcd://{dead},{etcd}/{unique('f', 20)}")
    assert isinstance(s, EtcdStore)
    s.put("a", b"1", expect=0)
    e = s.get("a")
    assert e is not None and e.value == b"1"
    with pytest.raises(StoreConflict):
        s.put("a", b"2", expect=0)
    only_dead = open_store(f"etcd://{dead}/x")
    with pytest.raises(Unavailable):
        only_dead.get("a")


def test_prefixes_are_separate(etcd: str) -> None:
    a = open_store(f"etcd://{etcd}/{unique('pa', 20)}")
    b = open_store(f"etcd://{etcd}/{unique('pb', 20)}")
    a.put("networks/x", b"A")
    assert b.get("networks/x") is None and b.list("") == []
    assert [e.key for e in a.list("networks/")] == ["networks/x"]
