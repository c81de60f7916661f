"""What kanal has made, in one comparable value: store rows, kernel objects, files.

A test takes :func:`take` before and after an operation that must change nothing
(a refused request, a crash that must roll back) and asserts with
:func:`assert_unchanged`, which names every difference. Volatile values (packet
counters, address lifetimes, set element timeouts) are left out; everything else
counts, including a row rewritten with the same value (its revision changes).

- store: every row of the sqlite store (key, value, mod_rev), read-only;
- kernel: links with their addresses, routes of every table, and the nftables
  ruleset, in each namespace given (by name in /run/netns or by path);
- files: the state directory's tree (type, mode, size, content hash), without
  the store's own files and the sandboxes' logs (their processes write there).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Snapshot", "assert_unchanged", "diff", "settle", "take"]

Snapshot = dict[str, Any]

_VOLATILE = frozenset(
    {"packets", "bytes", "expires", "valid_life_time", "preferred_life_time", "metainfo"}
)
_SKIP_FILES = ("state.db", "state.db-wal", "state.db-shm", "state.db-journal")


def _scrub(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _scrub(x) for k, x in v.items() if k not in _VOLATILE}
    if isinstance(v, list):
        return [_scrub(x) for x in v]
    return v


def _ns_path(ns: str) -> str:
    return ns if ns.startswith("/") else f"/run/netns/{ns}"


def _in_ns(ns: str, *cmd: str) -> Any:
    p = subprocess.run(["nsenter", f"--net={_ns_path(ns)}", *cmd], capture_output=True, timeout=60)
    if p.returncode != 0:
        return {"error": p.stderr.decode(errors="replace").strip()}
    return json.loads(p.stdout) if p.stdout.strip() else []


def kernel(ns: str) -> dict[str, Any]:
    """Links + addresses, routes (all tables) and the nft ruleset of one namespace."""
    links = _in_ns(ns, "ip", "-j", "addr", "show")
    if isinstance(links, list):
        links = sorted(links, key=lambda x: x.get("ifname", ""))
    return {
        "links": _scrub(links),
        "routes": _scrub(_in_ns(ns, "ip", "-j", "route", "show", "table", "all")),
        "routes6": _scrub(_in_ns(ns, "ip", "-6", "-j", "route", "show", "table", "all")),
        "nft": _scrub(_in_ns(ns, "nft", "-j", "list", "ruleset")),
    }


def store_rows(db: Path) -> list[tuple[str, str, int]]:
    """Every row of a kanal sqlite store (read-only: a running kanald keeps writing it)."""
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT key, value, mod_rev FROM kv ORDER BY key").fetchall()
    finally:
        con.close()
    return [(k, bytes(v).decode(errors="replace"), r) for k, v, r in rows]


def files(root: Path) -> list[tuple[str, str, str, int, str]]:
    """(path, type, mode, size, sha256) of everything under ``root``."""
    out: list[tuple[str, str, str, int, str]] = []
    if not root.exists():
        return out
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for n in sorted([*dirs, *names]):
            p = Path(dirpath) / n
            rel = str(p.relative_to(root))
            if n in _SKIP_FILES and Path(dirpath) == root:
                continue
            try:
                st = p.lstat()
                mode = oct(stat.S_IMODE(st.st_mode))
                if stat.S_ISDIR(st.st_mode):
                    out.append((rel, "dir", mode, 0, ""))
                elif stat.S_ISREG(st.st_mode):
                    if n == "log" and Path(dirpath).parent.name == "sandboxes":
                        out.append((rel, "log", mode, 0, ""))
                        continue
                    digest = hashlib.sha256(p.read_bytes()).hexdigest()
                    out.append((rel, "file", mode, st.st_size, digest))
                else:
                    out.append((rel, stat.filemode(st.st_mode)[0], mode, 0, ""))
            except FileNotFoundError:
                # Gone between the listing and the look (an atomic write's temporary
                # file, renamed): not part of this snapshot. settle() compares whole
                # snapshots, so state still moving never passes as settled.
                continue
    return out


def take(
    namespaces: Sequence[str],
    state_dir: Path | None = None,
    *,
    netns_dir: Path | None = None,
    extra_dirs: Iterable[Path] = (),
) -> Snapshot:
    """The state of ``namespaces`` (plus every namespace file in ``netns_dir``),
    of the store and files under ``state_dir``, and of the files in ``extra_dirs``."""
    nss = list(namespaces)
    if netns_dir is not None and netns_dir.exists():
        nss += sorted(str(p) for p in netns_dir.iterdir())
    snap: Snapshot = {"kernel": {ns: kernel(ns) for ns in nss}}
    if netns_dir is not None:
        snap["netns"] = sorted(p.name for p in netns_dir.iterdir()) if netns_dir.exists() else []
    if state_dir is not None:
        snap["store"] = store_rows(state_dir / "state.db")
        snap["files"] = files(state_dir)
    for d in extra_dirs:
        snap[f"files:{d}"] = files(d)
    return snap


def _dad_pending(snap: Snapshot) -> bool:
    """An address still in IPv6 duplicate address detection on a link with carrier."""
    for k in snap.get("kernel", {}).values():
        for link in k.get("links") or []:
            if not isinstance(link, dict) or "NO-CARRIER" in link.get("flags", []):
                continue
            if any(a.get("tentative") for a in link.get("addr_info", [])):
                return True
    return False


def settle(take_fn: Callable[[], Snapshot], tries: int = 80) -> Snapshot:
    """A snapshot once the kernel has stopped moving on its own (IPv6 duplicate address
    detection ends, its local routes appear): no address tentative on a link with
    carrier, and three takes in a row equal, 0.25 s apart."""
    import time

    last, same = take_fn(), 0
    for _ in range(tries):
        time.sleep(0.25)
        now = take_fn()
        same = same + 1 if now == last and not _dad_pending(now) else 0
        if same >= 2:
            return now
        last = now
    raise AssertionError("the state kept changing: " + "; ".join(diff(last, take_fn())[:5]))


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two snapshots (empty: the same)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{path}/{k}: added {json.dumps(b[k], default=str)[:300]}")
            elif k not in b:
                out.append(f"{path}/{k}: removed {json.dumps(a[k], default=str)[:300]}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and a != b:
        if all(isinstance(x, tuple) for x in a + b):
            gone = [x for x in a if x not in b]
            new = [x for x in b if x not in a]
            return [f"{path}: removed {gone[:5]} added {new[:5]}"]
        if len(a) == len(b):
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff(x, y, f"{path}[{i}]")]
        return [f"{path}: {len(a)} items became {len(b)}: {json.dumps(b, default=str)[:300]}"]
    if a != b:
        return [f"{path}: {str(a)[:200]!r} became {str(b)[:200]!r}"]
    return []


def assert_unchanged(before: Snapshot, after: Snapshot, what: str = "") -> None:
    d = diff(before, after)
    assert not d, f"{what}: state changed:\n" + "\n".join(d[:20])
