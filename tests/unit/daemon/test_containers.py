"""Sandboxes in docker's container shapes (pure logic: no socket, no root).

The shape is checked against a container object docker itself printed
(tests/fixtures/docker_objects.py): every key kanal writes is one docker has, at
every level a template reaches, and the ones templates use most are there.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kanal.daemon.containers import (
    container_json,
    container_summary,
    human_duration,
    match_container,
    status_text,
)
from kanal.daemon.dockerapi import parse_signal
from kanal.engine.model import Endpoint, IPAMConfig, Network, PortBinding
from kanal.engine.sandboxes import Sandbox
from kanal.errors import InvalidConfig
from tests.fixtures.docker_objects import CONTAINER_C1

NET = Network(
    id="n" * 64, name="app", driver="bridge", ipam=[IPAMConfig("10.74.0.0/24", "10.74.0.1")]
)


def sandbox(**kw: Any) -> Sandbox:
    base: dict[str, Any] = dict(
        id="a" * 64,
        name="web",
        argv=["httpd", "-f", "-p", "80"],
        netns="/run/netns/kanal-aaaaaaaaaaaa",
        own_netns=True,
        network_mode="app",
        state="running",
        pid=4242,
        created="2026-01-02T03:04:05.000001Z",
        started_at="2026-01-02T03:04:06.000001Z",
        hostname="web",
        env={"PATH": "/bin"},
        publish=[
            {"container_port": 80, "protocol": "tcp", "host_ip": "127.0.0.1", "host_port": 8080}
        ],
        requests=[{"network": "app", "ip": "10.74.0.10", "ip6": "", "aliases": ["www"]}],
    )
    base.update(kw)
    return Sandbox(**base)


EP = Endpoint(
    id="e" * 64,
    network_id=NET.id,
    name="web",
    sandbox_id="a" * 64,
    mac="02:42:0a:4a:00:0a",
    ipv4="10.74.0.10/24",
    static_ip=True,
    aliases=["www"],
    ports=[PortBinding(80, "tcp", "127.0.0.1", 8080)],
)


def keys_within(ours: dict[str, Any], docker: dict[str, Any], where: str) -> None:
    extra = set(ours) - set(docker) - {"LostAddresses"}  # kanal's one addition
    assert not extra, f"{where}: keys docker does not have: {sorted(extra)}"


def test_inspect_has_dockers_shape() -> None:
    got = container_json(sandbox(), [EP], {NET.id: NET}, pid=4243, files_dir="/st/sb")
    keys_within(got, CONTAINER_C1, "top")
    for k in ("State", "Config", "NetworkSettings"):
        keys_within(got[k], CONTAINER_C1[k], k)
    keys_within(
        got["HostConfig"],
        {**CONTAINER_C1["HostConfig"], "PidMode": "", "UTSMode": "", "Links": None},
        "HostConfig",
    )
    docker_ep = CONTAINER_C1["NetworkSettings"]["Networks"]["web"]
    keys_within(got["NetworkSettings"]["Networks"]["app"], docker_ep, "Networks.app")
    assert set(docker_ep) == set(got["NetworkSettings"]["Networks"]["app"])
    assert set(CONTAINER_C1["State"]) == set(got["State"])
    st = got["State"]
    assert (st["Status"], st["Running"], st["Pid"], st["ExitCode"]) == ("running", True, 4243, 0)
    ns = got["NetworkSettings"]
    assert ns["SandboxKey"] == "/run/netns/kanal-aaaaaaaaaaaa"
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    app = ns["Networks"]["app"]
    assert (app["IPAddress"], app["IPPrefixLen"], app["Gateway"]) == ("10.74.0.10", 24, "10.74.0.1")
    assert app["IPAMConfig"] == {"IPv4Address": "10.74.0.10", "IPv6Address": ""}
    assert app["DNSNames"] == ["web", "aaaaaaaaaaaa", "www"]
    assert got["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]
    }
    assert got["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert (got["Name"], got["Path"], got["Args"]) == ("/web", "httpd", ["-f", "-p", "80"])
    assert got["HostsPath"] == "/st/sb/hosts"


def test_a_stopped_sandbox_shows_its_status_and_no_addresses() -> None:
    parked = [
        {
            "network": NET.id,
            "name": "app",
            "ip": "10.74.0.10",
            "ip6": "",
            "aliases": ["www"],
            "ports": True,
        }
    ]
    sb = sandbox(state="exited", exit_code=143, finished_at="2026-01-02T03:05:06Z", parked=parked)
    got = container_json(sb, [], {NET.id: NET}, pid=4243, files_dir="/st/sb")
    st = got["State"]
    assert (st["Status"], st["Running"], st["Pid"], st["ExitCode"]) == ("exited", False, 0, 143)
    app = got["NetworkSettings"]["Networks"]["app"]
    assert (app["IPAddress"], app["EndpointID"], app["NetworkID"]) == ("", "", NET.id)
    assert app["IPAMConfig"] == {
        "IPv4Address": "10.74.0.10",
        "IPv6Address": "",
    }  # start takes it again
    assert got["NetworkSettings"]["Ports"] == {}
    now = datetime(2026, 1, 2, 3, 7, 6, tzinfo=UTC)
    assert status_text(sb, now) == "Exited (143) 2 minutes ago"
    assert status_text(sandbox(), datetime(2026, 1, 2, 3, 4, 16, 1, tzinfo=UTC)) == "Up 10 seconds"
    assert status_text(sandbox(state="created", started_at="")) == "Created"


def test_human_duration_as_dockers() -> None:
    for secs, want in (
        (0.3, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (timedelta(hours=47).total_seconds(), "47 hours"),
        (timedelta(days=3).total_seconds(), "3 days"),
    ):
        assert human_duration(secs) == want, secs


def test_ps_filters() -> None:
    sb = sandbox()
    s = container_summary(sb, [EP], {NET.id: NET})
    assert s["Names"] == ["/web"] and s["Ports"][0]["PublicPort"] == 8080
    assert match_container(sb, s, {"status": ["running"], "network": ["app"], "name": ["we"]})
    assert match_container(sb, s, {"publish": ["8080/tcp"], "id": ["aaa"]})
    assert not match_container(sb, s, {"status": ["exited"]})
    assert not match_container(sb, s, {"network": ["other"]})
    assert match_container(sb, s, {"status": ["exited", "running"]})  # one key: OR
    ex = sandbox(state="exited", exit_code=137)
    se = container_summary(ex, [], {NET.id: NET})
    assert match_container(ex, se, {"exited": ["137"]}) and not match_container(
        ex, se, {"exited": ["0"]}
    )
    for bad in ({"nosuch": ["x"]}, {"status": ["sleeping"]}, {"exited": ["x"]}):
        with pytest.raises(InvalidConfig):
            match_container(sb, s, bad)


def test_signals_by_name_or_number() -> None:
    assert parse_signal("SIGTERM") == parse_signal("term") == parse_signal("15") == 15
    assert parse_signal("KILL") == 9 and parse_signal("SIGHUP") == 1
    for bad in ("", "SIGNOPE", "0", "999", "-1", "TERM;"):
        with pytest.raises(InvalidConfig, match="Invalid signal"):
            parse_signal(bad)
