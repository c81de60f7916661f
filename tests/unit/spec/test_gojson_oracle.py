"""The Go plugins in /usr/lib/cni as the oracle of how a config is read (no root).

Each config is given to the Go plugin and to kanal's (in-process, through the
dispatcher) with the same environment. Only plugins that fail or answer before
touching any namespace are used: portmap and tuning without a prevResult (they
decode the whole config first, then stop), static (pure), host-local (files in a
temporary directory). The two must agree on what is accepted, on the result, and
on Go's own ``json: ...`` error text for a decoding error. Error codes may differ:
Go says 999 where kanal says 7 (invalid config) or 6 (undecodable), see README.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kanal.fastpath.standalone import plugin_runner
from kanal.plugins.registry import load_plugin
from kanal.skel.dispatcher import Dispatcher

GO = Path("/usr/lib/cni")
pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not os.access(GO / "portmap", os.X_OK), reason="Go plugins not installed"),
]

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "oracle",
    "CNI_NETNS": "/nonexistent/netns",
    "CNI_NETNS_OVERRIDE": "1",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": str(GO),
}


def run_go(plugin: str, stdin: bytes, env: dict[str, str] | None = None) -> tuple[int, Any]:
    p = subprocess.run(
        [str(GO / plugin)], input=stdin, env=env or ENV, capture_output=True, timeout=30
    )
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None


def run_kanal(plugin: str, stdin: bytes, env: dict[str, str] | None = None) -> tuple[int, Any]:
    out, err = io.StringIO(), io.StringIO()
    code = Dispatcher(env or ENV, io.BytesIO(stdin), out, err, runner=plugin_runner()).run(
        load_plugin(plugin)
    )
    text = out.getvalue()
    return code, json.loads(text) if text.strip() else None


def go_json_error(out: dict[str, Any]) -> str | None:
    """Go's decoding error inside a plugin's message ("...: json: cannot ...")."""
    m = re.search(r"(json: .*|invalid CIDR address: .*|invalid IP address: .*)$", out["msg"])
    return m.group(1) if m else None


def kanal_text(out: dict[str, Any]) -> str:
    return f"{out['msg']}: {out['details']}" if out.get("details") else str(out["msg"])


# --- portmap: the runtimeConfig capability and the plugin's own keys -----------------

PORTMAP = '{"cniVersion": "1.0.0", "name": "pm", "type": "portmap"%s}'


def mapping(*entries: str) -> str:
    return ', "runtimeConfig": {"portMappings": [' + ", ".join(entries) + "]}"


PORTMAP_CASES: list[tuple[str, str, str]] = [
    # (id, extra keys, expected category)
    ("containerd-keys", mapping('{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", '
                                '"HostIP": "127.0.0.1"}'), "accepted"),
    ("any-case", mapping('{"hostport": 8080, "CONTAINERPORT": 80}'), "accepted"),
    ("kelvin-k", mapping('{"host\u212aort": 1}'), "port"),
    ("exact-then-folded-last-wins", mapping('{"hosTPort": 8080, "containerPort": 80, '
                                            '"hostPort": 0}'), "port"),
    ("float-literal", mapping('{"hostPort": 80.0, "containerPort": 80}'), "decode"),
    ("exponent", mapping('{"hostPort": 1e2, "containerPort": 80}'), "decode"),
    ("overflow", mapping('{"hostPort": 99999999999999999999, "containerPort": 80}'), "decode"),
    ("string-port", mapping('{"hostPort": "80", "containerPort": 80}'), "decode"),
    ("null-port", mapping('{"hostPort": null, "containerPort": 80}'), "port"),
    ("null-after-value", mapping('{"hostPort": 8080, "containerPort": 80, "hostPort": null}'),
     "accepted"),
    ("outer-case", ', "RuntimeConfig": {"PortMappings": [{"HostPort": 1, "ContainerPort": 0}]}',
     "port"),
    ("repeated-merges", mapping('{"hostPort": 1, "containerPort": 2}')
     + mapping('{"containerPort": 3}'), "accepted"),
    ("repeated-longer", mapping('{"hostPort": 1, "containerPort": 2}')
     + mapping('{"containerPort": 3}', '{"hostPort": 5}'), "port"),
    ("unknown-keys", ', "whatever": [1, {"x": null}], "snat": true' + mapping(
        '{"hostPort": 1, "containerPort": 2, "extra": "x"}'), "accepted"),
    ("snat-string", ', "snat": "yes"', "decode"),
    ("first-error-wins", ', "markMasqBit": 1.5, "snat": "x"', "decode"),
    ("null-value-fields", ', "masqAll": null, "snat": null, "markMasqBit": null', "accepted"),
    ("bool-case", ', "SNAT": false, "MasqAll": true', "accepted"),
]  # fmt: skip


def category(plugin_out: dict[str, Any]) -> str:
    msg = f"{plugin_out['msg']} {plugin_out.get('details', '')}".lower()
    if "chained plugin" in msg or "prevresult missing" in msg:
        return "accepted"
    if "json:" in msg or "unmarshal" in msg:
        return "decode"
    if "port" in msg:
        return "port"
    return msg


@pytest.mark.parametrize(
    ("extra", "want"), [c[1:] for c in PORTMAP_CASES], ids=[c[0] for c in PORTMAP_CASES]
)
def test_portmap_reads_its_config_as_go(extra: str, want: str) -> None:
    stdin = (PORTMAP % extra).encode()
    go_code, go_out = run_go("portmap", stdin)
    k_code, k_out = run_kanal("portmap", stdin)
    assert go_code == 1 and k_code == 1  # nothing can succeed without a prevResult
    assert category(go_out) == want, go_out
    assert category(k_out) == want, k_out
    if want == "decode":
        assert k_out["details"] == go_json_error(go_out)


def test_skel_reads_the_name_with_gos_rules() -> None:
    stdin = b'{"cniVersion": "1.0.0", "name": 5, "type": "portmap"}'
    go_code, go_out = run_go("portmap", stdin)
    k_code, k_out = run_kanal("portmap", stdin)
    assert go_out["code"] == k_out["code"] == 6
    assert kanal_text(k_out) == go_out["msg"]
    stdin = b'{"cniVersion": "1.0.0", "NAME": "n", "type": "portmap"}'
    assert category(run_go("portmap", stdin)[1]) == category(run_kanal("portmap", stdin)[1])


# --- tuning ----------------------------------------------------------------------------

TUNING_CASES: list[tuple[str, str, str]] = [
    ("ok", '"sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1"}, "mtu": 1400', "accepted"),
    ("key-case", '"SysCtl": {"net.x": "1"}, "MTU": 1400, "Promisc": true', "accepted"),
    ("mtu-string", '"mtu": "1400"', "decode"),
    ("sysctl-number", '"sysctl": {"net.x": 1}', "decode"),
    ("args-case", '"ARGS": {"CNI": {"MTU": 1300, "Mac": "0a:00:00:00:00:01"}}', "accepted"),
    ("args-type", '"args": {"cni": {"promisc": "on"}}', "decode"),
    ("allmulti-null", '"allmulti": null', "accepted"),
]


@pytest.mark.parametrize(
    ("keys", "want"), [c[1:] for c in TUNING_CASES], ids=[c[0] for c in TUNING_CASES]
)
def test_tuning_reads_its_config_as_go(keys: str, want: str) -> None:
    stdin = ('{"cniVersion": "1.0.0", "name": "t", "type": "tuning", ' + keys + "}").encode()
    go_code, go_out = run_go("tuning", stdin)
    k_code, k_out = run_kanal("tuning", stdin)
    assert go_code == 1 and k_code == 1
    assert category(go_out) == want, go_out
    assert category(k_out) == want, k_out
    if want == "decode":
        assert k_out["details"] == go_json_error(go_out)


# --- static: results compared whole ------------------------------------------------------

STATIC = '{"cniVersion": "1.0.0", "name": "s", "type": "static"%s}'
STATIC_CASES: list[tuple[str, str]] = [
    ("any-case", ', "IPAM": {"Type": "static", "Addresses": [{"ADDRESS": "10.0.0.2/24", '
                 '"Gateway": "10.0.0.1"}]}'),
    ("exact-field-wins", ', "ipam": {"type": "static", "addresses": [{"Address": "10.0.0.2/24"}]}'),
    ("routes-dns-runtime", ', "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24"}],'
     ' "routes": [{"DST": "0.0.0.0/0", "GW": "10.0.0.1"}], "DNS": {"Nameservers": ["1.1.1.1"],'
     ' "Domain": "x"}}, "RuntimeConfig": {"IPs": ["10.0.0.9/24"]}'),
    ("args-case", ', "ipam": {"type": "static"}, "Args": {"CNI": {"IPs": ["10.0.0.7/24"]}}'),
    ("null-gateway", ', "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24", '
                     '"gateway": null}]}'),
    ("null-dst", ', "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24"}], '
                 '"routes": [{"dst": null}]}'),
    ("gateway-number", ', "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24", '
                       '"gateway": 5}]}'),
    ("gateway-bad", ', "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24", '
                    '"gateway": "10.0.0"}]}'),
    ("repeated-addresses", ', "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24", '
     '"gateway": "10.0.0.1"}], "addresses": [{"address": "10.0.0.3/24"}]}'),
    ("dup-ipam-merges", ', "ipam": {"type": "static", "dns": {"domain": "a"}}, "ipam": '
                        '{"addresses": [{"address": "10.0.0.4/24"}]}'),
]  # fmt: skip


def normalise(out: dict[str, Any]) -> dict[str, Any]:
    # Debian's Go build prints an empty "dns": {} at 1.0.0; current Go and kanal omit it.
    return {k: v for k, v in out.items() if not (k == "dns" and v == {})}


@pytest.mark.parametrize("extra", [c[1] for c in STATIC_CASES], ids=[c[0] for c in STATIC_CASES])
def test_static_reads_its_config_as_go(extra: str) -> None:
    stdin = (STATIC % extra).encode()
    go_code, go_out = run_go("static", stdin)
    k_code, k_out = run_kanal("static", stdin)
    assert go_code == k_code, (go_out, k_out)
    if go_code == 0:
        assert normalise(k_out) == normalise(go_out)
    else:
        assert kanal_text(k_out).endswith(go_json_error(go_out) or go_out["msg"]), (go_out, k_out)


def test_config_version_is_read_with_gos_rules() -> None:
    stdin = (
        b'{"CNIVersion": "0.4.0", "name": "s", "type": "static", "ipam": {"type": "static", '
        b'"addresses": [{"address": "10.0.0.2/24"}]}}'
    )
    go_out, k_out = run_go("static", stdin)[1], run_kanal("static", stdin)[1]
    assert go_out["cniVersion"] == k_out["cniVersion"] == "0.4.0"
    assert normalise(k_out) == normalise(go_out)


# --- host-local: the ipRanges/ips capabilities as containerd sends them -------------------


@pytest.mark.parametrize(
    "keys",
    [
        '"IPAM": {"Type": "host-local", "DataDir": "%s", "Ranges": [[{"Subnet": "10.9.0.0/24", '
        '"RangeStart": "10.9.0.10", "Gateway": "10.9.0.254"}]]}',
        '"ipam": {"type": "host-local", "dataDir": "%s"}, "runtimeConfig": {"ipRanges": '
        '[[{"Subnet": "10.9.0.0/24", "RangeStart": "10.9.0.20", "RangeEnd": "10.9.0.30"}]]}',
        '"ipam": {"type": "host-local", "dataDir": "%s", "subnet": "10.9.0.0/24"}, '
        '"RuntimeConfig": {"IPs": ["10.9.0.77/24"]}',
        '"ipam": {"type": "host-local", "dataDir": "%s", "Subnet": "10.9.0.0/24", '
        '"Routes": [{"Dst": "0.0.0.0/0"}], "routes": [{"dst": "10.1.0.0/16"}]}',
    ],
    ids=["any-case", "containerd-ipranges", "ips-capability", "legacy-range-and-repeat"],
)
def test_host_local_reads_its_config_as_go(tmp_path: Path, keys: str) -> None:
    results = []
    for side, run in (("go", run_go), ("kanal", run_kanal)):
        data = tmp_path / side
        stdin = ('{"cniVersion": "1.0.0", "name": "hl", ' + keys % data + "}").encode()
        code, out = run("host-local", stdin)
        assert code == 0, (side, out)
        results.append(normalise(out))
        assert sorted(p.name for p in (data / "hl").iterdir() if p.name[0].isdigit())
    assert results[0] == results[1]
