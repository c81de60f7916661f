from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import IS_ROOT, create_netns, delete_netns, unique


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root to create network namespaces")
    for item in items:
        path = str(item.fspath)
        if "/tests/netns/" in path or "/tests/e2e/" in path:
            item.add_marker(pytest.mark.root)
            if "/tests/e2e/" in path:
                item.add_marker(pytest.mark.e2e)
            if not IS_ROOT:
                item.add_marker(skip_root)


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    """Create uniquely named namespaces; all are deleted at teardown."""
    made: list[str] = []

    def make(prefix: str = "kt") -> str:
        name = create_netns(unique(prefix, 30))
        made.append(name)
        return name

    yield make
    for name in reversed(made):
        delete_netns(name)


@pytest.fixture
def host_ns(make_netns: Callable[[str], str]) -> str:
    """A fresh namespace that plays the host."""
    return make_netns("kth")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d
