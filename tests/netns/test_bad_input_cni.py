"""Named bad inputs to kanal's CNI plugins (config on stdin, CNI_* environment): each
gets the CNI error object with its exact code and exit status 1, and changes nothing
(links, addresses, routes, nft in the host and the container namespace; IPAM files).

Only inputs that stay wrong under Go's encoding/json rules: malformed JSON, wrong
JSON types, bad container ids, interface names, netns paths, addresses, missing
required keys, oversize input; never unknown or differently-cased keys.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kanal.fastpath.install import install_plugins
from kanal.fastpath.standalone import plugin_runner
from kanal.plugins.registry import load_plugin
from kanal.skel.dispatcher import Dispatcher
from tests.helpers import create_netns, delete_netns, nsexec, unique
from tests.netns.inns import in_ns
from tests.snapshot import assert_unchanged, settle, take

pytestmark = pytest.mark.xdist_group("bad-input-cni")

BR = unique("kbc", 15)


@dataclass(frozen=True)
class Cni:
    id: str
    plugin: str
    stdin: Any  # a dict is JSON-encoded, bytes are sent as they are
    code: int
    message: str  # regex on "msg: details"
    env: dict[str, str | None] = field(default_factory=dict)  # None: unset


def bridge(**kw: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "cniVersion": "1.0.0",
        "name": "badnet",
        "type": "bridge",
        "bridge": BR,
        "isGateway": True,
        "ipam": {"type": "host-local", "subnet": "10.66.0.0/24", "dataDir": "DATA"},
    }
    conf.update(kw)
    return conf


def ipam(**kw: Any) -> dict[str, Any]:
    return bridge(ipam={"type": "host-local", "subnet": "10.66.0.0/24", "dataDir": "DATA", **kw})


def ptp(**kw: Any) -> dict[str, Any]:
    c = bridge(type="ptp", **kw)
    del c["bridge"], c["isGateway"]
    return c


def c(
    id: str, code: int, message: str, stdin: Any, plugin: str = "bridge", **env: str | None
) -> Cni:
    return Cni(id, plugin, stdin, code, message, env)


CASES: list[Cni] = [
    # --- stdin that is not a JSON object -------------------------------------------------
    c("stdin-empty", 6, "stdin is empty", b""),
    c("stdin-not-json", 6, "decoding", b"nope"),
    c("stdin-truncated", 6, "decoding", b'{"cniVersion": "1.0.0", "name": '),
    c("stdin-array", 6, "decoding", b"[]"),
    c("stdin-string", 6, "decoding", b'"x"'),
    c("stdin-number", 6, "decoding", b"5"),
    c("stdin-null", 6, "decoding", b"null"),
    # Go's decoder makes an invalid UTF-8 byte U+FFFD: the name check refuses it.
    c("stdin-invalid-utf8", 7, "invalid characters found in network name", b'{"name": "\xff"}'),
    c("stdin-trailing", 6, "decoding", json.dumps(bridge()).encode() + b" x"),
    c("stdin-deep", 6, "decoding|deep", b'{"a":' * 20000 + b"1" + b"}" * 20000),
    c("stdin-oversize", 6, "too large", b'{"x": "' + b"a" * (1 << 20) + b'"}'),
    # --- the version, name and type --------------------------------------------------------
    c("version-number", 6, "cniVersion", bridge(cniVersion=1)),
    c("version-list", 6, "cniVersion", bridge(cniVersion=["1.0.0"])),
    c("version-unknown", 1, "version", bridge(cniVersion="9.9.9")),
    c("version-word", 1, "version", bridge(cniVersion="abc")),
    c("name-number", 6, "unmarshal.*name", bridge(name=5)),
    c("name-dotdot", 7, "name", bridge(name="../escape")),
    c("name-newline", 7, "name", bridge(name="net\n")),
    # --- the environment -------------------------------------------------------------------
    c("env-no-command", 4, "CNI_COMMAND", bridge(), CNI_COMMAND=None),
    c("env-bad-command", 4, "CNI_COMMAND", bridge(), CNI_COMMAND="BOGUS"),
    c("env-lower-command", 4, "CNI_COMMAND", bridge(), CNI_COMMAND="add"),
    c("env-no-containerid", 4, "CNI_CONTAINERID", bridge(), CNI_CONTAINERID=None),
    c("env-containerid-slash", 4, "containerID", bridge(), CNI_CONTAINERID="a/b"),
    c("env-containerid-newline", 4, "containerID", bridge(), CNI_CONTAINERID="c1\n"),
    c("env-containerid-dotdot", 4, "containerID", bridge(), CNI_CONTAINERID=".."),
    c("env-containerid-space", 4, "containerID", bridge(), CNI_CONTAINERID="a b"),
    c("env-no-netns", 4, "CNI_NETNS", bridge(), CNI_NETNS=None),
    c(
        "env-netns-missing",
        999,
        "failed to open netns",
        bridge(),
        CNI_NETNS="/run/netns/nosuch-kbc",
    ),
    c("env-netns-not-ns", 999, "netns|veth", bridge(), CNI_NETNS="/etc/hostname"),
    c("env-netns-relative", 999, "failed to open netns", bridge(), CNI_NETNS="netns/x"),
    c("env-no-ifname", 4, "CNI_IFNAME", bridge(), CNI_IFNAME=None),
    c("env-ifname-long", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME="e" * 16),
    c("env-ifname-slash", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME="a/b"),
    c("env-ifname-dot", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME="."),
    c("env-ifname-dotdot", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME=".."),
    c("env-ifname-space", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME="a b"),
    c("env-ifname-newline", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME="eth0\n"),
    c("env-ifname-colon", 4, "interface name|CNI_IFNAME", bridge(), CNI_IFNAME="a:b"),
    c("env-no-path", 4, "CNI_PATH", bridge(), CNI_PATH=None),
    c("env-args-no-equals", 4, "ARGS: invalid pair", bridge(), CNI_ARGS="IP"),
    c("env-args-empty-key", 4, "ARGS: unknown args", bridge(), CNI_ARGS="=1"),
    c("env-args-bad-ip", 4, "ARGS: unknown args", bridge(), CNI_ARGS="IP=abc"),
    c("env-args-ip-outside", 4, "ARGS: unknown args", ipam(), CNI_ARGS="IP=10.99.0.5"),
    # --- the bridge plugin's own fields --------------------------------------------------
    c("bridge-name-number", 7, "bridge", bridge(bridge=5)),
    c("bridge-name-space", 7, "bridge|interface name", bridge(bridge="a b")),
    c("bridge-name-long", 7, "bridge|interface name", bridge(bridge="b" * 16)),
    c("bridge-name-newline", 7, "bridge|interface name", bridge(bridge="br\n")),
    c("bridge-mtu-string", 7, "mtu", bridge(mtu="1500")),
    c("bridge-mtu-negative", 7, "mtu|MTU", bridge(mtu=-1)),
    c("bridge-mtu-float", 7, "mtu", bridge(mtu=1500.5)),
    c("bridge-isgateway-string", 7, "isGateway", bridge(isGateway="yes")),
    c("bridge-ipmasq-number", 7, "ipMasq", bridge(ipMasq=1)),
    c("bridge-hairpin-string", 7, "hairpinMode", bridge(hairpinMode="x")),
    c("bridge-vlan-string", 7, "vlan", bridge(vlan="5")),
    c("bridge-vlan-huge", 7, "vlan|VLAN", bridge(vlan=5000)),
    # --- IPAM (host-local) -----------------------------------------------------------------
    c("ipam-string", 7, "ipam", bridge(ipam="host-local")),
    c("ipam-type-number", 7, "ipam|type", bridge(ipam={"type": 5})),
    c("ipam-type-slash", 3, "invalid plugin name", bridge(ipam={"type": "../bridge"})),
    c("ipam-type-nosuch", 3, "failed to find plugin", bridge(ipam={"type": "nosuch"})),
    c("ipam-subnet-word", 7, "subnet|CIDR|address", ipam(subnet="abc")),
    c("ipam-subnet-33", 7, "subnet|CIDR|address", ipam(subnet="10.66.0.0/33")),
    c("ipam-subnet-number", 7, "subnet", ipam(subnet=5)),
    c("ipam-subnet-newline", 7, "subnet|CIDR|address", ipam(subnet="10.66.0.0/24\n")),
    c("ipam-gateway-word", 7, "gateway|address", ipam(gateway="gw")),
    c("ipam-range-start-outside", 7, "range|start|subnet", ipam(rangeStart="10.99.0.5")),
    c("ipam-range-end-word", 7, "range|end|address", ipam(rangeEnd="x")),
    c("ipam-ranges-string", 7, "ranges", ipam(ranges="x")),
    c(
        "ipam-ranges-item-string",
        7,
        "range",
        bridge(ipam={"type": "host-local", "ranges": ["x"], "dataDir": "DATA"}),
    ),
    c("ipam-routes-string", 7, "routes", ipam(routes="x")),
    c("ipam-route-dst-word", 7, "dst|route|CIDR", ipam(routes=[{"dst": "abc"}])),
    c("ipam-route-gw-word", 7, "gw|route|address", ipam(routes=[{"dst": "0.0.0.0/0", "gw": "x"}])),
    c("ipam-datadir-number", 7, "dataDir", ipam(dataDir=5)),
    # --- ptp ------------------------------------------------------------------------------
    c("ptp-mtu-string", 7, "mtu", ptp(mtu="x"), plugin="ptp"),
    c("ptp-ipmasq-string", 7, "ipMasq", ptp(ipMasq="true"), plugin="ptp"),
    c("ptp-no-ipam", 7, "ipam", {k: v for k, v in ptp().items() if k != "ipam"}, plugin="ptp"),
    # --- runtimeConfig / capabilities (portmap) -------------------------------------------
    c(
        "portmap-no-prev",
        7,
        "chained plugin",
        {
            "cniVersion": "1.0.0",
            "name": "pm",
            "type": "portmap",
            "runtimeConfig": {
                "portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "tcp"}]
            },
        },
        plugin="portmap",
    ),
    c(
        "portmap-mappings-string",
        7,
        "cannot unmarshal string into Go struct field .*portMappings",
        {
            "cniVersion": "1.0.0",
            "name": "pm",
            "type": "portmap",
            "runtimeConfig": {"portMappings": "x"},
        },
        plugin="portmap",
    ),
    c(
        "portmap-port-string",
        7,
        "cannot unmarshal string into .*hostPort of type int",
        {
            "cniVersion": "1.0.0",
            "name": "pm",
            "type": "portmap",
            "runtimeConfig": {
                "portMappings": [{"hostPort": "x", "containerPort": 80, "protocol": "tcp"}]
            },
        },
        plugin="portmap",
    ),
    c(
        "tuning-sysctl-not-allowed",
        7,
        "sysctl|allowed|net",
        {"cniVersion": "1.0.0", "name": "t", "type": "tuning", "sysctl": {"kernel.panic": "1"}},
        plugin="tuning",
    ),
    c(
        "tuning-sysctl-dotdot",
        7,
        "prevResult|sysctl",
        {
            "cniVersion": "1.0.0",
            "name": "t",
            "type": "tuning",
            "sysctl": {"net/../../kernel/panic": "1"},
        },
        plugin="tuning",
    ),
    c(
        "tuning-mac-bad",
        7,
        "mac|MAC",
        {"cniVersion": "1.0.0", "name": "t", "type": "tuning", "mac": "nope"},
        plugin="tuning",
    ),
    c(
        "bandwidth-negative",
        7,
        "cannot unmarshal number -1 into .*ingressRate of type uint64",
        {
            "cniVersion": "1.0.0",
            "name": "b",
            "type": "bandwidth",
            "ingressRate": -1,
            "ingressBurst": 10,
        },
        plugin="bandwidth",
    ),
    c(
        "bandwidth-string",
        7,
        "ingressRate|rate",
        {
            "cniVersion": "1.0.0",
            "name": "b",
            "type": "bandwidth",
            "ingressRate": "x",
            "ingressBurst": 10,
        },
        plugin="bandwidth",
    ),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("badcni")
    host = create_netns(unique("kbch", 30))
    cont = create_netns(unique("kbcc", 30))
    try:
        for ns in (host, cont):  # no IPv6 DAD: addresses settle at once (see tests.snapshot)
            for conf in ("all", "default"):
                nsexec(ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")
        bindir = tmp / "bin"
        install_plugins(str(bindir), socket_path=str(tmp / "no-daemon.sock"))
        w: dict[str, Any] = {
            "host": host,
            "cont": cont,
            "bin": bindir,
            "data": tmp / "ipam",
            "tmp": tmp,
        }
        # One good ADD and DEL first: the bridge exists from then on, as it does after a
        # failed ADD of Go's bridge plugin too (it is made before IPAM is asked).
        for cmd in ("ADD", "DEL"):
            code, out = run(w, Cni("warm-up", "bridge", bridge(), 0, "", {"CNI_COMMAND": cmd}))
            assert code == 0, out
        settle(lambda: take([host, cont], extra_dirs=[w["data"]]))
        yield w
    finally:
        delete_netns(cont)
        delete_netns(host)


def run(world: dict[str, Any], case: Cni) -> tuple[int, str]:
    data = case.stdin
    if isinstance(data, dict):
        data = json.dumps(data).replace("DATA", str(world["data"])).encode()
    env: dict[str, str] = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": f"/run/netns/{world['cont']}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(world["bin"]),
    }
    for k, v in case.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v

    def go() -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        runner = plugin_runner()
        code = Dispatcher(env, io.BytesIO(data), out, err, runner=runner).run(
            load_plugin(case.plugin)
        )
        return code, out.getvalue()

    result: tuple[int, str] = in_ns(world["host"], go)
    return result


@pytest.mark.parametrize("case", CASES, ids=[x.id for x in CASES])
def test_bad_cni(world: dict[str, Any], case: Cni) -> None:
    def snap() -> dict[str, Any]:
        return take([world["host"], world["cont"]], extra_dirs=[world["data"]])

    before = snap()
    code, out = run(world, case)
    if code == 0:  # accepted: undo it, so that the next cases start clean, then fail
        run(world, Cni(case.id, case.plugin, case.stdin, 0, "", {**case.env, "CNI_COMMAND": "DEL"}))
    assert code == 1, out
    err = json.loads(out)
    assert err["code"] == case.code, err
    text = f"{err['msg']}: {err.get('details', '')}"
    assert re.search(case.message, text), text
    assert "Traceback" not in out
    assert_unchanged(before, snap(), case.id)


def test_case_count() -> None:
    assert len({x.id for x in CASES}) == len(CASES) >= 80
