"""Pure logic of kanal lab: the options, names and addresses, the on-disk record,
the impairment schedule, and the CLI's argument parsing."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from kanal.cli.main import build_parser
from kanal.errors import Conflict, DecodeError, InvalidConfig, NotFound
from kanal.lab.impair import Impairment, schedule
from kanal.lab.record import LabRecord, ProcEntry, create_dir, lab_root, list_labs
from kanal.lab.spec import LabSpec, addr, mac, member_index, netns_name, validate_lab_name


def test_lab_names() -> None:
    assert validate_lab_name("demo") == "demo"
    for bad in ("", "-x", "a/b", "x" * 33, "a b", "a\n", "..", ".hidden"):
        with pytest.raises(InvalidConfig):
            validate_lab_name(bad)


def test_members_addresses_and_macs() -> None:
    assert member_index("h12") == ("h", 12) and member_index("e3") == ("e", 3)
    for bad in ("h0", "x1", "h", "h1a", "e01", "h1000", ""):
        with pytest.raises(InvalidConfig):
            member_index(bad)
    assert addr("h1") == "192.0.2.1" and addr("h200") == "192.0.2.200"
    assert addr("e1") == "192.0.2.201"
    assert mac("h1") == "02:6b:6c:00:00:01" and mac("e2") == "02:6b:6c:00:01:02"
    assert len({mac(f"h{i}") for i in range(1, 201)} | {mac(f"e{k}") for k in range(1, 10)}) == 209
    assert netns_name("demo", "abc123", "h2") == "kl-demo-abc123-h2"


def test_spec_checks_every_option() -> None:
    spec = LabSpec("x", hosts=50, etcd=3).check()
    assert spec.members()[:2] == ["h1", "h2"] and spec.members()[-1] == "e3"
    assert spec.cluster_store() == (
        "etcd://192.0.2.201:2379,192.0.2.202:2379,192.0.2.203:2379/kanal/"
    )
    assert LabSpec("x", etcd=0).check().cluster_store() == ""
    assert LabSpec("x", etcd=2, tls=True).check().cluster_store() == (
        "etcds://192.0.2.201:2379,192.0.2.202:2379/kanal/"
    )
    bad = [
        {"hosts": 0}, {"hosts": 201}, {"hosts": True}, {"etcd": 10}, {"etcd": -1},
        {"underlay_mtu": 1000}, {"underlay_mtu": 9001}, {"node_ttl": 1},
        {"grace": 0}, {"resync": "1"}, {"etcd_heartbeat_ms": 5},
        {"etcd_heartbeat_ms": 100, "etcd_election_ms": 400}, {"store_prefix": "kanal"},
        {"store_prefix": "/a b/"}, {"log_level": "loud"}, {"ovs": True, "hosts": 21},
        {"kanald_args": ["--x\n"]}, {"tls": True, "etcd": 0}, {"tls": 1},
    ]  # fmt: skip
    for kw in bad:
        with pytest.raises(InvalidConfig):
            LabSpec("x", **kw).check()  # type: ignore[arg-type]
    d = LabSpec("y", hosts=4, underlay_mtu=1400).to_dict()
    assert LabSpec.from_dict({**d, "unknown": 1}) == LabSpec("y", hosts=4, underlay_mtu=1400)


def test_record_round_trip_and_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path / "labs")
    d = create_dir("r1", root)
    assert os.stat(root).st_mode & 0o777 == 0o700 and os.stat(d).st_mode & 0o777 == 0o700
    with pytest.raises(Conflict):
        create_dir("r1", root)
    rec = LabRecord("r1", "abc123", d, LabSpec("r1").to_dict())
    rec.namespaces.append("kl-r1-abc123-ul")
    rec.procs["etcd:e1"] = ProcEntry(42, "123", ["etcd"], "kl-r1-abc123-e1", "/x/log")
    rec.netem["h1"] = Impairment(delay_ms=100).to_dict()
    rec.save()
    assert os.stat(rec.path).st_mode & 0o777 == 0o600
    back = LabRecord.load("r1", root)
    assert back == rec and back.lab_spec() == LabSpec("r1")
    assert list_labs(root) == ["r1"]
    with pytest.raises(NotFound):
        LabRecord.load("nope", root)
    with pytest.raises(InvalidConfig):
        LabRecord.load("../x", root)
    Path(rec.path).write_text("{not json")
    with pytest.raises(DecodeError):
        LabRecord.load("r1", root)
    Path(rec.path).write_text(json.dumps({"name": "r1"}))
    with pytest.raises(DecodeError):
        LabRecord.load("r1", root)
    monkeypatch.setenv("KANAL_LAB_DIR", "/somewhere")
    assert lab_root() == "/somewhere" and lab_root("/given") == "/given"
    monkeypatch.delenv("KANAL_LAB_DIR")
    assert lab_root() == "/run/kanal-lab"


def test_impairment_checks_and_text() -> None:
    assert str(Impairment(100, 20, 1)) == "delay 100ms ±20ms loss 1%"
    assert str(Impairment()) == "none"
    for kw in ({"delay_ms": -1}, {"jitter_ms": 30, "delay_ms": 10}, {"loss": 101},
               {"duplicate": -0.5}, {"reorder": True}, {"delay_ms": 60001}):  # fmt: skip
        with pytest.raises(InvalidConfig):
            Impairment(**kw).check()
    assert Impairment.from_dict({"delay_ms": "5", "x": 1}) == Impairment(5.0)
    with pytest.raises(InvalidConfig):
        Impairment.from_dict({"loss": "lots"})


def test_schedule_follows_netem() -> None:
    rng = random.Random(7)
    n = 20000
    plain = [schedule(Impairment(delay_ms=100, jitter_ms=20), rng) for _ in range(n)]
    assert all(len(w) == 1 and 0.080 <= w[0] <= 0.120 for w in plain)
    assert 0.098 < sum(w[0] for w in plain) / n < 0.102  # uniform around the delay
    lossy = [schedule(Impairment(loss=10), rng) for _ in range(n)]
    assert 0.08 < sum(1 for w in lossy if not w) / n < 0.12
    dup = [schedule(Impairment(duplicate=5), rng) for _ in range(n)]
    assert 0.04 < sum(1 for w in dup if len(w) == 2) / n < 0.06
    reo = [schedule(Impairment(delay_ms=50, reorder=25), rng) for _ in range(n)]
    assert 0.22 < sum(1 for w in reo if w == [0.0]) / n < 0.28
    assert all(w in ([0.0], [0.05]) for w in reo)
    assert schedule(Impairment(), rng) == [0.0]


def test_cli_parses_lab_commands() -> None:
    p = build_parser()
    a = p.parse_args(["lab", "--lab-dir", "/d", "up", "demo", "--hosts", "5", "--ovs"])
    assert (a.lab_dir, a.name, a.hosts, a.etcd, a.ovs, a.underlay_mtu) == (
        "/d",
        "demo",
        5,
        3,
        True,
        1500,
    )
    assert p.parse_args(["lab", "up", "demo"]).etcd_tls is False
    assert p.parse_args(["lab", "up", "demo", "--etcd-tls"]).etcd_tls is True
    a = p.parse_args(["lab", "exec", "demo", "h2", "--", "kanal", "ps", "-a"])
    assert [x for x in a.cmd if x != "--"] == ["kanal", "ps", "-a"]
    a = p.parse_args(
        ["lab", "fault", "demo", "netem", "h1,e2", "--delay", "0.1s", "--jitter", "20ms",
         "--loss", "1%", "--reorder", "25"]
    )  # fmt: skip
    assert (a.members, a.delay, a.jitter, a.loss, a.reorder) == ("h1,e2", 100.0, 20.0, 1.0, 25.0)
    a = p.parse_args(["lab", "fault", "demo", "partition", "h1,h2", "e1"])
    assert a.groups == ["h1,h2", "e1"]
    a = p.parse_args(["lab", "fault", "demo", "kill", "h3", "e1"])
    assert (a.fault, a.targets) == ("kill", ["h3", "e1"])
    with pytest.raises(SystemExit):
        p.parse_args(["lab", "fault", "demo", "netem", "h1", "--delay", "soon"])
    with pytest.raises(SystemExit):
        p.parse_args(["lab", "fault", "demo", "netem", "h1", "--loss", "-1"])
