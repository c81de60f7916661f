"""Install the scriptable noop test plugin (tests/fixtures/noop_plugin.py) as an executable."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

NOOP_SOURCE = Path(__file__).resolve().parents[2] / "fixtures" / "noop_plugin.py"


def install_noop(dest: Path, name: str = "noop") -> Path:
    """Write ``dest/name``: the noop plugin run by this test interpreter (no site, fast)."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / name
    path.write_text(f"#!{os.path.realpath(sys.executable)} -S\n" + NOOP_SOURCE.read_text())
    path.chmod(0o755)
    return path


def read_log(path: Path) -> list[dict[str, Any]]:
    """The noop plugin's call log: one dict per call, ``stdin`` decoded when it is JSON."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        try:
            entry["conf"] = json.loads(entry["stdin"])
        except ValueError:
            entry["conf"] = None
        out.append(entry)
    return out
