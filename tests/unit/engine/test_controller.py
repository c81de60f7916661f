"""The controller's own logic with a fake driver and the memory store (no root).

The driver factory is injected, so what the controller decides — subnets,
addresses, ports, records, the journal, the order of undo — is checked here
without a kernel; the real drivers are covered in tests/netns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest

from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller
from kanal.engine.ipam import Pool
from kanal.engine.model import Endpoint, IPAMConfig, Network, NetworkSpec, PortBinding, SandboxRef
from kanal.engine.recovery import recover
from kanal.errors import Conflict, InvalidConfig, KanalError, NotFound
from kanal.store.memory import MemoryStore


class FakeDriver:
    """Records what the controller asks of it; fails where a test says."""

    needs_ipam = True
    has_interface = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[tuple[str, str]] = []
        self.fail: set[str] = set()  # method names that raise
        self.kernel: set[str] = set()  # endpoint ids "in the kernel"
        self.networks: set[str] = set()
        self.after_join: Callable[[], object] | None = None  # runs once the kernel has it

    def _call(self, what: str, obj: str) -> None:
        self.calls.append((what, obj))
        if what in self.fail:
            raise KanalError(f"{what} failed (as the test asked)")

    def prepare(self, net: Network) -> None:
        self._call("prepare", net.name)
        net.driver_state = {"fake": True}

    def reserve(self, net: Network) -> None:
        self._call("reserve", net.name)

    def create_network(self, net: Network) -> None:
        self._call("create_network", net.name)
        self.networks.add(net.id)

    def delete_network(self, net: Network) -> None:
        self.networks.discard(net.id)
        self._call("delete_network", net.name)

    def idle(self, net: Network) -> None:
        self._call("idle", net.name)

    def join(self, net: Network, ep: Endpoint) -> None:
        self._call("join", ep.name)
        ep.mac = "02:00:00:00:00:01"
        self.kernel.add(ep.id)
        if self.after_join is not None:
            self.after_join()

    def leave(self, net: Network, ep: Endpoint) -> None:
        self.kernel.discard(ep.id)
        self._call("leave", ep.name)

    def endpoint_ok(self, net: Network, ep: Endpoint) -> bool:
        return ep.id in self.kernel


class Engine:
    def __init__(self, tmp: Path, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()
        self.drivers: dict[str, FakeDriver] = {}
        self.ctrl = self.new_controller()

    def factory(self, name: str, ctx: EngineContext) -> FakeDriver:
        if name not in ("fake", "other"):
            raise InvalidConfig(f"plugin {name!r} not found: unknown network driver")
        return self.drivers.setdefault(name, FakeDriver(name))

    def new_controller(self) -> Controller:
        """Another controller on the same store and "kernel": a restarted daemon."""
        return Controller(
            self.store,
            EngineContext(state_dir="/nonexistent"),
            pools=[Pool("10.250.0.0/16", 24)],
            host_routes=lambda: ["10.250.0.0/24", "default"],
            drivers=self.factory,
        )

    @property
    def fake(self) -> FakeDriver:
        return self.drivers["fake"]


@pytest.fixture
def eng(tmp_path: Path) -> Engine:
    return Engine(tmp_path)


WEB = [PortBinding(80, "tcp", "", 8080)]


def sandbox(name: str, netns: str = "") -> SandboxRef:
    return SandboxRef(id=f"sb-{name}", name=name, netns=netns)


def test_create_plans_a_free_subnet_and_records_the_network(eng: Engine) -> None:
    net = eng.ctrl.create_network(NetworkSpec("n1", "fake"))
    # The first pool subnet is a host route's: skipped.
    assert [c.subnet for c in net.ipam] == ["10.250.1.0/24"]
    assert eng.fake.calls == [
        ("prepare", "n1"),
        ("reserve", "n1"),
        ("create_network", "n1"),
    ]
    assert eng.ctrl.get_network("n1").id == net.id
    assert eng.ctrl.get_network(net.id[:8]).name == "n1"
    assert eng.ctrl.journal.open() == []
    second = eng.ctrl.create_network(NetworkSpec("n2", "fake"))
    assert [c.subnet for c in second.ipam] == ["10.250.2.0/24"]


def test_create_refuses_bad_specs_and_changes_nothing(eng: Engine) -> None:
    eng.ctrl.create_network(NetworkSpec("n1", "fake", ipam=[IPAMConfig("10.9.0.0/24")]))
    before = eng.store.list("")
    with pytest.raises(Conflict):
        eng.ctrl.create_network(NetworkSpec("n1", "fake"))
    with pytest.raises(Conflict):
        eng.ctrl.create_network(NetworkSpec("n2", "fake", ipam=[IPAMConfig("10.9.0.128/25")]))
    with pytest.raises(InvalidConfig):
        eng.ctrl.create_network(NetworkSpec("n3", "nosuch"))
    with pytest.raises(InvalidConfig):
        eng.ctrl.create_network(NetworkSpec("n4", "fake", ipam=[IPAMConfig("fd00::/64")]))
    assert eng.store.list("") == before


def test_a_failed_kernel_create_is_rolled_back(eng: Engine) -> None:
    eng.ctrl.create_network(NetworkSpec("ok", "fake"))
    eng.fake.fail.add("create_network")
    with pytest.raises(KanalError, match="create_network failed"):
        eng.ctrl.create_network(NetworkSpec("n1", "fake"))
    # Undone in reverse: the record, then what the driver made.
    assert eng.fake.calls[-1] == ("delete_network", "n1")
    assert [n.name for n in eng.ctrl.networks()] == ["ok"]
    assert eng.ctrl.journal.open() == []


def test_connect_allocates_records_and_joins(eng: Engine) -> None:
    net = eng.ctrl.create_network(NetworkSpec("n1", "fake"))
    ep = eng.ctrl.connect(
        "n1", sandbox("c1", "/run/netns/x"), aliases=["web"], ports=[PortBinding(80, "tcp")]
    )
    assert ep.ifname == "eth0" and ep.default_gateway
    assert ipaddress.ip_interface(ep.ipv4) in ipaddress.ip_network("10.250.1.0/24")
    assert ep.ipv4 != "10.250.1.1/24"  # the gateway
    assert ep.ports and ep.ports[0].host_port  # a host port was picked
    assert eng.ctrl.get_endpoint(net.id, ep.id).mac == "02:00:00:00:00:01"
    assert [e.id for e in eng.ctrl.sandbox_endpoints("sb-c1")] == [ep.id]
    assert ep.id in eng.fake.kernel
    with pytest.raises(Conflict):
        eng.ctrl.connect("n1", sandbox("c1", "/run/netns/x"))
    # A second network of the same sandbox: the next interface, no second way out.
    eng.ctrl.create_network(NetworkSpec("n2", "fake"))
    ep2 = eng.ctrl.connect("n2", sandbox("c1", "/run/netns/x"))
    assert ep2.ifname == "eth1" and not ep2.default_gateway
    with pytest.raises(Conflict):
        eng.ctrl.delete_network("n1")


def test_a_failed_join_is_rolled_back_entirely(eng: Engine) -> None:
    net = eng.ctrl.create_network(NetworkSpec("n1", "fake", ipam=[IPAMConfig("10.9.0.0/24")]))
    eng.fake.fail.add("join")
    with pytest.raises(KanalError, match="join failed"):
        eng.ctrl.connect(
            "n1", sandbox("c1"), ip="10.9.0.7", ports=[PortBinding(80, "tcp", "", 8080)]
        )
    assert eng.ctrl.endpoints(net.id) == []
    assert eng.store.list("by-sandbox/") == []
    assert eng.store.list("ports/") == []
    assert eng.ctrl.ipam.in_use(net.id) == {}
    assert eng.ctrl.journal.open() == []
    # What was held is free again: the same address and port go to the next one.
    eng.fake.fail.clear()
    ep = eng.ctrl.connect(
        "n1", sandbox("c2"), ip="10.9.0.7", ports=[PortBinding(80, "tcp", "", 8080)]
    )
    assert ep.ipv4 == "10.9.0.7/24" and ep.ports[0].host_port == 8080


def test_disconnect_and_delete(eng: Engine) -> None:
    net = eng.ctrl.create_network(NetworkSpec("n1", "fake"))
    ep = eng.ctrl.connect("n1", sandbox("c1"))
    eng.ctrl.disconnect("n1", "sb-c1")
    assert ("leave", "c1") in eng.fake.calls and ("idle", "n1") in eng.fake.calls
    assert eng.ctrl.ipam.in_use(net.id) == {}
    with pytest.raises(NotFound):
        eng.ctrl.disconnect("n1", "sb-c1")
    assert ep.id not in eng.fake.kernel
    eng.ctrl.delete_network("n1")
    assert eng.ctrl.networks() == [] and net.id not in eng.fake.networks
    with pytest.raises(NotFound):
        eng.ctrl.get_network("n1")


def test_reconcile_rejoins_drops_and_finishes_deletions(eng: Engine, tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    alive.touch()
    n1 = eng.ctrl.create_network(NetworkSpec("n1", "fake"))
    n2 = eng.ctrl.create_network(NetworkSpec("n2", "fake"))
    kept = eng.ctrl.connect("n1", sandbox("c1", str(alive)))
    gone = eng.ctrl.connect("n1", sandbox("c2", str(tmp_path / "gone")))
    # A crash in the middle of deleting n2, and a kernel that lost everything.
    n2.driver_state["deleting"] = True
    eng.store.put(f"networks/{n2.id}", n2.to_json())
    eng.fake.kernel.clear()
    eng.fake.networks.clear()
    fresh = eng.new_controller()
    counts = fresh.reconcile()
    assert counts == {"networks": 1, "deleted": 1, "rejoined": 1, "dropped": 1}
    assert eng.fake.networks == {n1.id}
    assert eng.fake.kernel == {kept.id}
    assert [e.id for e in fresh.endpoints(n1.id)] == [kept.id]
    assert gone.ipv4.split("/")[0] not in fresh.ipam.in_use(n1.id)
    assert [n.name for n in fresh.networks()] == ["n1"]
    # Nothing left to do: a second run only re-creates (idempotently).
    assert fresh.reconcile() == {"networks": 1, "deleted": 0, "rejoined": 0, "dropped": 0}


def snapshot(store: MemoryStore) -> MemoryStore:
    """The store as a ``kill -9`` at this instant leaves it (no undo runs)."""
    copy = MemoryStore()
    for e in store.list(""):
        copy.put(e.key, e.value)
    return copy


def test_recovery_undoes_a_connect_a_kill_interrupted(eng: Engine) -> None:
    net = eng.ctrl.create_network(NetworkSpec("n1", "fake", ipam=[IPAMConfig("10.9.0.0/24")]))
    left: list[MemoryStore] = []

    def killed_inside_join() -> None:
        # The kernel side exists, then the daemon dies: no undo runs.
        left.append(snapshot(eng.store))
        raise KanalError("the test stops here")

    eng.fake.after_join = killed_inside_join
    with pytest.raises(KanalError):
        eng.ctrl.connect("n1", sandbox("c1"), ip="10.9.0.7", ports=WEB)
    eng.fake.after_join = None
    (crashed,) = left
    assert crashed.list("endpoints/") and crashed.list("ports/")  # what it left
    (rec,) = crashed.list("endpoints/")
    eng.fake.kernel = {Endpoint.from_json(rec.value).id}  # and in the kernel
    eng.fake.calls.clear()
    eng.store = crashed
    fresh = eng.new_controller()
    assert [i.op for i in fresh.journal.abandoned()] == ["connect"]
    lines = recover(fresh)
    assert len(lines) == 1 and lines[0].startswith("connect")
    assert fresh.journal.abandoned() == [] and fresh.journal.open() == []
    assert fresh.endpoints(net.id) == [] and crashed.list("by-sandbox/") == []
    assert crashed.list("ports/") == [] and fresh.ipam.in_use(net.id) == {}
    assert eng.fake.calls == [("leave", "c1")] and eng.fake.kernel == set()
    # Recovery is idempotent: nothing is left to resolve.
    assert recover(fresh) == []
