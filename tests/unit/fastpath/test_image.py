"""The exec image (kanal.fastpath.image, read by the shim): modules served from it
while their sources are unchanged, and the usual import in every other case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import kanal.fastpath.shim as shim_module
from kanal.fastpath.image import IMAGE_NAME, MAGIC, build_image, image_modules
from tests.e2e.test_import_budget import KANAL, STDLIB

SHIM_DIR = os.path.dirname(os.path.abspath(shim_module.__file__))

# Run like an installed shim's fallback: -I -S, the shim imported from its directory.
PROBE = """
import json, sys
sys.path.insert(0, {shim_dir!r})
import shim
sys.path.insert(0, {root!r})
shim._load_image({image!r})
import pkgx.sub
out = {{}}
for name in ("pkgx", "pkgx.sub"):
    m = sys.modules[name]
    out[name] = {{
        "loader": type(m.__loader__).__name__,
        "file": m.__file__,
        "cached": getattr(m, "__cached__", None),
        "value": m.VALUE,
        "path": list(getattr(m, "__path__", [])),
    }}
print(json.dumps(out))
"""


def _package(root: Path, sub_value: str = "one") -> None:
    pkg = root / "pkgx"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("VALUE = 'init'\n")
    (pkg / "sub.py").write_text(
        f"from pkgx import VALUE as PARENT\nVALUE = PARENT + '-{sub_value}'\n"
    )


def _build(tmp: Path, root: Path) -> str:
    sys.path.insert(0, str(root))
    try:
        return build_image(str(tmp), ["pkgx", "pkgx.sub"])
    finally:
        sys.path.remove(str(root))
        for name in ("pkgx.sub", "pkgx"):
            sys.modules.pop(name, None)


def _probe(root: Path, image: str) -> dict[str, dict[str, Any]]:
    code = PROBE.format(shim_dir=SHIM_DIR, root=str(root), image=image)
    p = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    out: dict[str, dict[str, Any]] = json.loads(p.stdout)
    return out


def test_modules_come_from_the_image_with_a_files_attributes(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _package(root)
    image = _build(tmp_path, root)
    assert os.path.basename(image) == IMAGE_NAME
    assert os.stat(image).st_mode & 0o777 == 0o644
    got = _probe(root, image)
    assert got["pkgx"]["loader"] == "ImageFinder"
    assert got["pkgx.sub"]["loader"] == "ImageFinder"
    assert got["pkgx.sub"]["value"] == "init-one"
    assert got["pkgx"]["file"] == str(root / "pkgx" / "__init__.py")
    assert got["pkgx"]["path"] == [str(root / "pkgx")]
    assert got["pkgx.sub"]["cached"].endswith(".pyc")


def test_a_changed_source_is_imported_the_usual_way(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _package(root)
    image = _build(tmp_path, root)
    sub = root / "pkgx" / "sub.py"
    sub.write_text(sub.read_text().replace("one", "two, edited"))  # another size
    got = _probe(root, image)
    assert got["pkgx"]["loader"] == "ImageFinder"  # unchanged: still served
    assert got["pkgx.sub"]["loader"] == "SourceFileLoader"
    assert got["pkgx.sub"]["value"] == "init-two, edited"


def test_the_same_size_edited_later_is_stale_too(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _package(root)
    image = _build(tmp_path, root)
    sub = root / "pkgx" / "sub.py"
    st = sub.stat()
    sub.write_text(sub.read_text().replace("one", "eno"))
    os.utime(sub, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    got = _probe(root, image)
    assert got["pkgx.sub"]["loader"] == "SourceFileLoader"
    assert got["pkgx.sub"]["value"] == "init-eno"


@pytest.mark.parametrize("damage", ["other-python", "truncated", "garbage", "missing", "empty"])
def test_an_unusable_image_is_ignored(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "src"
    _package(root)
    image = _build(tmp_path, root)
    data = Path(image).read_bytes()
    if damage == "other-python":
        Path(image).write_bytes(data.replace(sys.version.encode(), b"3.99.0 (elsewhere)", 1))
    elif damage == "truncated":
        Path(image).write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        head = data.index(b"\n") + 1
        Path(image).write_bytes(data[:head] + b"\x00\x00\x00\x00\x00\x00\x00\x40" + b"\xff" * 64)
    elif damage == "missing":
        os.unlink(image)
    else:
        Path(image).write_bytes(b"")
    got = _probe(root, image)
    assert got["pkgx.sub"]["value"] == "init-one"
    loaders = {got[n]["loader"] for n in got}
    if damage == "truncated":
        # The index is whole, the code of some modules is not: those go the usual way.
        assert loaders <= {"ImageFinder", "SourceFileLoader"}
    else:
        assert loaders == {"SourceFileLoader"}
    assert data.startswith(MAGIC)


def test_the_image_holds_the_whole_exec_path() -> None:
    """Every module the import budget allows on a standalone exec path, when it is
    loaded from source (frozen and extension modules keep their own loaders)."""
    names = set(image_modules())
    assert sorted(KANAL - {"shim"} - names) == []
    from importlib.util import find_spec

    from_source = set()
    for name in STDLIB:
        spec = find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            from_source.add(name)
    assert sorted(from_source - names) == []
    # kanald, the engine and the CLI never run in a plugin process.
    assert not [n for n in names if n.split(".")[:2] in (["kanal", "engine"], ["kanal", "daemon"])]
