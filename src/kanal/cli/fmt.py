"""Output helpers with docker's habits: aligned tables, ``--format`` templates, JSON.

Templates are Go's text/template as docker's CLI runs them
(:mod:`kanal.cli.gotemplate`, imported only when a template is used). The list
commands (``network ls``, ``node ls``, ``ps``) read ``--format`` as docker's do:
``table`` (the default), ``table TEMPLATE`` (a header row derived from the
template, then aligned columns), ``json`` (one JSON object a line) or a template
per object; ``inspect -f json`` is the objects as one JSON array.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "Progress",
    "format_list",
    "go_time",
    "inspect_json",
    "render_table",
    "render_template",
    "table_from_template",
    "tabwrite",
]


def render_template(template: str, obj: Any) -> str:
    """One object through a Go template, as ``docker inspect -f`` renders it
    (without the newline docker ends it with); ``json`` alone is the object's JSON.

    Raises:
        InvalidConfig: a template Go would refuse, or one that fails on ``obj``;
            the message is one line in Go's words.
    """
    from kanal.cli.gotemplate import go_json, parse

    if template == "json":
        return go_json(obj, sort_maps=False)
    return parse(template).execute(obj)


def inspect_json(objs: Sequence[Any]) -> str:
    """``inspect -f json``: the objects as one compact JSON array, as docker prints it."""
    from kanal.cli.gotemplate import go_json

    return go_json(list(objs), sort_maps=False)


def _prepare(fmt: str) -> str:
    # docker's Context.preFormat: outer spaces trimmed, literal \t and \n made real
    return fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def _label_header(name: str) -> str:
    """The header of a ``{{.Label "com.example.some-key"}}`` column: ``some key``."""
    return name.split(".")[-1].replace("-", " ").replace("_", " ")


def format_list(
    fmt: str, objs: Sequence[Mapping[str, Any]], headers: Mapping[str, str], default: str
) -> str:
    """What ``ls --format FMT`` prints for ``objs``, each row ending in a newline.

    ``headers`` names the columns of the objects' fields (``{"ID": "NETWORK ID"}``);
    ``default`` is the ``table ...`` template used when FMT is empty or ``table``.

    Raises:
        InvalidConfig: a bad template; nothing is printed then.
    """
    from kanal.cli.gotemplate import parse

    if not fmt or fmt == "table":
        fmt = default
    if fmt.startswith("table"):
        return table_from_template(fmt, objs, headers)
    if fmt == "json":
        fmt = "{{json .}}"
    tmpl = parse(_prepare(fmt))
    return "".join(tmpl.execute(o) + "\n" for o in objs)


def table_from_template(template: str, objs: Sequence[Any], headers: Mapping[str, str]) -> str:
    """``table {{.A}}\\t{{.B}}``: a header row, then one row per object, aligned.

    The header is the template run on ``headers`` (a field's column name, or the
    field's name in capitals; docker's header functions leave ``json``/``upper``/...
    arguments as they are) and ``.Label "k"`` heads its column with ``k``; a name
    that is no field shows ``<no value>``, as docker's does. Returns the text with
    its final newline.
    """
    from kanal.cli.gotemplate import HEADER_FUNCS, GoMap, parse

    tmpl = parse(_prepare(template[len("table") :]))
    rows = "".join(tmpl.execute(o) + "\n" for o in objs)
    # a field without a named header heads its column with its name in capitals
    head = GoMap({k: k.upper() for o in objs if isinstance(o, Mapping) for k in o})
    head.update(headers)
    head["__Label"] = _label_header
    # docker ignores a header that fails half-way: it keeps what came before
    header = tmpl.execute(head, HEADER_FUNCS, partial=True)
    return tabwrite(header + "\n" + rows)


def _width(s: str) -> int:
    if s.isascii():
        return len(s)
    import unicodedata

    w = 0
    for c in s:
        if unicodedata.combining(c) or unicodedata.category(c) in ("Cc", "Cf", "Mn", "Me"):
            continue
        w += 2 if unicodedata.east_asian_width(c) in ("W", "F") else 1
    return w


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Go's text/tabwriter as docker's tables use it (spaces, ``minwidth`` 10,
    ``padding`` 3): the tab-terminated cells of adjacent lines form a column as
    wide as its widest cell plus the padding; the text after a line's last tab
    is not padded."""
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[str] = []

    def write_lines(widths: list[int], a: int, b: int) -> None:
        for i in range(a, b):
            cells = lines[i]
            for j, c in enumerate(cells):
                out.append(c)
                if j < len(widths):
                    out.append(" " * (widths[j] - _width(c)))
            if i + 1 < len(lines):
                out.append("\n")

    def fmt(widths: list[int], line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(widths, line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, _width(lines[this][column]) + padding)
                this += 1
            fmt([*widths, width], line0, this)
            line0 = this
        write_lines(widths, line0, line1)

    fmt([], 0, len(lines))
    return "".join(out)


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as docker's tables align them (see :func:`tabwrite`),
    without the final newline."""
    clean = ("\t".join(re.sub(r"[\t\n]", " ", c) for c in r) for r in rows)
    return tabwrite("".join(line + "\n" for line in clean)).removesuffix("\n")


_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(?:\.(\d+))?(?:([Zz])|([+-])(\d\d):(\d\d))\Z"
)


def go_time(ts: str) -> str:
    """Go's ``time.Time.String()`` of an RFC 3339 timestamp (what docker prints for a
    ``CreatedAt``): ``2024-05-07 10:21:34.5 +0000 UTC``. Anything else is returned as is."""
    m = _RFC3339.match(ts)
    if not m:
        return ts
    date, clock, frac, z, sign, hh, mm = m.groups()
    frac = (frac or "")[:9].rstrip("0")
    zone = "+0000 UTC" if z else f"{sign}{hh}{mm} {sign}{hh}{mm}"
    return f"{date} {clock}{'.' + frac if frac else ''} {zone}"


class Progress:
    """A one-line progress bar on a terminal for bulk work (``rm`` of many, ``prune``).

    Silent when ``stream`` is not a terminal or there are fewer than ``min_items``
    items, so scripts and pipes see only the results.
    """

    def __init__(self, total: int, label: str, stream: Any = None, min_items: int = 5) -> None:
        import sys

        self.total, self.label, self.done = total, label, 0
        self.stream = stream if stream is not None else sys.stderr
        self.on = total >= min_items and bool(getattr(self.stream, "isatty", lambda: False)())

    def render(self) -> str:
        width = 30
        filled = width * self.done // max(self.total, 1)
        return f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"

    def step(self) -> None:
        self.done += 1
        if self.on:
            self.stream.write(self.render())
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
