"""Compare with the Go reference plugins in /usr/lib/cni (no root, no networking).

The ``static`` IPAM plugin prints the result its config describes, so it renders a
known result at every version its Go library supports; its skel reports env and
version errors. The installed binaries use an older Go CNI library (current 1.0.0):
its 1.0.0 output still prints ``"dns": {}`` when empty, which Go HEAD (and kanal)
omit; the 0.x shapes are unchanged since, so those are compared byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import IncompatibleVersion, InvalidEnv, KanalError
from kanal.spec.convert import dumps, parse_result, render_result
from kanal.spec.env import parse_env
from kanal.spec.error import error_from_wire
from kanal.spec.types import DNS, IPConfig, Result, Route, parse_cidr, parse_ip
from kanal.spec.versions import check_supported, decode_version_reply

STATIC = Path("/usr/lib/cni/static")

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not os.access(STATIC, os.X_OK), reason="Go static plugin not installed"),
]


def run_static(env: dict[str, str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(STATIC)], input=stdin, env=env, capture_output=True, timeout=30, check=False
    )


ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "kanal-oracle",
    "CNI_NETNS": "/nonexistent/netns",  # static never opens it; the override skips the check
    "CNI_NETNS_OVERRIDE": "1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/usr/lib/cni",
}


def go_versions() -> list[str]:
    out = run_static({"CNI_COMMAND": "VERSION"}, b"{}")
    assert out.returncode == 0, out.stdout
    return decode_version_reply(out.stdout)


def static_conf(version: str, with_dns: bool) -> dict[str, Any]:
    # static refuses a second address per family below 0.3.0
    extra = [] if version in ("0.1.0", "0.2.0") else [{"address": "10.0.1.2/24"}]
    ipam: dict[str, Any] = {
        "type": "static",
        "addresses": [
            {"address": "10.0.0.2/24", "gateway": "10.0.0.1"},
            {"address": "fd00::2/64"},
            *extra,
        ],
        "routes": [
            {"dst": "0.0.0.0/0"},
            {"dst": "fd01::/64", "gw": "fd00::1"},
            {"dst": "192.168.0.0/16", "gw": "10.0.0.1"},
        ],
    }
    if with_dns:
        ipam["dns"] = {"nameservers": ["1.1.1.1"], "domain": "ex.com", "search": ["a", "b"]}
    return {"cniVersion": version, "name": "oracle", "type": "static", "ipam": ipam}


def kanal_result(with_dns: bool) -> Result:
    return Result(
        ips=[
            IPConfig(parse_cidr("10.0.0.2/24"), parse_ip("10.0.0.1")),
            IPConfig(parse_cidr("fd00::2/64")),
            IPConfig(parse_cidr("10.0.1.2/24")),
        ],
        routes=[
            Route(parse_cidr("0.0.0.0/0")),
            Route(parse_cidr("fd01::/64"), parse_ip("fd00::1")),
            Route(parse_cidr("192.168.0.0/16"), parse_ip("10.0.0.1")),
        ],
        dns=DNS(nameservers=["1.1.1.1"], domain="ex.com", search=["a", "b"]) if with_dns else DNS(),
    )


@pytest.mark.parametrize("with_dns", [True, False], ids=["dns", "no-dns"])
def test_static_result_rendering_matches_go(with_dns: bool) -> None:
    versions = go_versions()
    assert "0.1.0" in versions and "1.0.0" in versions
    for version in versions:
        out = run_static(ADD_ENV, json.dumps(static_conf(version, with_dns)).encode())
        assert out.returncode == 0, (version, out.stdout, out.stderr)
        mine = render_result(kanal_result(with_dns), version)
        if version.startswith("0."):
            assert dumps(mine) == out.stdout, version
        else:
            go = json.loads(out.stdout)
            if go.get("dns") == {}:
                del go["dns"]  # older Go library; HEAD omits the empty dns
            assert mine == go, version
        # and kanal decodes what Go printed back into the same result
        back = parse_result(out.stdout)
        assert back.cni_version == version
        assert render_result(back, version) == mine


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"], ids=str)
def test_missing_env_error_matches_go(command: str) -> None:
    conf = json.dumps(static_conf("1.0.0", False)).encode()
    out = run_static({"CNI_COMMAND": command}, conf)
    assert out.returncode == 1
    go = error_from_wire(out.stdout)
    with pytest.raises(InvalidEnv) as ei:
        parse_env({"CNI_COMMAND": command})
    assert (ei.value.code, ei.value.msg, ei.value.details) == (go.code, go.msg, go.details)


def test_incompatible_version_error_matches_go() -> None:
    conf = json.dumps(static_conf("9.0.0", False)).encode()
    out = run_static(ADD_ENV, conf)
    assert out.returncode == 1
    go = error_from_wire(out.stdout)
    assert isinstance(go, IncompatibleVersion)
    with pytest.raises(IncompatibleVersion) as ei:
        check_supported("9.0.0", go_versions())
    assert (ei.value.code, ei.value.msg, ei.value.details) == (go.code, go.msg, go.details)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CNI_IFNAME", "x" * 16),
        ("CNI_IFNAME", "a/b"),
        ("CNI_IFNAME", ".."),
        ("CNI_CONTAINERID", "a/b"),
    ],
    ids=repr,
)
def test_validation_errors_match_go(var: str, value: str) -> None:
    env = {**ADD_ENV, var: value}
    out = run_static(env, json.dumps(static_conf("1.0.0", False)).encode())
    assert out.returncode == 1
    go = error_from_wire(out.stdout)
    with pytest.raises(KanalError) as ei:
        parse_env(env)
    assert (ei.value.code, ei.value.msg, ei.value.details) == (go.code, go.msg, go.details)
