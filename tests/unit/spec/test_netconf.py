"""Plugin configs, conflists (libcni rules) and request building."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kanal.errors import DecodeError, InvalidConfig
from kanal.spec.netconf import (
    MAX_CONFIG_BYTES,
    NAME_RE,
    ConfList,
    GCAttachment,
    build_plugin_request,
    conf_to_conflist,
    parse_conflist,
    parse_plugin_conf,
    validate_network_name,
)


def js(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# --- network names ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mynet", "a", "net-1.2_x", "0", "a..b", "N" * 200], ids=repr)
def test_good_network_names(name: str) -> None:
    validate_network_name(name)
    assert NAME_RE.match(name)


@pytest.mark.parametrize(
    "name",
    [".", "..", "../etc", "a/b", "/x", "-x", ".x", "a b", "net\n", "n\x00", "né", "a:b"],
    ids=repr,
)
def test_bad_network_names(name: str) -> None:
    with pytest.raises(InvalidConfig) as ei:
        validate_network_name(name)
    assert ei.value.code == 7
    assert ei.value.msg == "invalid characters found in network name"
    assert ei.value.details == name


def test_empty_network_name() -> None:
    with pytest.raises(InvalidConfig, match="^missing network name$"):
        validate_network_name("")


# --- plugin conf --------------------------------------------------------------------

BRIDGE = {
    "cniVersion": "1.0.0",
    "name": "mynet",
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": True,
    "capabilities": {"portMappings": True, "ips": False},
    "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/16"}]]},
    "dns": {"nameservers": ["10.1.0.1"], "domain": "x", "search": [], "options": ["a"]},
    "runtimeConfig": {"portMappings": []},
    "args": {"cni": {"ips": ["10.1.0.5"]}},
    "prevResult": {"cniVersion": "1.0.0"},
    "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}],
}


@pytest.mark.parametrize("form", ["bytes", "str", "mapping"])
def test_parse_plugin_conf_full(form: str) -> None:
    data: Any = {"bytes": js(BRIDGE), "str": json.dumps(BRIDGE), "mapping": BRIDGE}[form]
    conf = parse_plugin_conf(data)
    assert conf.raw == BRIDGE
    assert conf.raw is not BRIDGE
    assert (conf.name, conf.cni_version, conf.type) == ("mynet", "1.0.0", "bridge")
    assert conf.capabilities == {"portMappings": True, "ips": False}
    assert conf.ipam["type"] == "host-local"
    assert conf.dns["nameservers"] == ["10.1.0.1"]
    assert conf.runtime_config == {"portMappings": []}
    assert conf.args == {"cni": {"ips": ["10.1.0.5"]}}
    assert conf.prev_result == {"cniVersion": "1.0.0"}
    assert conf.valid_attachments == [GCAttachment("c1", "eth0")]
    assert conf.raw["bridge"] == "cni0"  # unknown keys kept


def test_parse_plugin_conf_defaults() -> None:
    conf = parse_plugin_conf(b'{"name": "n", "type": "loopback"}')
    assert conf.cni_version == "0.1.0"
    assert "cniVersion" not in conf.raw
    assert conf.capabilities == conf.ipam == conf.dns == conf.runtime_config == conf.args == {}
    assert conf.prev_result is None
    assert conf.valid_attachments is None


def test_legacy_attachments_key() -> None:
    conf = parse_plugin_conf(
        {"name": "n", "type": "t", "cni.dev/attachments": [{"containerID": "c", "ifname": "e"}]}
    )
    assert conf.valid_attachments == [GCAttachment("c", "e")]
    conf = parse_plugin_conf({"name": "n", "type": "t", "cni.dev/valid-attachments": None})
    assert conf.valid_attachments == []


def test_plugin_object_without_name() -> None:
    assert parse_plugin_conf({"type": "portmap"}, require_name=False).name == ""
    with pytest.raises(InvalidConfig, match="missing network name"):
        parse_plugin_conf({"type": "portmap"})


BAD_CONFS: list[tuple[str, dict[str, Any], str]] = [
    ("no-type", {"name": "n"}, "missing 'type'"),
    ("empty-type", {"name": "n", "type": ""}, "missing 'type'"),
    ("type-number", {"name": "n", "type": 1}, "Go struct field NetConf.type of type string"),
    ("bad-name", {"name": "../x", "type": "t"}, "invalid characters found in network name"),
    ("name-number", {"name": 5, "type": "t"}, "field NetConf.name of type string"),
    (
        "version-number",
        {"name": "n", "type": "t", "cniVersion": 1.0},
        "cannot unmarshal number into Go struct field NetConf.cniVersion of type string",
    ),
    (
        "caps-list",
        {"name": "n", "type": "t", "capabilities": ["a"]},
        r"unmarshal array into Go struct field NetConf.capabilities of type map\[string\]bool",
    ),
    (
        "caps-string",
        {"name": "n", "type": "t", "capabilities": {"a": "yes"}},
        "cannot unmarshal string into Go struct field NetConf.capabilities of type bool",
    ),
    (
        "ipam-string",
        {"name": "n", "type": "t", "ipam": "host-local"},
        r"cannot unmarshal string into Go struct field NetConf.ipam of type types.IPAM",
    ),
    (
        "ipam-type-number",
        {"name": "n", "type": "t", "ipam": {"type": 1}},
        "Go struct field IPAM.ipam.type of type string",
    ),
    (
        "dns-list",
        {"name": "n", "type": "t", "dns": []},
        "unmarshal array into Go struct field NetConf.dns of type types.DNS",
    ),
    (
        "dns-ns-string",
        {"name": "n", "type": "t", "dns": {"nameservers": "1.1.1.1"}},
        "dns.nameservers",
    ),
    (
        "dns-domain-list",
        {"name": "n", "type": "t", "dns": {"domain": []}},
        "Go struct field DNS.dns.domain of type string",
    ),
    (
        "rc-list",
        {"name": "n", "type": "t", "runtimeConfig": []},
        "Go struct field NetConf.runtimeConfig of type map",
    ),
    (
        "args-string",
        {"name": "n", "type": "t", "args": "x"},
        "Go struct field NetConf.args of type map",
    ),
    (
        "prev-list",
        {"name": "n", "type": "t", "prevResult": []},
        "Go struct field NetConf.prevResult of type map",
    ),
    (
        "gc-string",
        {"name": "n", "type": "t", "cni.dev/valid-attachments": "x"},
        "valid-attachments",
    ),
    ("gc-item", {"name": "n", "type": "t", "cni.dev/valid-attachments": [1]}, "valid-attachments"),
    (
        "gc-fields",
        {"name": "n", "type": "t", "cni.dev/valid-attachments": [{"containerID": 1}]},
        "valid-attachments",
    ),
]


@pytest.mark.parametrize(("name", "conf", "match"), BAD_CONFS, ids=[b[0] for b in BAD_CONFS])
def test_bad_plugin_confs(name: str, conf: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidConfig, match=match) as ei:
        parse_plugin_conf(js(conf))
    assert ei.value.code == 7


@pytest.mark.parametrize(
    "data", [b"", b"{", b"[]", b"null", b'"s"', b"\xff", b"[" * 50_000], ids=repr
)
def test_undecodable_plugin_conf(data: bytes) -> None:
    with pytest.raises(DecodeError) as ei:
        parse_plugin_conf(data)
    assert ei.value.code == 6


def test_oversized_plugin_conf() -> None:
    big = js({"name": "n", "type": "t", "pad": "x" * MAX_CONFIG_BYTES})
    with pytest.raises(DecodeError, match="more than the 1048576 allowed"):
        parse_plugin_conf(big)


def test_config_just_under_the_limit_parses() -> None:
    base = js({"name": "n", "type": "t", "pad": ""})
    data = js({"name": "n", "type": "t", "pad": "x" * (MAX_CONFIG_BYTES - len(base))})
    assert len(data) == MAX_CONFIG_BYTES
    assert parse_plugin_conf(data).type == "t"


# --- conflist -----------------------------------------------------------------------

LIST = {
    "cniVersion": "1.0.0",
    "name": "mynet",
    "disableCheck": True,
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
        {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
    ],
}


def test_parse_conflist_keeps_everything() -> None:
    data = json.dumps(LIST, indent=2).encode() + b"\n"
    cl = parse_conflist(data, "/etc/cni/net.d/10-mynet.conflist")
    assert cl == ConfList(
        name="mynet",
        cni_version="1.0.0",
        cni_versions=[],
        disable_check=True,
        disable_gc=False,
        load_only_inlined_plugins=False,
        plugins=LIST["plugins"],  # type: ignore[arg-type]
        raw=LIST,
        bytes=data,
        source="/etc/cni/net.d/10-mynet.conflist",
    )
    assert cl.bytes is data


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"cniVersion": "0.4.0"}, "0.4.0"),
        ({}, ""),
        ({"cniVersion": ""}, ""),
        ({"cniVersion": "2.0.0"}, "2.0.0"),  # no cniVersions: taken as given
        ({"cniVersions": ["0.3.1", "1.0.0"]}, "1.0.0"),
        ({"cniVersion": "0.4.0", "cniVersions": ["1.0.0"]}, "1.0.0"),
        ({"cniVersion": "1.1.0", "cniVersions": ["1.0.0"]}, "1.1.0"),
        ({"cniVersion": "0.4.0", "cniVersions": ["1.2.0", "2.0.0"]}, "0.4.0"),
        ({"cniVersion": "3.0.0", "cniVersions": ["1.2.0"]}, "3.0.0"),
        ({"cniVersions": ["1.2.0"]}, ""),
        ({"cniVersions": []}, ""),
        ({"cniVersions": ["1.1.0", "0.3.0", "1.0.0"]}, "1.1.0"),
    ],
    ids=repr,
)
def test_conflist_version_selection(fields: dict[str, Any], expected: str) -> None:
    cl = parse_conflist(js({"name": "n", "plugins": [{"type": "t"}], **fields}))
    assert cl.cni_version == expected
    assert cl.cni_versions == fields.get("cniVersions", [])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("TRUE", True),
        ("False", False),
        ("false", False),
    ],
    ids=repr,
)
@pytest.mark.parametrize("key", ["disableCheck", "disableGC", "loadOnlyInlinedPlugins"])
def test_conflist_bools(key: str, value: Any, expected: bool) -> None:
    cl = parse_conflist(js({"name": "n", "plugins": [{"type": "t"}], key: value}))
    attr = {
        "disableCheck": "disable_check",
        "disableGC": "disable_gc",
        "loadOnlyInlinedPlugins": "load_only_inlined_plugins",
    }[key]
    assert getattr(cl, attr) is expected


BAD_LISTS: list[tuple[str, dict[str, Any], str]] = [
    ("no-name", {"plugins": [{"type": "t"}]}, "error parsing configuration list: no name"),
    ("name-int", {"name": 1, "plugins": [{"type": "t"}]}, "invalid name type float64"),
    ("empty-name", {"name": "", "plugins": [{"type": "t"}]}, "missing network name"),
    ("slash-name", {"name": "a/b", "plugins": [{"type": "t"}]}, "invalid characters"),
    ("dotdot-name", {"name": "..", "plugins": [{"type": "t"}]}, "invalid characters"),
    (
        "version-int",
        {"name": "n", "cniVersion": 1, "plugins": [{"type": "t"}]},
        "invalid cniVersion type",
    ),
    (
        "versions-str",
        {"name": "n", "cniVersions": "1.0.0", "plugins": [{"type": "t"}]},
        "invalid type for cniVersions: string",
    ),
    (
        "versions-int",
        {"name": "n", "cniVersions": ["1.0.0", 1], "plugins": [{"type": "t"}]},
        "invalid type for cniVersions index 1: float64",
    ),
    (
        "versions-bad",
        {"name": "n", "cniVersions": ["x"], "plugins": [{"type": "t"}]},
        "invalid cniVersions entry x at index 0",
    ),
    (
        "version-bad-with-list",
        {"name": "n", "cniVersion": "a.b", "cniVersions": ["1.0.0"], "plugins": [{"type": "t"}]},
        "invalid cniVersion a.b",
    ),
    (
        "bool-int",
        {"name": "n", "disableCheck": 1, "plugins": [{"type": "t"}]},
        "invalid type float64 for disableCheck",
    ),
    (
        "bool-word",
        {"name": "n", "disableGC": "yes", "plugins": [{"type": "t"}]},
        'invalid value "yes" for disableGC',
    ),
    ("no-plugins", {"name": "n"}, "no plugin configs found"),
    (
        "inlined-no-plugins",
        {"name": "n", "loadOnlyInlinedPlugins": True},
        "`loadOnlyInlinedPlugins` is true, and no 'plugins' key",
    ),
    ("empty-plugins", {"name": "n", "plugins": []}, "no plugins in list"),
    (
        "plugins-object",
        {"name": "n", "plugins": {"type": "t"}},
        "invalid 'plugins' type map\\[string\\]interface {}",
    ),
    ("plugin-string", {"name": "n", "plugins": ["bridge"]}, "failed to parse plugin config 0"),
    (
        "plugin-no-type",
        {"name": "n", "plugins": [{"type": "t"}, {"x": 1}]},
        "failed to parse plugin config 1: error parsing configuration: missing 'type'",
    ),
    (
        "plugin-bad-caps",
        {"name": "n", "plugins": [{"type": "t", "capabilities": []}]},
        "failed to parse plugin config 0",
    ),
]


@pytest.mark.parametrize(("name", "conf", "match"), BAD_LISTS, ids=[b[0] for b in BAD_LISTS])
def test_bad_conflists(name: str, conf: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidConfig, match=match) as ei:
        parse_conflist(js(conf))
    assert ei.value.code == 7


def test_conflist_without_plugins_when_runtime_loads_plugin_files() -> None:
    cl = parse_conflist(b'{"name": "n", "cniVersion": "1.0.0"}', require_plugins=False)
    assert cl.plugins == []
    with pytest.raises(InvalidConfig, match="loadOnlyInlinedPlugins"):
        parse_conflist(b'{"name": "n", "loadOnlyInlinedPlugins": "true"}', require_plugins=False)


@pytest.mark.parametrize("data", [b"", b"{", b"[1]", b"null", b"\xff"], ids=repr)
def test_undecodable_conflist(data: bytes) -> None:
    with pytest.raises(DecodeError, match="error parsing configuration list"):
        parse_conflist(data)


def test_oversized_conflist() -> None:
    with pytest.raises(DecodeError, match="more than the"):
        parse_conflist(b" " * (MAX_CONFIG_BYTES + 1))


def test_conflist_from_str() -> None:
    cl = parse_conflist(json.dumps(LIST))
    assert cl.bytes == json.dumps(LIST).encode()


# --- single .conf up-conversion -------------------------------------------------------


def test_conf_to_conflist() -> None:
    conf = {"cniVersion": "0.3.1", "name": "old", "type": "bridge", "bridge": "br0", "a<b": 1}
    cl = conf_to_conflist(js(conf), "/etc/cni/net.d/10-old.conf")
    assert (cl.name, cl.cni_version, cl.source) == ("old", "0.3.1", "/etc/cni/net.d/10-old.conf")
    assert cl.plugins == [conf]
    # libcni's synthesised bytes: json.Marshal of a map (sorted keys, compact, HTML-escaped)
    assert cl.bytes == (
        b'{"cniVersion":"0.3.1","name":"old","plugins":[{"a\\u003cb":1,"bridge":"br0",'
        b'"cniVersion":"0.3.1","name":"old","type":"bridge"}]}'
    )
    assert parse_conflist(cl.bytes).plugins == cl.plugins


def test_conf_to_conflist_without_version() -> None:
    cl = conf_to_conflist(b'{"name": "old", "type": "bridge"}')
    assert cl.cni_version == ""


@pytest.mark.parametrize(
    ("data", "exc"),
    [
        (b'{"name": "old"}', InvalidConfig),
        (b'{"type": "bridge"}', InvalidConfig),  # the list needs a name
        (b'{"name": "a/b", "type": "bridge"}', InvalidConfig),
        (b"[]", DecodeError),
        (b"nope", DecodeError),
    ],
    ids=repr,
)
def test_conf_to_conflist_errors(data: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        conf_to_conflist(data)


# --- request building ---------------------------------------------------------------


def _list(**over: Any) -> ConfList:
    return parse_conflist(js({**LIST, **over}))


def test_request_injects_name_and_version_and_keeps_unknown_keys() -> None:
    cl = _list()
    req = json.loads(build_plugin_request(cl, cl.plugins[0]))
    assert req == {
        "cniVersion": "1.0.0",
        "name": "mynet",
        "type": "bridge",
        "bridge": "cni0",
        "ipam": {"type": "host-local"},
    }


def test_request_overrides_plugin_name_and_version() -> None:
    cl = _list()
    plugin = {"type": "bridge", "name": "other", "cniVersion": "0.1.0"}
    req = json.loads(build_plugin_request(cl, plugin))
    assert (req["name"], req["cniVersion"]) == ("mynet", "1.0.0")
    assert plugin["name"] == "other"  # input untouched


def test_request_is_compact_sorted_go_json() -> None:
    cl = _list()
    out = build_plugin_request(cl, {"type": "t", "z": "<&>", "a": {"y": 1, "b": 2}})
    assert out == (
        b'{"a":{"b":2,"y":1},"cniVersion":"1.0.0","name":"mynet","type":"t",'
        b'"z":"\\u003c\\u0026\\u003e"}'
    )


def test_request_prev_result() -> None:
    cl = _list()
    prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]}
    req = json.loads(build_plugin_request(cl, cl.plugins[1], prev_result=prev))
    assert req["prevResult"] == prev
    assert "prevResult" not in json.loads(build_plugin_request(cl, cl.plugins[1]))


@pytest.mark.parametrize(
    ("caps", "cap_args", "expected"),
    [
        (
            {"portMappings": True},
            {"portMappings": [{"hostPort": 80}]},
            {"portMappings": [{"hostPort": 80}]},
        ),
        ({"portMappings": True}, {"bandwidth": {"ingressRate": 1}}, None),
        ({"portMappings": False}, {"portMappings": []}, None),
        ({}, {"portMappings": []}, None),
        (
            {"ips": True, "mac": True, "dns": False},
            {"ips": ["10.0.0.5/24"], "mac": "c2:11:22:33:44:55", "dns": {"servers": []}, "x": 1},
            {"ips": ["10.0.0.5/24"], "mac": "c2:11:22:33:44:55"},
        ),
        ({"portMappings": True}, {}, None),
        ({"portMappings": True}, None, None),
    ],
    ids=["match", "other-cap", "cap-false", "no-caps", "filter", "no-args", "none"],
)
def test_runtime_config_is_filtered_by_capabilities(
    caps: dict[str, bool], cap_args: dict[str, Any] | None, expected: dict[str, Any] | None
) -> None:
    cl = _list()
    req = json.loads(
        build_plugin_request(cl, {"type": "t", "capabilities": caps}, capability_args=cap_args)
    )
    assert req.get("runtimeConfig") == expected


def test_runtime_config_replaces_or_keeps_the_plugins_own() -> None:
    cl = _list()
    plugin = {"type": "t", "capabilities": {"mac": True}, "runtimeConfig": {"old": 1}}
    kept = json.loads(build_plugin_request(cl, plugin, capability_args={"ips": []}))
    assert kept["runtimeConfig"] == {"old": 1}
    replaced = json.loads(build_plugin_request(cl, plugin, capability_args={"mac": "x"}))
    assert replaced["runtimeConfig"] == {"mac": "x"}


def test_extra_keys_for_gc() -> None:
    cl = _list(cniVersion="1.1.0")
    att = [{"containerID": "c1", "ifname": "eth0"}]
    req = json.loads(
        build_plugin_request(
            cl, cl.plugins[0], extra={"cni.dev/valid-attachments": att, "cni.dev/attachments": att}
        )
    )
    assert req["cni.dev/valid-attachments"] == att
    assert req["cni.dev/attachments"] == att
    parsed = parse_plugin_conf(json.dumps(req))
    assert parsed.valid_attachments == [GCAttachment("c1", "eth0")]


@pytest.mark.parametrize(
    ("plugin", "extra", "match"),
    [
        ({"type": "t"}, {"": 1}, "keys cannot be empty"),
        ({"type": "t"}, {"k": None}, "key 'k' value must not be nil"),
        ({"x": 1}, None, "missing 'type'"),
        ({"type": "t", "capabilities": ["a"]}, None, "NetConf.capabilities of type map"),
    ],
    ids=["empty-key", "none-value", "no-type", "bad-caps"],
)
def test_request_errors(plugin: dict[str, Any], extra: dict[str, Any] | None, match: str) -> None:
    with pytest.raises(InvalidConfig, match=match):
        build_plugin_request(_list(), plugin, extra=extra)


def test_request_parses_as_plugin_conf_for_every_plugin() -> None:
    cl = _list()
    for plugin in cl.plugins:
        conf = parse_plugin_conf(build_plugin_request(cl, plugin))
        assert (conf.name, conf.cni_version, conf.type) == ("mynet", "1.0.0", plugin["type"])
