"""The daemon's renewal decisions (renew, rebind, expire, gone container), with the
network exchange replaced: pure logic of DhcpDaemon.renew_one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kanal.dhcp import client as dc
from kanal.dhcp.daemon import DhcpDaemon
from kanal.errors import TryAgain


def lease(netns: str, obtained: float) -> dc.Lease:
    one = dc.Lease(
        "c1-eth0", netns, "eth0", "net", "id", "02:00:00:00:00:01", "10.0.0.5/24", "10.0.0.1"
    )
    one.lease_time, one.obtained = 120, obtained
    return one


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DhcpDaemon:
    d = DhcpDaemon(str(tmp_path / "s.sock"), str(tmp_path / "leases"))
    monkeypatch.setattr(d, "_in_netns", lambda netns, fn: fn())
    return d


def test_renew_then_rebind_then_expire(
    daemon: DhcpDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = tmp_path / "netns"
    ns.write_text("")
    calls: list[bool] = []
    answer: dict[str, Any] = {"ok": True}

    def fake_renew(one: dc.Lease, *, rebind: bool = False, timeout: float = 10.0) -> dc.Lease:
        calls.append(rebind)
        if not answer["ok"]:
            raise TryAgain("no answer")
        one.obtained = time.time()
        return one

    monkeypatch.setattr(dc, "renew", fake_renew)
    now = time.time()
    # past T1 (60 s): a unicast renew, the lease is saved with its new time
    l1 = lease(str(ns), now - 70)
    daemon.leases[l1.key] = l1
    assert daemon.renew_one(l1) is True and calls == [False]
    assert (tmp_path / "leases" / "c1-eth0.json").exists() and l1.obtained >= now
    # past T2 (105 s): a broadcast rebind; no answer: kept, retried later
    answer["ok"] = False
    l2 = lease(str(ns), now - 110)
    daemon.leases[l2.key] = l2
    assert daemon.renew_one(l2) is False and calls[-1] is True
    assert l2.key in daemon.leases and l2.renew_at() > now
    # past expiry with no answer: dropped, file and all
    l3 = lease(str(ns), now - 130)
    daemon.leases[l3.key] = l3
    daemon._save(l3)
    assert daemon.renew_one(l3) is False
    assert l3.key not in daemon.leases and not (tmp_path / "leases" / "c1-eth0.json").exists()


def test_gone_container_drops_the_lease(daemon: DhcpDaemon, tmp_path: Path) -> None:
    one = lease(str(tmp_path / "no-such-netns"), time.time() - 70)
    daemon.leases[one.key] = one
    daemon._save(one)
    assert daemon.renew_one(one) is False and daemon.leases == {}
    assert daemon.load() == 0
