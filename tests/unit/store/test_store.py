"""The store contract, run against every backend."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanal.errors import InvalidConfig
from kanal.store import Delete, Put, Store, StoreConflict, open_store
from kanal.store.sqlite import SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = "memory://" if request.param == "memory" else f"sqlite://{tmp_path}/db/state.db"
    s = open_store(url)
    yield s
    s.close()


def test_put_get_list_delete(store: Store) -> None:
    r0 = store.revision()  # 0 on a fresh store; etcd's is shared by every prefix
    assert store.get("networks/a") is None
    r1 = store.put("networks/a", b"A")
    r2 = store.put("networks/b", b"B")
    store.put("networksx", b"X")
    assert (r1, r2) == (r0 + 1, r0 + 2) and store.revision() == r0 + 3
    a = store.get("networks/a")
    assert a is not None and a.value == b"A" and a.mod_rev == r1
    assert [e.key for e in store.list("networks/")] == ["networks/a", "networks/b"]
    assert store.delete("networks/a") is True
    assert store.delete("networks/a") is False
    assert [e.key for e in store.list("networks/")] == ["networks/b"]


def test_compare_and_swap(store: Store) -> None:
    rev = store.put("k", b"1", expect=0)
    with pytest.raises(StoreConflict, match="exists"):
        store.put("k", b"2", expect=0)
    with pytest.raises(StoreConflict):
        store.put("k", b"2", expect=rev + 10)
    rev2 = store.put("k", b"2", expect=rev)
    assert rev2 > rev
    with pytest.raises(StoreConflict):
        store.delete("k", expect=rev)
    e = store.get("k")
    assert e is not None and e.value == b"2"
    assert store.delete("k", expect=rev2)
    with pytest.raises(StoreConflict):
        store.delete("missing", expect=5)


def test_txn_is_all_or_nothing(store: Store) -> None:
    store.put("pool/used", b"[]")
    e = store.get("pool/used")
    assert e is not None
    store.txn([Put("ep/1", b"x", expect=0), Put("pool/used", b"[1]", expect=e.mod_rev)])
    before = store.revision()
    with pytest.raises(StoreConflict, match="pool/used"):
        # stale revision of pool/used: ep/2 must not be written either
        store.txn([Put("ep/2", b"y", expect=0), Put("pool/used", b"[1,2]", expect=e.mod_rev)])
    assert store.get("ep/2") is None and store.revision() == before
    store.txn([Delete("ep/1"), Delete("never-there")])
    assert store.get("ep/1") is None


def test_bad_keys_and_urls(store: Store) -> None:
    with pytest.raises(InvalidConfig):
        store.put("", b"x")
    with pytest.raises(InvalidConfig):
        store.put("a\0b", b"x")
    for url in ("nope", "etcdx://x", "sqlite://"):
        with pytest.raises(InvalidConfig):
            open_store(url)


def test_concurrent_cas_increments_lose_nothing(store: Store) -> None:
    store.put("counter", b"0")

    def bump(n: int) -> None:
        for _ in range(n):
            while True:
                e = store.get("counter")
                assert e is not None
                try:
                    store.put("counter", str(int(e.value) + 1).encode(), expect=e.mod_rev)
                    break
                except StoreConflict:
                    continue

    threads = [threading.Thread(target=bump, args=(50,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    e = store.get("counter")
    assert e is not None and int(e.value) == 200


def test_sqlite_survives_reopen_and_is_shared_between_handles(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    a = SqliteStore(path)
    b = SqliteStore(path)  # as a second process would open it
    a.put("n/1", json.dumps({"name": "one"}).encode())
    e = b.get("n/1")
    assert e is not None
    with pytest.raises(StoreConflict):
        b.put("n/1", b"{}", expect=0)
    b.put("n/1", b"{}", expect=e.mod_rev)
    assert a.revision() == 2
    a.close()
    b.close()
    c = SqliteStore(path)
    got = c.get("n/1")
    assert got is not None and got.value == b"{}" and c.revision() == 2
    assert (tmp_path / "s.db").stat().st_mode & 0o777 == 0o600
    c.close()
