"""The static IPAM plugin: sources and their priority, validation, CHECK; Go as oracle."""

from __future__ import annotations

import io
import json
import os
import subprocess
from typing import Any

import pytest

from kanal.errors import InvalidConfig, InvalidEnv, KanalError
from kanal.plugins import static as static_plugin
from kanal.skel.cmdargs import CmdArgs
from kanal.skel.dispatcher import Dispatcher
from kanal.spec.convert import render_result
from kanal.spec.versions import ALL_VERSIONS

GO = "/usr/lib/cni/static"


def make_conf(version: str = "1.0.0", **ipam: Any) -> dict[str, Any]:
    base = {
        "type": "static",
        "addresses": [
            {"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
            {"address": "3ffe:ffff:0:01ff::1/64"},
        ],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"}],
        "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]},
    }
    base.update(ipam)
    return {"cniVersion": version, "name": "snet", "type": "static", "ipam": base}


def cmd(command: str, conf: dict[str, Any], args: str = "") -> CmdArgs:
    return CmdArgs(
        command=command,
        container_id="c1",
        netns="/run/netns/x",
        ifname="eth0",
        args=args,
        path=("/usr/lib/cni",),
        stdin_data=json.dumps(conf).encode(),
        conf=conf,
        cni_version=conf["cniVersion"],
    )


def addrs(conf: dict[str, Any], args: str = "") -> list[tuple[str, str | None]]:
    r = static_plugin.cmd_add(cmd("ADD", conf, args))
    return [(str(i.address), str(i.gateway) if i.gateway else None) for i in r.ips]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_each_version(version: str) -> None:
    conf = make_conf(version)
    r = static_plugin.cmd_add(cmd("ADD", conf))
    assert [str(i.address) for i in r.ips] == ["10.10.0.1/24", "3ffe:ffff:0:1ff::1/64"]
    assert r.interfaces == [] and all(i.interface is None for i in r.ips)
    assert r.dns.nameservers == ["8.8.8.8"] and r.dns.domain == "example.com"
    wire = render_result(r, version)
    if version in ("0.1.0", "0.2.0"):
        assert wire["ip4"] == {
            "ip": "10.10.0.1/24",
            "gateway": "10.10.0.254",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"}],
        }
        assert wire["ip6"] == {"ip": "3ffe:ffff:0:1ff::1/64"}
    else:
        assert [i["address"] for i in wire["ips"]] == ["10.10.0.1/24", "3ffe:ffff:0:1ff::1/64"]
        assert wire["dns"]["search"] == ["example.com"]
    static_plugin.cmd_del(cmd("DEL", conf))


def test_host_bits_kept() -> None:
    assert addrs(make_conf(addresses=[{"address": "10.0.0.77/8"}])) == [("10.0.0.77/8", None)]


def test_priority_runtime_over_args_over_env() -> None:
    conf = make_conf()
    env = "IP=10.11.0.5/24, 10.12.0.5/24;GATEWAY=10.11.0.1"
    # CNI_ARGS appends; GATEWAY applies to the CNI_ARGS addresses it contains
    assert addrs(conf, env) == [
        ("10.10.0.1/24", "10.10.0.254"),
        ("3ffe:ffff:0:1ff::1/64", None),
        ("10.11.0.5/24", "10.11.0.1"),
        ("10.12.0.5/24", None),
    ]
    conf["args"] = {"cni": {"ips": ["10.13.0.5/24"]}}
    assert addrs(conf, env) == [("10.13.0.5/24", None)]
    conf["runtimeConfig"] = {"ips": ["10.14.0.5/24", "fd00::5/64"]}
    assert addrs(conf, env) == [("10.14.0.5/24", None), ("fd00::5/64", None)]


def test_gateway_arg_does_not_touch_configured_addresses() -> None:
    assert addrs(make_conf(addresses=[{"address": "10.10.0.1/24"}]), "GATEWAY=10.10.0.2") == [
        ("10.10.0.1/24", None)
    ]


@pytest.mark.parametrize(
    ("conf", "args", "exc", "msg"),
    [
        (
            make_conf(addresses=[{"address": "10.10.0.1"}]),
            "",
            InvalidConfig,
            "the 'address' field is expected to be in CIDR notation, got: '10.10.0.1'",
        ),
        (
            make_conf(addresses=[{"gateway": "10.0.0.1"}]),
            "",
            InvalidConfig,
            "the 'address' field is expected to be in CIDR notation, got: ''",
        ),
        (
            dict(make_conf(), runtimeConfig={"ips": ["10.0.0.1"]}),
            "",
            InvalidConfig,
            "an entry in the 'ips' field is NOT in CIDR notation, got: '10.0.0.1'",
        ),
        (
            dict(make_conf(), args={"cni": {"ips": ["x/24"]}}),
            "",
            InvalidConfig,
            "an entry in the 'ips' field is NOT in CIDR notation, got: 'x/24'",
        ),
        (
            make_conf(),
            "IP=10.0.0.1",
            InvalidEnv,
            "the 'ip' field is expected to be in CIDR notation, got: '10.0.0.1'",
        ),
        (make_conf(), "IP=10.0.0.1/24;GATEWAY=nope", InvalidEnv, "invalid gateway address: nope"),
        (make_conf(), "FOO=1", InvalidEnv, 'ARGS: unknown args ["FOO=1"]'),
        ({"cniVersion": "1.0.0", "name": "n"}, "", InvalidConfig, "IPAM config missing 'ipam' key"),
        (
            make_conf("0.2.0", addresses=[{"address": "10.0.0.1/24"}, {"address": "10.0.1.1/24"}]),
            "",
            InvalidConfig,
            "CNI version 0.2.0 does not support more than 1 address per family",
        ),
        (
            make_conf(addresses=[{"address": "10.0.0.1/24", "gateway": "bad"}]),
            "",
            InvalidConfig,
            "invalid IP address: bad",
        ),
    ],
)
def test_validation(conf: dict[str, Any], args: str, exc: type[KanalError], msg: str) -> None:
    with pytest.raises(exc) as ei:
        static_plugin.cmd_add(cmd("ADD", conf, args))
    assert ei.value.msg == msg


def test_check() -> None:
    conf = make_conf()
    prev = render_result(static_plugin.cmd_add(cmd("ADD", conf)), "1.0.0")
    with pytest.raises(InvalidConfig, match="Required prevResult missing"):
        static_plugin.cmd_check(cmd("CHECK", conf))
    static_plugin.cmd_check(cmd("CHECK", dict(conf, prevResult=prev)))
    wrong = json.loads(json.dumps(prev))
    wrong["ips"][0]["gateway"] = "10.10.0.253"
    with pytest.raises(KanalError) as ei:
        static_plugin.cmd_check(cmd("CHECK", dict(conf, prevResult=wrong)))
    assert ei.value.msg == "static: Failed to match addr 10.10.0.1 on interface eth0"
    # like Go: a configured address absent from prevResult is not an error
    missing = json.loads(json.dumps(prev))
    missing["ips"] = missing["ips"][1:]
    static_plugin.cmd_check(cmd("CHECK", dict(conf, prevResult=missing)))


# -- the Go plugin as oracle ----------------------------------------------------------

CASES: list[tuple[dict[str, Any], str]] = [
    (make_conf(), ""),
    (make_conf("0.4.0"), "IP=10.11.0.5/24,10.12.0.5/24;GATEWAY=10.11.0.1"),
    (make_conf("0.3.1", addresses=[]), "IP=10.11.0.5/24"),
    (dict(make_conf(), args={"cni": {"ips": ["10.13.0.5/24"]}}), "IP=10.11.0.5/24"),
    (dict(make_conf("0.2.0"), runtimeConfig={"ips": ["10.14.0.5/24"]}), ""),
    (make_conf(addresses=[{"address": "10.10.0.1"}]), ""),
    (make_conf(), "IP=10.0.0.1"),
    (make_conf("0.2.0", addresses=[{"address": "10.0.0.1/24"}, {"address": "10.0.1.1/24"}]), ""),
]


def _env(args: str) -> dict[str, str]:
    e = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/unused",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }
    if args:
        e["CNI_ARGS"] = args
    return e


@pytest.mark.oracle
@pytest.mark.skipif(not os.access(GO, os.X_OK), reason=f"{GO} not installed")
@pytest.mark.parametrize(("conf", "args"), CASES)
def test_same_output_as_go(conf: dict[str, Any], args: str) -> None:
    data = json.dumps(conf).encode()
    p = subprocess.run([GO], input=data, env=_env(args), capture_output=True)
    go_out = json.loads(p.stdout)
    out = io.StringIO()
    rc = Dispatcher(_env(args), io.BytesIO(data), out, io.StringIO()).run(static_plugin.PLUGIN)
    ours = json.loads(out.getvalue())
    assert (rc == 0) == (p.returncode == 0), (ours, go_out)
    if rc == 0:
        assert ours == go_out
    else:
        assert ours["msg"] == go_out["msg"]
