"""The CLI's output helpers: docker-like tables, templates, the progress bar."""

from __future__ import annotations

import io
from typing import Any

import pytest

from kanal.cli.fmt import (
    Progress,
    format_list,
    go_time,
    inspect_json,
    render_table,
    render_template,
    table_from_template,
    tabwrite,
)
from kanal.errors import InvalidConfig


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table_and_templates() -> None:
    # docker's tabwriter: a column is its widest cell + 3, and at least 10 wide
    assert render_table([["A", "LONGER"], ["xyz", "1"]]) == "A         LONGER\nxyz       1"
    assert render_table([["NETWORK ID", "NAME"], ["0123456789ab", "n"]]) == (
        "NETWORK ID     NAME\n0123456789ab   n"
    )
    assert render_table([["a\tb", "c\nd"]]) == "a b       c d"  # no cell breaks the table
    obj = {"Name": "web", "IPAM": {"Driver": "default"}, "Internal": False, "Labels": {"a": "1"}}
    assert render_template("{{.Name}} {{.IPAM.Driver}} {{.Internal}}", obj) == "web default false"
    assert render_template("{{json .Labels}}", obj) == '{"a":"1"}'
    assert table_from_template("table {{.Name}}\\t{{.Internal}}", [obj], {"Name": "NAME"}).split(
        "\n"
    ) == ["NAME      INTERNAL", "web       false", ""]
    assert render_template("{{range $k, $v := .Labels}}{{$k}}={{$v}}{{end}}", obj) == "a=1"
    with pytest.raises(InvalidConfig):
        render_template("{{range .X}}", obj)
    with pytest.raises(InvalidConfig):
        render_template("{{.Missing}}", obj)


def test_tabwrite_aligns_blocks_of_adjacent_lines() -> None:
    # a line without the column ends its block: the next block is aligned on its own
    text = "a\tb\nlonger-cell\tc\nno tabs here\nx\ty\n"
    assert tabwrite(text).split("\n") == [
        "a             b",
        "longer-cell   c",
        "no tabs here",
        "x         y",
        "",
    ]
    # cells are measured in display columns
    assert tabwrite("日本\tx\nab\ty") == "日本      x\nab        y"
    assert tabwrite("") == ""


def test_go_time_is_what_docker_prints_for_created_at() -> None:
    assert go_time("2024-05-07T10:21:34.123456789Z") == "2024-05-07 10:21:34.123456789 +0000 UTC"
    assert go_time("2024-05-07T10:21:34.500Z") == "2024-05-07 10:21:34.5 +0000 UTC"
    assert go_time("2024-05-07T10:21:34Z") == "2024-05-07 10:21:34 +0000 UTC"
    assert go_time("2024-05-07T10:21:34.000+02:00") == "2024-05-07 10:21:34 +0200 +0200"
    assert go_time("yesterday") == "yesterday"


def test_list_formats() -> None:
    rows: list[dict[str, Any]] = [
        {"Name": "a", "Addr": "10.0.0.1", "__Label": lambda k: k},
        {"Name": "b", "Addr": ""},
    ]
    heads = {"Name": "NAME", "Addr": "ADDRESS"}
    default = "table {{.Name}}\\t{{.Addr}}"
    assert format_list("", rows, heads, default) == (
        "NAME      ADDRESS\na         10.0.0.1\nb         \n"
    )
    assert format_list("json", rows, heads, default) == (
        '{"Name":"a","Addr":"10.0.0.1"}\n{"Name":"b","Addr":""}\n'
    )
    assert format_list("{{.Name}}\\t{{.Addr}}", rows, heads, default) == "a\t10.0.0.1\nb\t\n"
    assert format_list("{{.Name}}", [], heads, default) == ""
    assert format_list("table {{.Name}}", [], heads, default) == "NAME\n"
    # a field without a header heads as its name; an unknown one as <no value> (as
    # docker's), and then the rows fail
    assert format_list("table {{.Addr}}", rows[:1], {}, default) == "ADDR\n10.0.0.1\n"
    with pytest.raises(InvalidConfig, match="Nope"):
        format_list("table {{.Nope}}", rows, heads, default)
    assert inspect_json([{"b": 1, "a": None}, {}]) == '[{"b":1,"a":null},{}]'


def test_ps_and_node_rows() -> None:
    from kanal.cli.node import DEFAULT_TABLE as NODE_TABLE
    from kanal.cli.node import HEADERS as NODE_HEADERS
    from kanal.cli.node import _status
    from kanal.cli.run import PS_HEADERS, PS_TABLE, _ps_row

    sb = {
        "Id": "0123456789abcdef" * 4,
        "Name": "web",
        "Cmd": ["busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
        "State": "running",
        "ExitCode": None,
        "Created": "2024-05-07T10:22:01.523916Z",
        "Networks": {"front": {"IPAddress": "10.1.0.2"}, "back": {"IPAddress": "10.2.0.2"}},
        "Ports": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]},
        "Error": "",
    }
    row = _ps_row(sb, trunc=True)
    assert row["Command"] == '"busybox httpd -f -p…"' and row["ID"] == "0123456789ab"
    assert row["Networks"] == "back,front" and row["CreatedAt"] == "2024-05-07 10:22:01 +0000 UTC"
    assert row["Ports"] == "127.0.0.1:8080->80/tcp" and row["Status"] == "running"
    assert list(row) == sorted(row)  # docker's {{json .}} order
    assert _ps_row(sb, trunc=False)["Command"] == '"busybox httpd -f -p 80 -h /www"'
    out = format_list("", [row], PS_HEADERS, PS_TABLE).splitlines()
    assert out[0].split() == ["SANDBOX", "ID", "NAMES", "COMMAND", "STATUS", "NETWORKS", "PORTS"]
    assert out[1].startswith("0123456789ab   web       ")
    node = {"Name": "h1", "Addr": "10.0.0.1", "Self": True, "Healthy": False, "Error": "x"}
    assert _status(node) == "degraded: x" and _status({"Self": False}) == "ready"
    rows = [{**node, "Status": _status(node), "Started": "2024-01-01T00:00:00Z"}]
    assert format_list("table {{.Name}}\\t{{.Status}}", rows, NODE_HEADERS, NODE_TABLE) == (
        "NAME      STATUS\nh1        degraded: x\n"
    )


def test_progress_only_on_a_terminal_with_enough_items() -> None:
    tty = Tty()
    p = Progress(6, "removing", tty)
    for _ in range(6):
        p.step()
    out = tty.getvalue()
    assert out.endswith("removing [" + "#" * 30 + "] 6/6\n") and "3/6" in out
    pipe = io.StringIO()
    q = Progress(6, "removing", pipe)
    q.step()
    assert pipe.getvalue() == ""
    few = Tty()
    Progress(2, "x", few).step()
    assert few.getvalue() == ""
