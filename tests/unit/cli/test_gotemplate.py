"""Go templates for ``--format``: kanal's renderer against outputs recorded from docker."""

from __future__ import annotations

from typing import Any

import pytest

from kanal.cli.fmt import format_list, render_template
from kanal.cli.gotemplate import GoMap, go_float, go_json, go_print, go_sprintf, parse
from kanal.cli.network import DEFAULT_TABLE, HEADERS, _row
from kanal.errors import InvalidConfig
from tests.fixtures.docker_objects import CONTAINERS, NETWORKS
from tests.unit.cli.template_cases import CASES, C


def _render(case: C) -> str:
    """What kanal's CLI prints for the case (``inspect -f`` adds a newline per object)."""
    if case.kind == "ls":
        nets = sorted(NETWORKS.values(), key=lambda n: n["Name"])
        return format_list(case.template, [_row(n, True) for n in nets], HEADERS, DEFAULT_TABLE)
    obj = (NETWORKS if case.kind == "net" else CONTAINERS)[case.name]
    return render_template(case.template, obj) + "\n"


@pytest.mark.parametrize("case", CASES, ids=[f"{i:03d}-{c.kind}" for i, c in enumerate(CASES)])
def test_recorded_case(case: C) -> None:
    if case.err:
        with pytest.raises(InvalidConfig) as e:
            _render(case)
        assert str(e.value) == case.err
        assert "\n" not in str(e.value)
    else:
        assert _render(case) == case.out


def test_the_table_is_large_and_covers_every_kind() -> None:
    kinds = {c.kind for c in CASES}
    assert kinds == {"net", "ctr", "ls"} and len(CASES) >= 250
    assert sum(1 for c in CASES if c.err) >= 60
    # each documented difference says why
    assert all(len(c.differs) > 20 for c in CASES if c.differs)


def test_json_of_the_object_is_its_api_json() -> None:
    web = NETWORKS["web"]
    assert render_template("json", web) == go_json(web, sort_maps=False)
    assert render_template("json", web).startswith('{"Name":"web","Id":')
    # {{json .}} sorts what is a Go map (labels), keeps a struct's field order
    sorted_labels = '"Labels":{"com.example.team":"net","env":"prod"}}'
    assert render_template("{{json .}}", web).endswith(sorted_labels)
    api_order = '"Labels":{"env":"prod","com.example.team":"net"}}'
    assert go_json(web, sort_maps=False).endswith(api_order)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (0.5, "0.5"),
        (100.0, "100"),
        (123456.0, "123456"),
        (1234567.0, "1.234567e+06"),
        (1e6, "1e+06"),
        (1e-4, "0.0001"),
        (1e-5, "1e-05"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (1e21, "1e+21"),
        (float("inf"), "+Inf"),
    ],
)
def test_float_prints_as_go_fmt_v(value: float, text: str) -> None:
    assert go_float(value) == text
    assert go_print(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1500.0, "1500"),
        (0.1, "0.1"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (-0.0, "-0"),
        (2.5e300, "2.5e+300"),
    ],
)
def test_float_json_as_go_encoding_json(value: float, text: str) -> None:
    assert go_json(value) == text


def test_print_of_decoded_json_values() -> None:
    assert go_print({"b": [1, None, True], "a": {"x": "y"}}) == "map[a:map[x:y] b:[1 <nil> true]]"
    assert go_print([]) == "[]" and go_print({}) == "map[]"
    assert parse("{{.}}").execute(None) == "<no value>"
    assert parse("{{.A}}").execute({"A": None}) == "<no value>"
    assert parse("{{.}}").execute({"__hidden": 1, "a": 1}) == "map[a:1]"


def test_json_escapes_as_docker_json_does() -> None:
    assert go_json('<&>\u2028\x01\t"\\') == '"<&>\\u2028\\u0001\\t\\"\\\\"'
    assert go_json({"b": 1, "A": [None, 1.5, "é"]}) == '{"A":[null,1.5,"é"],"b":1}'


def test_sprintf_edge_cases() -> None:
    assert go_sprintf("%", []) == "%!(NOVERB)"
    assert go_sprintf("%z", [1]) == "%!z(int=1)"
    assert go_sprintf("%v %v", [[1, "a"], {"k": None}]) == "[1 a] map[k:<nil>]"
    assert go_sprintf("%5v|%-5v|", [True, None]) == " true|<nil>|"
    assert go_sprintf("%#o %O %#b", [8, 8, 5]) == "010 0o10 0b101"
    assert go_sprintf("%08d|%-08d|%+.1f", [-42, 7, 2.25]) == "-0000042|7       |+2.2"


def test_struct_objects_and_maps() -> None:
    """A JSON object of Go-exported keys is a struct: a missing field is an error;
    any other object is a map: a missing key is <no value>, index of it the zero value."""
    obj = {"Name": "n", "Sub": {"Key": "v"}, "Map": {"a.b": "1"}, "Mixed": {"Up": 1, "low": 2}}
    assert parse("{{.Map.nope}}|{{index .Map `nope`}}|").execute(obj) == "<no value>||"
    assert parse("{{.Mixed.nope}}|{{index .Mixed `nope`}}").execute(obj) == "<no value>|<no value>"
    with pytest.raises(InvalidConfig, match='map has no entry for key "Nope"'):
        parse("{{.Sub.Nope}}").execute(obj)
    # a GoMap is a map whatever its keys
    assert parse("{{.Nope}}").execute(GoMap(Name="x")) == "<no value>"
    # docker's Go field names where its JSON keys differ
    assert parse("{{.ID}} {{.HostIP}}").execute({"Id": "abc", "HostIp": "::1"}) == "abc ::1"
    # fields docker omits when empty still have their zero value
    cfg = {"Subnet": "10.0.0.0/24"}
    assert parse("[{{.Gateway}}][{{.IPRange}}][{{.AuxAddress}}]").execute(cfg) == "[][][map[]]"


def test_methods_of_list_rows() -> None:
    row = {"Name": "web", "__Label": lambda k: {"a": "1"}.get(k, "")}
    assert parse('{{.Label "a"}}|{{.Label "b"}}|{{"a" | .Label}}').execute(row) == "1||1"
    assert parse("{{json .}}").execute(row) == '{"Name":"web"}'
    with pytest.raises(InvalidConfig, match="wrong number of args for Label"):
        parse("{{.Label}}").execute(row)


def test_trim_markers_need_a_space() -> None:
    assert parse("{{-3}}").execute(None) == "-3"  # a number, not a trim marker
    assert parse("a {{- 3 -}} b").execute(None) == "a3b"
    assert parse("a {{- 3}}\t\n b").execute(None) == "a3\t\n b"


def test_templates_are_parsed_once() -> None:
    assert parse("{{.A}} cached") is parse("{{.A}} cached")


def test_deep_templates_fail_cleanly() -> None:
    with pytest.raises(InvalidConfig, match="maximum template depth"):
        parse('{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}').execute({})
    deep = "{{(" * 400 + "1" + ")}}" * 400
    with pytest.raises(InvalidConfig) as e:
        parse(deep).execute({})
    assert "\n" not in str(e.value)


def test_every_error_is_one_line_invalidconfig() -> None:
    bad: list[tuple[str, Any]] = [
        ("{{", {}),
        ("{{.A}}{{end}}", {}),
        ("{{index .A 3}}", {"A": [1]}),
        ("{{range .A}}", {}),
        ("{{.A | printf}}", {"A": 1}),
        ("{{\x00}}", {}),
        ("{{'\n'}}", {}),
        ("{{`", {}),
        ("{{1e}}", {}),
        ("{{0x}}", {}),
        ("{{$}} {{$x}}", {}),
        ("{{with $x := 1}}{{end}}{{$x}}", {}),
    ]
    for template, obj in bad:
        with pytest.raises(InvalidConfig) as e:
            parse(template).execute(obj)
        msg = str(e.value)
        assert msg.startswith("template: ") and "\n" not in msg, (template, msg)


@pytest.mark.parametrize(
    ("template", "err"),
    [
        # Go (and docker) would grow the output until memory runs out
        ("{{range 100000000}}0123456789{{end}}", "template: output longer than 64 MiB"),
        ('{{range 100000}}{{printf "%1000d" .}}{{end}}', "template: output longer than 64 MiB"),
        (
            '{{pad "x" 99999999999 0}}',
            'template: :1:2: executing "" at <pad "x" 99999999999 0>: error calling pad: '
            "strings: Repeat output length overflow",
        ),
    ],
)
def test_runaway_output_is_one_error_not_all_memory(template: str, err: str) -> None:
    with pytest.raises(InvalidConfig) as e:
        parse(template).execute({})
    assert str(e.value) == err


def test_range_over_a_huge_integer_is_lazy() -> None:
    # a list of 2**63 pairs would never be built; the loop ends at the first break
    assert parse("{{range 9223372036854775807}}{{.}}{{break}}{{end}}").execute({}) == "0"
    out = parse("{{range 40000}}{{.}}{{end}}").execute({})
    assert len(out) == sum(len(str(i)) for i in range(40000))
