"""SandboxManager directly: files, shared namespaces, clean removal, refused names."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kanal.daemon.cniruntime import inprocess_cni
from kanal.engine.context import EngineContext
from kanal.engine.controller import Controller, NetworkSpec
from kanal.engine.ipam import Pool
from kanal.engine.model import IPAMConfig
from kanal.engine.processes import proc_start
from kanal.engine.sandboxenv import is_mount
from kanal.engine.sandboxes import SandboxManager, SandboxSpec
from kanal.engine.sandboxrecord import Sandbox
from kanal.errors import Conflict, InvalidConfig
from kanal.store import open_store
from tests.helpers import unique
from tests.netns.inns import in_ns


class Mgr:
    def __init__(self, host: str, tmp: Path) -> None:
        self.host = host
        store = open_store(f"sqlite://{tmp}/state.db")
        ctrl = Controller(
            store,
            EngineContext(
                cni_runtime=inprocess_cni,
                state_dir=str(tmp / "state"),
                cni_conf_dir=str(tmp / "none"),
            ),
            pools=[Pool("10.78.0.0/16", 24)],
            default_bridge=unique("ksb", 15),
            default_subnet="10.77.9.0/24",
        )
        self.m = SandboxManager(store, ctrl, state_dir=str(tmp / "state"))
        self(ctrl.ensure_builtin)

    def __call__(self, fn: Callable[[], Any]) -> Any:
        return in_ns(self.host, fn)


@pytest.fixture
def mgr(host_ns: str, tmp_path: Path) -> Iterator[Mgr]:
    m = Mgr(host_ns, tmp_path)
    try:
        yield m
    finally:
        for sb in m.m.list_all():
            m(lambda s=sb: m.m.remove(s.id, force=True))  # type: ignore[misc]


def test_files_follow_networks_in_place_and_rm_leaves_nothing(mgr: Mgr) -> None:
    m = mgr.m
    mgr(lambda: m.ctrl.create_network(NetworkSpec("one", ipam=[IPAMConfig("10.78.5.0/24")])))
    mgr(lambda: m.ctrl.create_network(NetworkSpec("two", ipam=[IPAMConfig("10.78.6.0/24")])))
    sb = mgr(lambda: m.create(SandboxSpec(["sleep", "300"], name="box", network_mode="one")))
    hosts = Path(m.state_dir) / "sandboxes" / sb.id / "hosts"
    inode = hosts.stat().st_ino
    assert "10.78.5.2\tbox" in hosts.read_text()
    started = mgr(lambda: m.start("box"))
    # the process sees the sandbox's files over /etc, in its own mount namespace
    mounts = Path(f"/proc/{started.pid}/mountinfo").read_text()
    for _ in range(50):
        if "/etc/hosts" in mounts:
            break
        time.sleep(0.05)
        mounts = Path(f"/proc/{started.pid}/mountinfo").read_text()
    assert "/etc/hosts" in mounts and "/etc/resolv.conf" in mounts
    # (only there: our own mount table does not carry the sandbox's file)
    assert str(hosts.parent) not in Path("/proc/self/mountinfo").read_text()
    # connecting a running sandbox rewrites its hosts file in place (same inode)
    mgr(lambda: m.ctrl.connect("two", m.resolve("box")))
    m.refresh_files(sb.id)
    assert hosts.stat().st_ino == inode and "10.78.6.2\tbox" in hosts.read_text()
    # container: shares the very same network namespace
    other = mgr(
        lambda: m.create(SandboxSpec(["sleep", "300"], name="side", network_mode="container:box"))
    )
    assert os.stat(other.netns).st_ino == os.stat(sb.netns).st_ino
    with pytest.raises(Conflict, match="shares its network"):
        mgr(lambda: m.remove("box", force=True))
    mgr(lambda: m.remove("side", force=True))
    mgr(lambda: m.remove("box", force=True))
    assert not os.path.exists(sb.netns)
    assert not (Path(m.state_dir) / "sandboxes" / sb.id).exists()
    assert m.list_all() == [] and m.ctrl.sandbox_endpoints(sb.id) == []
    assert m.store.list("sandbox-names/") == []


def test_refused_names_leave_no_state(mgr: Mgr, tmp_path: Path) -> None:
    m = mgr.m
    # A namespace directory of its own: other tests add to /run/netns meanwhile.
    m.netns_dir = str(tmp_path / "netns")
    mgr(lambda: m.create(SandboxSpec(["true"], name="taken")))
    before = (m.store.list(""), sorted(os.listdir(m.netns_dir)))
    for spec, exc in (
        (SandboxSpec(["true"], name="taken"), Conflict),
        (SandboxSpec(["true"], name="a/b"), InvalidConfig),
        (SandboxSpec([], name="empty"), InvalidConfig),
        (SandboxSpec(["true"], name="baddns", dns=["not-an-ip"]), InvalidConfig),
        (SandboxSpec(["true"], name="nonet", network_mode="nosuch"), Exception),
    ):
        with pytest.raises(exc):
            mgr(lambda s=spec: m.create(s))  # type: ignore[misc]
    after = (m.store.list(""), sorted(os.listdir(m.netns_dir)))
    assert [e.key for e in after[0]] == [e.key for e in before[0]]
    assert after[1] == before[1]


def test_a_strangers_process_with_the_recorded_namespace_number_holds_nothing(
    mgr: Mgr, make_netns: Callable[[str], str], tmp_path: Path
) -> None:
    """Once an outside unmount frees a sandbox's namespace, its inode number goes to the
    next namespace made on the machine. A process there is a stranger's: repairing the
    sandbox must not mount that namespace as the sandbox's (kanal rm would kill in it).
    A remount mounts only the namespace it was asked for."""
    foreign = make_netns("kfr")
    proc = subprocess.Popen(["ip", "netns", "exec", foreign, "sleep", "60"])
    try:
        st = os.stat(f"/run/netns/{foreign}")
        want = (st.st_dev, st.st_ino)

        def inside() -> bool:
            got = os.stat(f"/proc/{proc.pid}/ns/net")
            return (got.st_dev, got.st_ino) == want

        deadline = time.monotonic() + 10
        while not inside():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        sb = Sandbox(
            id="f" * 64,
            name="gone",
            argv=["true"],
            netns="/nonexistent",
            own_netns=True,
            network_mode="none",
            netns_id=list(want),
        )
        assert mgr.m.procs.netns_holder(sb) == 0
        # The sandbox's own recorded process in it is a holder.
        sb.pid, sb.started = proc.pid, float(proc_start(proc.pid))
        assert mgr.m.procs.netns_holder(sb) == proc.pid
        # Its namespace is mounted only if it is the one recorded.
        target = str(tmp_path / "ns")
        assert not mgr.m.env.remount(target, proc.pid, (want[0], want[1] + 1))
        assert not is_mount(target)
        assert mgr.m.env.remount(target, proc.pid, want)
        try:
            got = os.stat(target)
            assert is_mount(target) and (got.st_dev, got.st_ino) == want
        finally:
            subprocess.run(["umount", target], check=True)
    finally:
        proc.kill()
        proc.wait()
