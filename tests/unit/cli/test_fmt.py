"""The CLI's output helpers: docker-like tables, templates, the progress bar."""

from __future__ import annotations

import io

import pytest

from kanal.cli.fmt import Progress, render_table, render_template, table_from_template
from kanal.errors import InvalidConfig


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_table_and_templates() -> None:
    assert render_table([["A", "LONGER"], ["xyz", "1"]]) == "A     LONGER\nxyz   1"
    obj = {"Name": "web", "IPAM": {"Driver": "default"}, "Internal": False, "Labels": {"a": "1"}}
    assert render_template("{{.Name}} {{.IPAM.Driver}} {{.Internal}}", obj) == "web default false"
    assert render_template("{{json .Labels}}", obj) == '{"a": "1"}'
    assert table_from_template("table {{.Name}}\\t{{.Internal}}", [obj], {"Name": "NAME"}).split(
        "\n"
    ) == ["NAME   INTERNAL", "web    false"]
    with pytest.raises(InvalidConfig):
        render_template("{{range .X}}", obj)
    with pytest.raises(InvalidConfig):
        render_template("{{.Missing}}", obj)


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
