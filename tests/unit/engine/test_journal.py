"""Which intents are abandoned, with operations beginning and ending during the look."""

from __future__ import annotations

from collections.abc import Callable

from kanal.engine.journal import Journal
from kanal.store import Entry
from kanal.store.memory import MemoryStore


class HookedStore(MemoryStore):
    """A memory store that runs ``before``/``after`` around one listing: another
    thread's operation landing exactly there."""

    def __init__(self) -> None:
        super().__init__()
        self.before: Callable[[], object] | None = None
        self.after: Callable[[], object] | None = None

    def list(self, prefix: str) -> list[Entry]:
        before, self.before = self.before, None
        after, self.after = self.after, None
        if before:
            before()
        out = super().list(prefix)
        if after:
            after()
        return out


def test_an_operation_begun_during_the_listing_is_not_abandoned() -> None:
    store = HookedStore()
    j = Journal(store)
    begun = []
    store.before = lambda: begun.append(j.begin("sandbox-remove", sandbox="s1", name="n1"))
    assert j.abandoned() == []
    assert len(begun) == 1 and [i.id for i in j.open()] == [begun[0].id]


def test_an_operation_ended_during_the_listing_is_not_abandoned() -> None:
    store = HookedStore()
    j = Journal(store)
    it = j.begin("sandbox-remove", sandbox="s1", name="n1")
    store.after = lambda: j.end(it)  # listed, then ended before the running set is read
    assert j.abandoned() == []


def test_an_intent_no_operation_runs_is_abandoned() -> None:
    store = HookedStore()
    it = Journal(store).begin("connect", network="n", endpoint="e", sandbox="s")
    j = Journal(store)  # a new process: the intent is nobody's
    assert [i.id for i in j.abandoned()] == [it.id]
