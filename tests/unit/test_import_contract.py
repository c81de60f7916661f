"""The package layering (docs/architecture.md), read from the sources.

Every ``kanal`` package sits on one layer; a module may import only packages on
layers below its own. Imports inside functions and under ``TYPE_CHECKING`` count
the same as those at the top (a hidden import is still a dependency). An import
inside a function is allowed only where it buys start-up time, and says so with a
``# lazy: <reason>`` comment on its line or above it in the same function (one
comment may explain a group). Files stay under 500
lines and functions under 80 unless a ``# long: <reason>`` comment says why.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "kanal"

# Lowest first: a package may import only packages listed before it.
LAYERS: list[str] = [
    "kanal",  # the package's own __init__
    "errors",
    "validate",
    "_json",
    "_dataclass",
    "_ffi",
    "_hash",
    "unixsock",
    "jsonget",
    "spec",
    "netlink",
    "firewall",
    "ipam",
    "store",
    "ovs",
    "skel",
    "plugins",
    "dhcp",
    "runtime",
    "cluster",
    "engine",
    "dockerplugin",
    "fastpath",
    "daemon",
    "lab",
    "cli",
]

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    source: str  # importing package
    target: str  # imported package
    in_function: bool
    lazy_reason: bool


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _has_marker(lines: list[str], lineno: int, marker: str) -> bool:
    """``marker`` in a comment on line ``lineno`` (1-based) or the line above."""
    here = lines[lineno - 1]
    above = lines[lineno - 2] if lineno >= 2 else ""
    return marker in here or (above.strip().startswith("#") and marker in above)


def _imports(path: Path) -> Iterator[Import]:
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    module = _module_name(path)
    source = _package(module)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                targets = [".".join(base + ([node.module] if node.module else []))]
            else:
                targets = [node.module or ""]
        else:
            continue
        function: ast.AST | None = parents.get(node)
        while function is not None and not isinstance(
            function, ast.FunctionDef | ast.AsyncFunctionDef
        ):
            function = parents.get(function)
        reason = False
        if function is not None:
            first = getattr(function, "lineno", node.lineno)
            reason = any("# lazy" in line for line in lines[first - 1 : node.lineno])
        for target in targets:
            if target != "kanal" and not target.startswith("kanal."):
                continue
            yield Import(
                path=path,
                line=node.lineno,
                source=source,
                target=_package(target),
                in_function=function is not None,
                lazy_reason=reason,
            )


def _all_imports() -> list[Import]:
    return [imp for path in _sources() for imp in _imports(path)]


def _where(imp: Import) -> str:
    return f"{imp.path.relative_to(SRC.parent)}:{imp.line}"


def test_every_package_has_a_layer() -> None:
    packages = {_package(_module_name(p)) for p in _sources()}
    assert packages - set(LAYERS) == set(), "give these packages a layer in LAYERS"


def test_no_upward_import() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{_where(imp)}: {imp.source} imports {imp.target}"
        for imp in _all_imports()
        if imp.source != imp.target
        and imp.target in rank
        and imp.source in rank
        and rank[imp.target] > rank[imp.source]
    ]
    assert upward == []


def test_imports_inside_functions_say_why() -> None:
    unexplained = [
        f"{_where(imp)}: {imp.source} -> {imp.target}"
        for imp in _all_imports()
        if imp.in_function and not imp.lazy_reason
    ]
    assert unexplained == []


def test_files_are_small() -> None:
    big = [
        f"{p.relative_to(SRC.parent)}: {n} lines"
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    ]
    assert big == []


def test_functions_are_short_or_say_why() -> None:
    long_ones = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            assert node.end_lineno is not None
            first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            n = node.end_lineno - first + 1
            if n > MAX_FUNCTION_LINES and not _has_marker(lines, first, "# long:"):
                long_ones.append(f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name}: {n}")
    assert long_ones == []


@pytest.mark.parametrize("name", ["cni.md", "cnm.md", "multihost.md", "style.md", "shared/"])
def test_code_cites_only_the_repository(name: str) -> None:
    """Design notes the code cites live in the repository's docs/ (research notes
    outside it are not there for a reader of the code)."""
    outside = re.compile(r"(?<!docs/)(?<![\w/.-])" + re.escape(name))
    citing = [str(p.relative_to(SRC.parent)) for p in _sources() if outside.search(p.read_text())]
    assert citing == []
