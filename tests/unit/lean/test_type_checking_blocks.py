"""Names imported under a module's own ``TYPE_CHECKING = False`` block exist for type
checkers only: nothing may use them at run time (it would be a NameError on the exec
path). ruff checks exactly that (TC004) for typing's TYPE_CHECKING, so it runs on a
copy of the sources in which the local flag reads as typing's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"


def _ruff(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--target-version",
            "py311",
            "--select",
            "TC004,F821",
            str(tree),
        ],
        capture_output=True,
        text=True,
    )


def _copy_as_typing(dst: Path) -> Path:
    tree = dst / "src"
    shutil.copytree(SRC, tree, ignore=shutil.ignore_patterns("__pycache__"))
    for path in tree.rglob("*.py"):
        text = path.read_text()
        if "\nTYPE_CHECKING = False\n" in text:
            path.write_text(
                text.replace("\nTYPE_CHECKING = False\n", "\nfrom typing import TYPE_CHECKING\n")
            )
    return tree


def test_type_checking_imports_are_not_used_at_run_time(tmp_path: Path) -> None:
    p = _ruff(_copy_as_typing(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_check_catches_a_run_time_use(tmp_path: Path) -> None:
    tree = _copy_as_typing(tmp_path)
    bad = tree / "kanal" / "spec" / "versions.py"
    bad.write_text(bad.read_text() + "\n\nSEQ = Sequence\n")  # Sequence: typing-only there
    p = _ruff(tree)
    assert p.returncode != 0 and "TC004" in p.stdout
