"""Go's encoding/json decoding rules, one by one (kanal.spec.gojson).

Each expectation is what Go's decoder gives for the same input; the oracle tests
(test_gojson_oracle.py) check the same rules end to end against the Go plugins.
"""

from __future__ import annotations

from typing import Any

import pytest

from kanal.errors import DecodeError, InvalidConfig
from kanal.spec.gojson import (
    ANY,
    BOOL,
    FLOAT64,
    INT,
    STRING,
    UINT32,
    GoObject,
    Map,
    Ptr,
    Slice,
    Struct,
    decode,
    decode_lenient,
    fold,
    loads,
)
from kanal.spec.gotypes import IP, IPNET, ROUTE

ENTRY = Struct(
    "PortMapEntry",
    [("hostPort", INT), ("containerPort", INT), ("protocol", STRING), ("hostIP", STRING)],
)
CONF = Struct(
    "PortMapConf",
    [
        ("name", STRING),
        ("snat", Ptr(BOOL)),
        ("masqAll", BOOL),
        ("markMasqBit", Ptr(INT)),
        ("conditionsV4", Ptr(Slice(STRING))),
        ("owner", Ptr(UINT32)),
        ("rate", FLOAT64),
        ("sysctl", Map(STRING)),
        ("prevResult", Map(ANY)),
        ("runtimeConfig", Struct("", [("portMappings", Slice(ENTRY))], pkg="")),
    ],
)


def dec(text: str, spec: Struct = CONF) -> tuple[dict[str, Any], str | None]:
    out, err = decode_lenient(spec, loads(text))
    assert isinstance(out, dict)
    return out, err


def mappings(text: str) -> list[dict[str, Any]]:
    out, err = dec('{"runtimeConfig": {"portMappings": [' + text + "]}}")
    assert err is None, err
    return list(out["runtimeConfig"]["portMappings"])


# --- keys ----------------------------------------------------------------------------


def test_keys_match_case_insensitively_as_containerd_sends_them() -> None:
    (m,) = mappings('{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": "::1"}')
    assert m == {"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "::1"}
    out, _ = dec('{"RUNTIMECONFIG": {"PORTMAPPINGS": [{"hostport": 1}]}}')
    assert out["runtimeConfig"]["portMappings"][0]["hostPort"] == 1


def test_kelvin_and_long_s_fold_like_go() -> None:
    # U+212A KELVIN SIGN folds to "k", U+017F LONG S to "s" (Go's equalFoldRight)
    assert fold("\u212a\u017f") == "ks"
    (m,) = mappings('{"ho\u017ftPort": 1, "containerPort": 2}')
    assert m["hostPort"] == 1
    out, _ = dec('{"m\u00e1sqAll": true}')  # "á" folds to no ASCII letter: unknown
    assert out["masqAll"] is False
    out, _ = dec('{"masqAll": true, "MASQALL": false}')
    assert out["masqAll"] is False
    # other non-ASCII letters never match an ASCII name (no full case folding: ß)
    assert fold("Straße") == "straße"


def test_exact_match_is_preferred_over_a_folded_one() -> None:
    spec = Struct("S", [("mac", STRING), ("MAC", STRING)])
    out, _ = decode_lenient(spec, {"MAC": "a", "mac": "b"})
    assert out == {"mac": "b", "MAC": "a"}
    # A key matching no name exactly goes to the first field that folds equal.
    out, _ = decode_lenient(spec, {"Mac": "c"})
    assert out == {"mac": "c", "MAC": ""}


def test_unknown_keys_are_ignored() -> None:
    out, err = dec('{"name": "n", "whatever": {"deep": [1, 2]}, "hostPort": 5}')
    assert err is None and out["name"] == "n"


# --- duplicates and order ------------------------------------------------------------


def test_last_duplicate_wins_in_document_order() -> None:
    out, _ = dec('{"name": "a", "NAME": "b", "name": "c"}')
    assert out["name"] == "c"
    out, _ = dec('{"name": "a", "Name": "b"}')
    assert out["name"] == "b"  # a folded key after an exact one still wins: it is later


def test_a_repeated_object_merges_into_the_struct() -> None:
    out, _ = dec(
        '{"runtimeConfig": {"portMappings": [{"hostPort": 1, "containerPort": 2}]},'
        ' "runtimeConfig": {"portMappings": [{"containerPort": 3}]}}'
    )
    # the second array decodes into the first's element 0: hostPort is kept (Go)
    assert out["runtimeConfig"]["portMappings"] == [
        {"hostPort": 1, "containerPort": 3, "protocol": "", "hostIP": ""}
    ]
    out, _ = dec('{"sysctl": {"a": "1", "b": "2"}, "sysctl": {"b": "3"}}')
    assert out["sysctl"] == {"a": "1", "b": "3"}  # maps merge too


def test_a_shorter_repeated_array_truncates() -> None:
    (m,) = mappings('{"hostPort": 1}], "portMappings": [{"hostPort": 2}')
    assert m["hostPort"] == 2


# --- null ----------------------------------------------------------------------------


def test_null_leaves_value_fields_and_clears_pointers() -> None:
    out, err = dec(
        '{"name": "n", "name": null, "masqAll": true, "masqAll": null,'
        ' "snat": false, "snat": null, "markMasqBit": 3, "markMasqBit": null,'
        ' "sysctl": {"a": "b"}, "sysctl": null, "runtimeConfig": null}'
    )
    assert err is None
    assert (out["name"], out["masqAll"]) == ("n", True)  # value types: unchanged
    assert (out["snat"], out["markMasqBit"], out["sysctl"]) == (None, None, None)
    assert out["runtimeConfig"] == {"portMappings": None}  # a struct: unchanged (zero)


def test_null_inside_an_array_element() -> None:
    (m,) = mappings('{"hostPort": 8080, "containerPort": 80, "hostPort": null}')
    assert m["hostPort"] == 8080


def test_null_ip_is_unset_but_null_cidr_is_an_error() -> None:
    spec = Struct("Range", [("subnet", IPNET), ("gateway", IP)])
    out, err = decode_lenient(spec, {"gateway": None})
    assert err is None and out["gateway"] is None
    _, err = decode_lenient(spec, {"subnet": None})
    assert err == "invalid CIDR address: "  # types.IPNet.UnmarshalJSON("null")


# --- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "value"),
    [("80", 80), ("-0", 0), ("9223372036854775807", 2**63 - 1)],
)
def test_integer_literals(literal: str, value: int) -> None:
    out, err = dec('{"markMasqBit": ' + literal + "}")
    assert err is None and out["markMasqBit"] == value


@pytest.mark.parametrize("literal", ["80.0", "1e2", "1.5", "9223372036854775808", "1E+2"])
def test_non_integer_or_out_of_range_numbers_are_type_errors(literal: str) -> None:
    out, err = dec('{"markMasqBit": ' + literal + "}")
    assert out["markMasqBit"] == 0  # Go allocates the pointer before the number fails
    assert err == (
        f"json: cannot unmarshal number {literal} into Go struct field "
        "PortMapConf.markMasqBit of type int"
    )


def test_unsigned_refuses_negative_and_float_takes_any_number() -> None:
    _, err = dec('{"owner": -1}')
    assert err is not None and "number -1" in err and "of type uint32" in err
    _, err = dec('{"owner": 4294967296}')
    assert err is not None and "of type uint32" in err
    out, err = dec('{"rate": 1e3}')
    assert err is None and out["rate"] == 1000.0


@pytest.mark.parametrize(
    ("json_value", "kind"),
    [('"80"', "string"), ("true", "bool"), ("[80]", "array"), ('{"a": 1}', "object")],
)
def test_wrong_json_type_for_a_number(json_value: str, kind: str) -> None:
    _, err = dec('{"markMasqBit": ' + json_value + "}")
    assert err == (
        f"json: cannot unmarshal {kind} into Go struct field PortMapConf.markMasqBit of type int"
    )


def test_number_into_string_names_no_literal() -> None:
    _, err = dec('{"name": 5}')
    assert (
        err == "json: cannot unmarshal number into Go struct field PortMapConf.name of type string"
    )


# --- errors --------------------------------------------------------------------------


def test_the_first_type_error_is_reported_and_decoding_goes_on() -> None:
    out, err = dec('{"markMasqBit": 1.5, "snat": "x", "name": "kept"}')
    assert err is not None and "markMasqBit" in err
    assert out["name"] == "kept"


def test_nested_errors_name_the_innermost_struct_and_the_path() -> None:
    _, err = dec('{"runtimeConfig": {"portMappings": [{"hostPort": "80"}]}}')
    assert err == (
        "json: cannot unmarshal string into Go struct field "
        "PortMapEntry.runtimeConfig.portMappings.hostPort of type int"
    )


def test_an_unmarshaler_error_stops_at_once_and_wins() -> None:
    spec = Struct("S", [("a", INT), ("subnet", IPNET), ("b", STRING)])
    out, err = decode_lenient(spec, loads('{"a": "x", "subnet": "10.0.0.1", "b": "y"}'))
    assert err == "invalid CIDR address: 10.0.0.1"
    assert out["b"] == ""  # not reached


def test_route_decodes_itself_and_its_errors_carry_the_outer_field() -> None:
    spec = Struct("IPAMConfig", [("routes", Slice(Ptr(ROUTE)))], pkg="allocator")
    _, err = decode_lenient(spec, loads('{"routes": [{"dst": "0.0.0.0/0", "mtu": "x"}]}'))
    assert err == (
        "json: cannot unmarshal string into Go struct field IPAMConfig.routes of type int"
    )


def test_decode_raises_the_error_with_what() -> None:
    with pytest.raises(InvalidConfig) as ei:
        decode(CONF, {"name": 1})
    assert ei.value.msg == "failed to load netconf" and ei.value.code == 7
    with pytest.raises(DecodeError) as de:
        decode(CONF, [], "bad", error=DecodeError)
    assert de.value.details == (
        "json: cannot unmarshal array into Go value of type main.PortMapConf"
    )


# --- strings, syntax -----------------------------------------------------------------


def test_invalid_utf8_and_lone_surrogates_become_replacement_characters() -> None:
    out, err = decode_lenient(CONF, loads(b'{"name": "a\xffb", "runtimeConfig": {}}'))
    assert err is None and out["name"] == "a\ufffdb"
    out, _ = decode_lenient(CONF, loads('{"name": "a\\ud800b"}'))
    assert out["name"] == "a\ufffdb"


@pytest.mark.parametrize("text", ["{", '{"a": NaN}', "\ufeff{}", '{"a": 1} x', "\xff"])
def test_syntax_errors(text: str) -> None:
    with pytest.raises(DecodeError):
        loads(text.encode("utf-8", "surrogateescape") if text != "\xff" else b"\xff")


def test_objects_keep_their_members() -> None:
    obj = loads('{"a": 1, "A": 2, "a": 3}')
    assert isinstance(obj, GoObject)
    assert obj.members == [("a", 1), ("A", 2), ("a", 3)]
    assert obj == {"a": 3, "A": 2}  # as Go's map[string]interface{}


# --- through interface{} (prevResult) ------------------------------------------------


def test_via_map_collapses_duplicates_sorts_keys_and_takes_integral_floats() -> None:
    spec = Struct("S", [("iface", INT), ("name", STRING)])
    raw = loads('{"Name": "b", "name": "a", "iface": 1.0, "iface": 2.0}')
    out, err = decode_lenient(spec, raw, via_map=True)
    # the map keeps iface 2.0 (last); marshalled sorted: "Name" < "name", so "name" wins
    assert err is None and out == {"iface": 2, "name": "a"}
    _, err = decode_lenient(spec, loads('{"iface": 1.5}'), via_map=True)
    assert err is not None and "number 1.5" in err
