"""Output helpers with docker's habits: aligned tables, ``--format`` templates, JSON.

Templates are the common subset of Go's text/template that docker users write:
``{{.Field}}``, ``{{.A.B}}``, ``{{json .}}``, ``{{json .Field}}``, ``{{.Label "k"}}``
and a leading ``table`` (header row, tab-separated columns aligned). Anything
else is refused with a clear error rather than printed wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kanal.errors import InvalidConfig

__all__ = ["render_table", "render_template"]

_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r'^(json\s+)?\.([A-Za-z0-9_.]*)(?:\s+"([^"]*)")?\Z')


def _lookup(obj: Any, path: str, arg: str | None) -> Any:
    cur = obj
    for part in [p for p in path.split(".") if p]:
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, Mapping) and callable(cur.get("__" + part)):
            fn: Callable[..., Any] = cur["__" + part]
            cur = fn(arg) if arg is not None else fn()
            arg = None
        else:
            raise InvalidConfig(f"template: can't evaluate field {part}")
    return cur


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{_text(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_text(x) for x in v) + "]"
    return "" if v is None else str(v)


def render_template(template: str, obj: Any) -> str:
    """Render one object. Raises InvalidConfig on what it does not understand."""

    def action(m: re.Match[str]) -> str:
        expr = m.group(1)
        if expr in ("json .", "json ."):
            return json.dumps(_public(obj))
        pm = _PATH.match(expr)
        if not pm:
            raise InvalidConfig(f"template: unsupported action {{{{{expr}}}}}")
        value = _lookup(obj, pm.group(2), pm.group(3))
        return json.dumps(_public(value)) if pm.group(1) else _text(_public(value))

    return _ACTION.sub(action, template.replace("\\t", "\t").replace("\\n", "\n"))


def _public(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _public(x) for k, x in v.items() if not str(k).startswith("__")}
    return v


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """docker's tabwriter look: columns padded to the widest cell plus three spaces."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("   ".join(cells).rstrip())
    return "\n".join(out)


def table_from_template(template: str, objs: Sequence[Any], headers: Mapping[str, str]) -> str:
    """``table {{.A}}\\t{{.B}}``: a header row from ``headers`` then one row per object."""
    body = template[len("table") :].strip()
    cols = body.replace("\\t", "\t").split("\t")
    head = []
    for col in cols:
        m = _ACTION.fullmatch(col.strip())
        key = m.group(1).lstrip(".").split()[0] if m else col
        head.append(headers.get(key, key.upper()))
    rows = [head] + [[render_template(c, o) for c in cols] for o in objs]
    return render_table(rows)


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
