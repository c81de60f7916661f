"""Rendering, parsing and converting results across every spec version."""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from kanal.errors import DecodeError, IncompatibleVersion, Internal
from kanal.spec import convert as convert_mod
from kanal.spec.convert import (
    convert_result,
    converter,
    decode_wire,
    dumps,
    encode_wire,
    parse_result,
    render_result,
)
from kanal.spec.types import DNS, Interface, IPConfig, Result, Route, parse_cidr, parse_ip
from kanal.spec.versions import ALL_VERSIONS
from tests.unit.spec._data import V02, V04, V1, full_result, full_wire, ordered

PAIRS = [(a, b) for a, b in itertools.product(ALL_VERSIONS, ALL_VERSIONS)]
PAIR_IDS = [f"{a}->{b}" for a, b in PAIRS]


# --- render: the exact wire shape per version ---------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_render_full_result_matches_go_shape_and_key_order(version: str) -> None:
    got = render_result(full_result(), version)
    assert ordered(got) == ordered(full_wire(version))


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_render_does_not_mutate_the_model(version: str) -> None:
    r = full_result()
    render_result(r, version)
    assert r == full_result()


def test_render_empty_version_means_010() -> None:
    assert render_result(full_result(), "")["cniVersion"] == "0.1.0"


@pytest.mark.parametrize("version", ["9.9.9", "1.0", "0.3", "x"], ids=str)
def test_render_unknown_version_is_incompatible(version: str) -> None:
    with pytest.raises(
        IncompatibleVersion, match=f"no converter for CNI result version 1.1.0 to {version}"
    ):
        render_result(full_result(), version)


# --- omitempty per version ----------------------------------------------------------


def minimal() -> Result:
    return Result(ips=[IPConfig(parse_cidr("10.0.0.2/24"))])


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        *[(v, {"cniVersion": v, "ip4": {"ip": "10.0.0.2/24"}, "dns": {}}) for v in V02],
        *[
            (v, {"cniVersion": v, "ips": [{"version": "4", "address": "10.0.0.2/24"}], "dns": {}})
            for v in V04
        ],
        *[(v, {"cniVersion": v, "ips": [{"address": "10.0.0.2/24"}]}) for v in V1],
    ],
    ids=ALL_VERSIONS,
)
def test_minimal_result_omits_empty_fields(version: str, expected: dict[str, Any]) -> None:
    assert ordered(render_result(minimal(), version)) == ordered(expected)


@pytest.mark.parametrize("version", V04 + V1, ids=V04 + V1)
def test_interface_index_zero_is_printed_and_none_is_omitted(version: str) -> None:
    r = Result(
        ips=[IPConfig(parse_cidr("10.0.0.2/24"), interface=0), IPConfig(parse_cidr("fd00::2/64"))]
    )
    ips = render_result(r, version)["ips"]
    assert ips[0]["interface"] == 0
    assert "interface" not in ips[1]


@pytest.mark.parametrize("version", V04 + V1, ids=V04 + V1)
def test_route_table_and_scope_zero_are_printed(version: str) -> None:
    r = Result(
        ips=[IPConfig(parse_cidr("10.0.0.2/24"))],
        routes=[
            Route(parse_cidr("10.1.0.0/16"), table=0, scope=0),
            Route(parse_cidr("10.2.0.0/16")),
        ],
    )
    routes = render_result(r, version)["routes"]
    assert routes == [{"dst": "10.1.0.0/16", "table": 0, "scope": 0}, {"dst": "10.2.0.0/16"}]


@pytest.mark.parametrize("version", V1, ids=V1)
def test_1x_empty_dns_is_omitted_nonempty_is_printed(version: str) -> None:
    r = minimal()
    assert "dns" not in render_result(r, version)
    r.dns = DNS(domain="x")
    assert render_result(r, version)["dns"] == {"domain": "x"}


@pytest.mark.parametrize("version", V02 + V04, ids=V02 + V04)
def test_0x_empty_dns_is_printed_as_empty_object(version: str) -> None:
    assert render_result(minimal(), version)["dns"] == {}


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_ipam_result_has_no_interfaces(version: str) -> None:
    r = Result(
        ips=[IPConfig(parse_cidr("10.0.0.2/24"), parse_ip("10.0.0.1"))],
        routes=[Route(parse_cidr("0.0.0.0/0"))],
    )
    wire = render_result(r, version)
    assert "interfaces" not in wire
    for ip in wire.get("ips", []):
        assert "interface" not in ip


def test_host_bits_are_kept_and_ipv6_is_canonical() -> None:
    r = Result(
        ips=[
            IPConfig(parse_cidr("10.0.0.5/24")),
            IPConfig(parse_cidr("2001:DB8:0:0:0:0:0:1/64"), parse_ip("2001:db8:0::0:ff")),
        ],
        routes=[Route(parse_cidr("10.1.2.3/16"))],
    )
    wire = render_result(r, "1.1.0")
    assert [i["address"] for i in wire["ips"]] == ["10.0.0.5/24", "2001:db8::1/64"]
    assert wire["ips"][1]["gateway"] == "2001:db8::ff"
    assert wire["routes"] == [{"dst": "10.1.2.3/16"}]


# --- round trips --------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_wire_round_trip_is_identity(version: str) -> None:
    wire = full_wire(version)
    for data in (wire, json.dumps(wire), json.dumps(wire).encode(), dumps(wire)):
        assert ordered(render_result(parse_result(data), version)) == ordered(wire)


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
def test_parse_records_wire_version(version: str) -> None:
    assert parse_result(full_wire(version)).cni_version == version


@pytest.mark.parametrize("version", V1, ids=V1)
def test_1x_parse_gives_back_the_full_model(version: str) -> None:
    got = parse_result(full_wire(version))
    expected = full_result()
    expected.cni_version = version
    assert got == expected


@pytest.mark.parametrize("version", V04, ids=V04)
def test_04x_parse_loses_only_the_11_interface_fields(version: str) -> None:
    got = parse_result(full_wire(version))
    expected = full_result()
    expected.cni_version = version
    expected.interfaces[0] = Interface("eth0", "00:11:22:33:44:55", "/proc/3553/ns/net")
    assert got == expected


@pytest.mark.parametrize("version", V02, ids=V02)
def test_02x_parse_model(version: str) -> None:
    got = parse_result(full_wire(version))
    assert got.interfaces == []
    assert [str(i.address) for i in got.ips] == ["1.2.3.30/24", "abcd:1234:ffff::cdde/64"]
    assert [i.version for i in got.ips] == ["4", "6"]
    assert [i.interface for i in got.ips] == [None, None]
    # ip4 routes first, then ip6 routes (Go convertFrom02x)
    assert [str(r.dst) for r in got.routes] == ["15.5.6.0/24", "0.0.0.0/0", "1111:dddd::/80"]
    assert got.dns == full_result().dns


# --- every conversion direction ------------------------------------------------------


def _expected_conversion(src: str, dst: str) -> dict[str, Any]:
    """What Go produces converting full_wire(src) to dst."""
    if dst in V02:
        return full_wire(dst)
    if src in V02:
        # Up from 0.2.x: no interfaces, two IPs, routes concatenated per family, no extras.
        out: dict[str, Any] = {"cniVersion": dst}
        ips = [
            {"address": "1.2.3.30/24", "gateway": "1.2.3.1"},
            {"address": "abcd:1234:ffff::cdde/64", "gateway": "abcd:1234:ffff::1"},
        ]
        if dst in V04:
            ips = [{"version": v, **ip} for v, ip in zip(("4", "6"), ips)]
        out["ips"] = ips
        out["routes"] = [
            {"dst": "15.5.6.0/24", "gw": "15.5.6.8"},
            {"dst": "0.0.0.0/0", "gw": "1.2.3.1"},
            {"dst": "1111:dddd::/80", "gw": "1111:dddd::aaaa"},
        ]
        out["dns"] = full_wire(dst)["dns"]
        return out
    if src in V04 and dst in V1:
        out = full_wire(dst)
        out["interfaces"][0] = {
            "name": "eth0",
            "mac": "00:11:22:33:44:55",
            "sandbox": "/proc/3553/ns/net",
        }
        return out
    return full_wire(dst)


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=PAIR_IDS)
def test_convert_result_every_direction(src: str, dst: str) -> None:
    got = convert_result(full_wire(src), dst)
    assert ordered(got) == ordered(_expected_conversion(src, dst))


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=PAIR_IDS)
def test_model_path_agrees_with_direct_conversion(src: str, dst: str) -> None:
    """parse -> render gives what Go's direct converter chain gives, for consistent data."""
    direct = convert_result(full_wire(src), dst)
    via_model = render_result(parse_result(full_wire(src)), dst)
    assert ordered(via_model) == ordered(direct)


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=PAIR_IDS)
def test_convert_does_not_mutate_input(src: str, dst: str) -> None:
    wire = full_wire(src)
    before = copy.deepcopy(wire)
    convert_result(wire, dst)
    assert wire == before


def test_11_to_10_copies_the_11_only_fields() -> None:
    got = convert_result(full_wire("1.1.0"), "1.0.0")
    assert got["interfaces"][0]["mtu"] == 1500
    assert got["interfaces"][0]["socketPath"] == "/path/to/vhost/fd"
    assert got["interfaces"][0]["pciID"] == "8086:9a01"
    assert got["routes"][2] == {
        "dst": "0.0.0.0/0",
        "gw": "1.2.3.1",
        "mtu": 1400,
        "advmss": 1360,
        "priority": 10,
        "table": 100,
        "scope": 0,
    }


@pytest.mark.parametrize("dst", V04, ids=V04)
def test_11_to_04x_drops_interface_fields_keeps_route_fields(dst: str) -> None:
    got = convert_result(full_wire("1.1.0"), dst)
    for iface in got["interfaces"]:
        assert set(iface) <= {"name", "mac", "sandbox"}
    assert got["routes"][2]["advmss"] == 1360  # Go's shared types.Route


@pytest.mark.parametrize("src", V04 + V1, ids=V04 + V1)
@pytest.mark.parametrize("dst", V02, ids=V02)
def test_down_to_02x_keeps_first_ip_per_family(src: str, dst: str) -> None:
    r = Result(
        ips=[
            IPConfig(parse_cidr("10.0.0.2/24"), parse_ip("10.0.0.1")),
            IPConfig(parse_cidr("10.0.1.2/24"), parse_ip("10.0.1.1")),
            IPConfig(parse_cidr("fd00::2/64")),
            IPConfig(parse_cidr("fd01::2/64")),
        ]
    )
    got = convert_result(render_result(r, src), dst)
    assert got["ip4"] == {"ip": "10.0.0.2/24", "gateway": "10.0.0.1"}
    assert got["ip6"] == {"ip": "fd00::2/64"}


@pytest.mark.parametrize("src", V04 + V1, ids=V04 + V1)
@pytest.mark.parametrize("dst", V02, ids=V02)
def test_down_to_02x_drops_route_of_family_without_ip(src: str, dst: str) -> None:
    r = Result(
        interfaces=[Interface("eth0")],
        ips=[IPConfig(parse_cidr("10.0.0.2/24"), interface=0)],
        routes=[
            Route(parse_cidr("fd00::/8"), parse_ip("fd00::1")),
            Route(parse_cidr("0.0.0.0/0"), parse_ip("10.0.0.1"), mtu=1400, table=5),
        ],
    )
    got = convert_result(render_result(r, src), dst)
    assert ordered(got) == ordered(
        {
            "cniVersion": dst,
            "ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]},
            "dns": {},
        }
    )


@pytest.mark.parametrize("src", V04 + V1, ids=V04 + V1)
@pytest.mark.parametrize("dst", V02, ids=V02)
def test_down_to_02x_without_ips_fails(src: str, dst: str) -> None:
    r = Result(interfaces=[Interface("eth0")], routes=[Route(parse_cidr("0.0.0.0/0"))])
    with pytest.raises(Internal, match=r"^cannot convert: no valid IP addresses$"):
        convert_result(render_result(r, src), dst)
    with pytest.raises(Internal, match="no valid IP addresses"):
        render_result(r, dst)


@pytest.mark.parametrize("dst", V02, ids=V02)
def test_04x_to_02x_trusts_the_sent_version_field(dst: str) -> None:
    """Go's convertTo02x reads ips[].version, not the address family."""
    wire = {
        "cniVersion": "0.4.0",
        "ips": [
            {"version": "", "address": "10.0.0.9/24"},
            {"version": "6", "address": "10.0.0.2/24"},
        ],
    }
    got = convert_result(wire, dst)
    assert "ip4" not in got
    assert got["ip6"] == {"ip": "10.0.0.2/24"}


def test_04x_ip_without_version_only_cannot_convert_down() -> None:
    with pytest.raises(Internal):
        convert_result({"cniVersion": "0.4.0", "ips": [{"address": "10.0.0.2/24"}]}, "0.2.0")


def test_up_from_1x_to_04x_derives_version_from_address() -> None:
    wire = {"cniVersion": "1.0.0", "ips": [{"address": "fd00::1/64"}, {"address": "1.2.3.4/8"}]}
    got = convert_result(wire, "0.4.0")
    assert [ip["version"] for ip in got["ips"]] == ["6", "4"]


@pytest.mark.parametrize("src", V02, ids=V02)
@pytest.mark.parametrize("dst", V04 + V1, ids=V04 + V1)
def test_up_from_02x_with_only_ip6(src: str, dst: str) -> None:
    wire = {"cniVersion": src, "ip6": {"ip": "fd00::2/64", "routes": [{"dst": "::/0"}]}}
    got = convert_result(wire, dst)
    assert [ip["address"] for ip in got["ips"]] == ["fd00::2/64"]
    assert got["routes"] == [{"dst": "::/0"}]
    assert "interfaces" not in got


def test_convert_to_empty_version_means_010() -> None:
    assert convert_result(full_wire("1.1.0"), "")["cniVersion"] == "0.1.0"


def test_convert_to_unknown_version() -> None:
    with pytest.raises(
        IncompatibleVersion, match="no converter for CNI result version 0.4.0 to 2.0.0"
    ):
        convert_result(full_wire("0.4.0"), "2.0.0")


# --- the registry itself ----------------------------------------------------------


def test_registry_covers_every_pair_of_distinct_versions() -> None:
    missing = [(a, b) for a, b in PAIRS if a != b and (a, b) not in convert_mod._CONVERTERS]
    assert missing == []


def test_registering_a_pair_twice_fails() -> None:
    with pytest.raises(RuntimeError, match="converter already registered for 0.4.0 to 1.0.0"):

        @converter(from_="0.4.0", to=["1.0.0"])
        def _dup(r: Any, to: str) -> Any:
            return r


def test_same_version_conversion_is_identity() -> None:
    obj = decode_wire(full_wire("0.4.0"))
    assert convert_mod.convert(obj, "0.4.0") is obj
    assert ordered(encode_wire(obj)) == ordered(full_wire("0.4.0"))


# --- decoding: versions --------------------------------------------------------------


def test_missing_cni_version_is_010() -> None:
    r = parse_result({"ip4": {"ip": "10.0.0.2/24"}})
    assert r.cni_version == "0.1.0"
    assert [str(i.address) for i in r.ips] == ["10.0.0.2/24"]


@pytest.mark.parametrize("version", ALL_VERSIONS, ids=ALL_VERSIONS)
@pytest.mark.parametrize("raw", [None, ""], ids=["missing", "empty"])
def test_config_version_stands_in_for_missing_result_version(version: str, raw: str | None) -> None:
    wire = full_wire(version)
    if raw is None:
        del wire["cniVersion"]
    else:
        wire["cniVersion"] = raw
    r = parse_result(wire, version)
    assert r.cni_version == version
    assert ordered(render_result(r, version)) == ordered(full_wire(version))


def test_result_version_wins_over_config_version_by_default() -> None:
    r = parse_result(full_wire("0.4.0"), "1.0.0")
    assert r.cni_version == "0.4.0"
    assert r.interfaces[0].name == "eth0"


@pytest.mark.parametrize(
    ("data_version", "conf_version", "ok"),
    [
        ("1.1.0", "1.0.0", True),
        ("1.0.0", "1.1.0", True),
        ("0.3.1", "0.4.0", True),
        ("0.1.0", "0.2.0", True),
        ("0.4.0", "1.0.0", False),
        ("1.0.0", "0.4.0", False),
        ("0.2.0", "0.3.0", False),
    ],
    ids=str,
)
def test_same_family_is_go_parse_prev_result(
    data_version: str, conf_version: str, ok: bool
) -> None:
    wire = full_wire(data_version)
    if ok:
        assert parse_result(wire, conf_version, same_family=True).cni_version == data_version
    else:
        with pytest.raises(IncompatibleVersion, match="but unmarshalled CNIVersion is"):
            parse_result(wire, conf_version, same_family=True)


def test_same_family_message_is_gos() -> None:
    with pytest.raises(IncompatibleVersion) as ei:
        parse_result(full_wire("0.4.0"), "1.0.0", same_family=True)
    assert (
        ei.value.msg == 'result type supports [1.0.0 1.1.0] but unmarshalled CNIVersion is "0.4.0"'
    )


@pytest.mark.parametrize("version", ["1.2.0", "0.5.0", "1.0", "banana"], ids=str)
def test_unknown_result_version(version: str) -> None:
    with pytest.raises(IncompatibleVersion, match=f'unsupported CNI result version "{version}"'):
        parse_result({"cniVersion": version})


# --- decoding: fields ----------------------------------------------------------------


def test_unknown_keys_and_nulls_are_tolerated() -> None:
    r = parse_result(
        {
            "cniVersion": "1.0.0",
            "whatever": [1, 2],
            "interfaces": None,
            "ips": [{"address": "10.0.0.2/24", "gateway": None, "interface": None, "version": "4"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "", "table": None}],
            "dns": None,
        }
    )
    assert r == Result(
        "1.0.0",
        ips=[IPConfig(parse_cidr("10.0.0.2/24"))],
        routes=[Route(parse_cidr("0.0.0.0/0"))],
    )


BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("ips-not-list", {"ips": {}}),
    ("ip-not-object", {"ips": ["10.0.0.2/24"]}),
    ("address-missing", {"ips": [{"gateway": "10.0.0.1"}]}),
    ("address-number", {"ips": [{"address": 5}]}),
    ("address-no-prefix", {"ips": [{"address": "10.0.0.2"}]}),
    ("address-netmask", {"ips": [{"address": "10.0.0.2/255.255.255.0"}]}),
    ("address-zone", {"ips": [{"address": "fe80::1%eth0/64"}]}),
    ("address-prefix-too-long-v4", {"ips": [{"address": "10.0.0.2/33"}]}),
    ("address-prefix-too-long-v6", {"ips": [{"address": "fd00::1/129"}]}),
    ("address-leading-zero", {"ips": [{"address": "10.0.0.02/24"}]}),
    ("address-spaces", {"ips": [{"address": " 10.0.0.2/24"}]}),
    ("gateway-bad", {"ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0"}]}),
    ("gateway-cidr", {"ips": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1/24"}]}),
    ("interface-string", {"ips": [{"address": "10.0.0.2/24", "interface": "0"}]}),
    ("interface-bool", {"ips": [{"address": "10.0.0.2/24", "interface": True}]}),
    ("interface-float", {"ips": [{"address": "10.0.0.2/24", "interface": 0.5}]}),
    ("interfaces-not-list", {"interfaces": "eth0"}),
    ("interface-name-number", {"interfaces": [{"name": 1}]}),
    ("route-not-object", {"routes": ["0.0.0.0/0"]}),
    ("route-dst-missing", {"routes": [{"gw": "10.0.0.1"}]}),
    ("route-table-string", {"routes": [{"dst": "0.0.0.0/0", "table": "main"}]}),
    ("dns-not-object", {"dns": []}),
    ("dns-nameservers-string", {"dns": {"nameservers": "1.1.1.1"}}),
    ("dns-search-numbers", {"dns": {"search": [1]}}),
    ("dns-domain-list", {"dns": {"domain": ["a"]}}),
]


@pytest.mark.parametrize("version", V04 + V1, ids=V04 + V1)
@pytest.mark.parametrize(("name", "body"), BAD_FIELDS, ids=[n for n, _ in BAD_FIELDS])
def test_bad_fields_are_decode_errors(version: str, name: str, body: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as ei:
        parse_result({"cniVersion": version, **body})
    assert ei.value.code == 6


@pytest.mark.parametrize("version", V1, ids=V1)
@pytest.mark.parametrize(
    "iface",
    [{"name": "a", "mtu": "1500"}, {"name": "a", "socketPath": 1}, {"name": "a", "pciID": []}],
    ids=["mtu", "socketPath", "pciID"],
)
def test_bad_11_interface_fields(version: str, iface: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        parse_result({"cniVersion": version, "interfaces": [iface]})


@pytest.mark.parametrize("version", V04, ids=V04)
def test_04x_ignores_11_interface_fields_like_go(version: str) -> None:
    r = parse_result({"cniVersion": version, "interfaces": [{"name": "a", "mtu": "junk"}]})
    assert r.interfaces == [Interface("a")]


BAD_020: list[tuple[str, dict[str, Any]]] = [
    ("ip4-not-object", {"ip4": "10.0.0.2/24"}),
    ("ip-missing", {"ip4": {"gateway": "10.0.0.1"}}),
    ("ip-bad", {"ip6": {"ip": "fd00::1"}}),
    ("routes-not-list", {"ip4": {"ip": "10.0.0.2/24", "routes": {}}}),
    ("route-dst-bad", {"ip4": {"ip": "10.0.0.2/24", "routes": [{"dst": "x"}]}}),
]


@pytest.mark.parametrize("version", V02, ids=V02)
@pytest.mark.parametrize(("name", "body"), BAD_020, ids=[n for n, _ in BAD_020])
def test_bad_020_fields_are_decode_errors(version: str, name: str, body: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        parse_result({"cniVersion": version, **body})


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b'{"cniVersion": NaN}', b"[" * 100_000],
    ids=["empty", "truncated", "array", "null", "string", "not-utf8", "nan", "deep"],
)
def test_bad_json_is_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        parse_result(data)


def test_cni_version_must_be_string() -> None:
    with pytest.raises(DecodeError, match="cniVersion"):
        parse_result({"cniVersion": 1.0})


def test_decode_error_is_gos_text() -> None:
    # IPConfig decodes itself (UnmarshalJSON); Go names the outer field of the error.
    with pytest.raises(DecodeError) as ei:
        parse_result({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24"}, {"address": 7}]})
    assert ei.value.details == (
        "json: cannot unmarshal number into Go struct field Result.ips of type string"
    )
    with pytest.raises(DecodeError) as ei:
        parse_result(b'{"cniVersion": "1.0.0", "interfaces": [{"name": "a", "mtu": 1.5}]}')
    assert ei.value.details == (
        "json: cannot unmarshal number 1.5 into Go struct field Interface.interfaces.mtu "
        "of type int"
    )
    with pytest.raises(DecodeError) as ei:
        parse_result({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1"}]})
    assert ei.value.details == "invalid CIDR address: 10.0.0.1"


# --- dumps ---------------------------------------------------------------------------


def test_dumps_is_go_marshal_indent() -> None:
    obj = {"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}], "dns": {}, "x": []}
    assert dumps(obj) == (
        b'{\n    "cniVersion": "1.1.0",\n    "ips": [\n        {\n'
        b'            "address": "10.0.0.2/24"\n        }\n    ],\n'
        b'    "dns": {},\n    "x": []\n}'
    )


def test_dumps_compact_and_go_escaping() -> None:
    obj = {"msg": "a<b>&c \u2028 é ☃", "n": 1}
    assert dumps(obj, compact=True) == (
        '{"msg":"a\\u003cb\\u003e\\u0026c \\u2028 é ☃","n":1}'.encode()
    )
    assert json.loads(dumps(obj)) == obj


def test_dumps_replaces_lone_surrogates() -> None:
    assert json.loads(dumps({"m": "a\udc80b"})) == {"m": "a\ufffdb"}


def test_dumps_of_rendered_result_parses_back() -> None:
    for v in ALL_VERSIONS:
        data = dumps(render_result(full_result(), v))
        assert ordered(json.loads(data)) == ordered(full_wire(v))
