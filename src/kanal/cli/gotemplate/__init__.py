"""Go's text/template, the part docker users write in ``--format``.

A lexer, a parser to a small tree and an evaluator with Go's semantics, run on
the decoded JSON of kanal's API (dicts, lists, str, int, float, bool, None):

* actions ``{{.A.B}}``, ``$`` and ``$x := ...`` / ``$x = ...``, pipelines ``|``,
  parentheses, ``if/else if/else``, ``with/else with``, ``range`` (lists, maps in
  sorted key order, integers; ``$i, $v :=``; ``else``; ``break``/``continue``),
  trim markers ``{{- `` / `` -}}``, comments, string/raw/char/number/bool/nil literals;
* Go's functions ``and or not len index slice eq ne lt le gt ge print printf
  println html urlquery`` and docker's ``json split join title lower upper pad
  truncate``.

Where a JSON object stands for one of docker's Go structs (its keys are all Go
exported names, see :func:`is_struct`), a missing field is an error, and the Go
field name is accepted where docker's JSON key differs (``.ID`` for ``Id``). Any
other object is a Go map: a missing key is ``<no value>``, ``index`` of a missing
key is the zero value. Values print as Go's ``fmt`` prints the decoded JSON
(``map[k:v]``, ``[a b]``, ``<no value>``). Every error is one line in Go's words
(``template: :1:2: executing "" at <.Foo>: ...``), raised as InvalidConfig.

The package: :mod:`.lexer` (text to tokens), :mod:`.nodes` and :mod:`.parser`
(tokens to a tree), :mod:`.evaluator` (the tree run for a value), :mod:`.funcs`
(the callable functions), :mod:`.printf` and :mod:`.values` (how Go prints).
This module keeps the public API: :func:`parse` and :class:`Template`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kanal.cli.gotemplate.evaluator import _State
from kanal.cli.gotemplate.funcs import FUNCS, HEADER_FUNCS, _Func
from kanal.cli.gotemplate.nodes import _Node
from kanal.cli.gotemplate.parser import _Parser
from kanal.cli.gotemplate.printf import go_sprintf
from kanal.cli.gotemplate.values import (
    MISSING,
    GoMap,
    TemplateError,
    go_float,
    go_json,
    go_print,
    go_quote,
    is_struct,
)

__all__ = [
    "HEADER_FUNCS",
    "MISSING",
    "GoMap",
    "Template",
    "go_float",
    "go_json",
    "go_print",
    "go_quote",
    "go_sprintf",
    "is_struct",
    "parse",
]


class Template:
    """A parsed template; :meth:`execute` renders it for one value."""

    __slots__ = ("nodes", "templates", "text")

    def __init__(self, text: str, nodes: list[_Node], templates: Mapping[str, list[_Node]]) -> None:
        self.text, self.nodes, self.templates = text, nodes, templates

    def execute(
        self, data: Any, funcs: Mapping[str, _Func] | None = None, partial: bool = False
    ) -> str:
        """Render for ``data``. Raises InvalidConfig; with ``partial``, an error
        ends the output where it happened instead (docker's table headers)."""
        st = _State(self.text, data, {**FUNCS, **(funcs or {})})
        st.templates = self.templates
        try:
            st.walk(data, self.nodes)
        except TemplateError:
            if not partial:
                raise
        except RecursionError:
            raise TemplateError("template: : exceeded maximum template depth") from None
        return "".join(st.out)


_CACHE: dict[str, Template] = {}


def parse(text: str) -> Template:
    """Parse a template (cached). Raises InvalidConfig with Go's message."""
    t = _CACHE.get(text)
    if t is None:
        try:
            p = _Parser(text, FUNCS)
            t = Template(text, p.parse(), p.templates)
        except RecursionError:
            raise TemplateError("template: : too deeply nested") from None
        if len(_CACHE) >= 64:
            _CACHE.clear()
        _CACHE[text] = t
    return t
