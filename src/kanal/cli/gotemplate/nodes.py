"""The parse tree: one small class per kind of node."""

from __future__ import annotations

from typing import Any

from kanal.cli.gotemplate.values import go_quote


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        super().__init__(pos)
        self.text = text

    def __str__(self) -> str:
        return go_quote(self.text)


class _Field(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: list[str]) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return "".join("." + x for x in self.ident)


class _Var(_Node):
    __slots__ = ("ident",)

    def __init__(self, pos: int, ident: list[str]) -> None:
        super().__init__(pos)
        self.ident = ident

    def __str__(self) -> str:
        return ".".join(self.ident)


class _Dot(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "."


class _Nil(_Node):
    __slots__ = ()

    def __str__(self) -> str:
        return "nil"


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        super().__init__(pos)
        self.name = name

    def __str__(self) -> str:
        return self.name


class _Const(_Node):
    """A literal: string, number, bool. ``value`` is its Go value."""

    __slots__ = ("is_float", "is_int", "text", "value")

    def __init__(self, pos: int, text: str, value: Any, is_int: bool = False) -> None:
        super().__init__(pos)
        self.text, self.value, self.is_int = text, value, is_int
        self.is_float = isinstance(value, float)

    def __str__(self) -> str:
        return self.text


class _Chain(_Node):
    __slots__ = ("field", "node")

    def __init__(self, pos: int, node: _Node, field: list[str]) -> None:
        super().__init__(pos)
        self.node, self.field = node, field

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + x for x in self.field)


class _Command(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        super().__init__(pos)
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Node):
    __slots__ = ("cmds", "decl", "is_assign")

    def __init__(self, pos: int, decl: list[_Var], is_assign: bool) -> None:
        super().__init__(pos)
        self.decl, self.is_assign = decl, is_assign
        self.cmds: list[_Command] = []

    def __str__(self) -> str:
        head = ""
        if self.decl:
            head = ", ".join(str(v) for v in self.decl) + (" = " if self.is_assign else " := ")
        return head + " | ".join(str(c) for c in self.cmds)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        super().__init__(pos)
        self.pipe = pipe

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


class _Control(_Node):
    __slots__ = ("body", "kind", "orelse", "pipe")

    def __init__(
        self, kind: str, pipe: _Pipe, body: list[_Node], orelse: list[_Node] | None
    ) -> None:
        super().__init__(pipe.pos)
        self.kind, self.pipe, self.body, self.orelse = kind, pipe, body, orelse

    def __str__(self) -> str:
        return "{{" + self.kind + " " + str(self.pipe) + "}}"


class _Jump(_Node):
    """``{{break}}`` or ``{{continue}}``."""

    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        super().__init__(pos)
        self.kind = kind

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


class _TemplateCall(_Node):
    """``{{template "name" pipeline}}``"""

    __slots__ = ("name", "pipe", "quoted")

    def __init__(self, pos: int, name: str, quoted: str, pipe: _Pipe | None) -> None:
        super().__init__(pos)
        self.name, self.quoted, self.pipe = name, quoted, pipe

    def __str__(self) -> str:
        tail = f" {self.pipe}" if self.pipe is not None else ""
        return "{{template " + self.quoted + tail + "}}"


class _End(_Node):
    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        super().__init__(pos)
        self.kind = kind  # "end" | "else"

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"
