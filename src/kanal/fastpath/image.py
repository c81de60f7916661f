"""The exec image: the plugin exec path's compiled modules in one file.

A standalone plugin exec imports ~60 modules. Found and loaded one by one, each
costs the import system's search (a directory listing per path entry, a stat per
candidate, the ``.pyc`` opened, checked and read) on top of the unmarshalling
itself: ~3-4 ms of a ~28 ms bridge ADD here. The installer writes this image next to
the executables; the shim's fallback (:mod:`kanal.fastpath.shim`) reads it with one
``read`` and serves the modules it holds from memory, unmarshalling only those
imported. See docs/fastpath.md ("The exec image").

It is a cache, never the truth: each entry records its source file's size and
modification time, and the shim imports a module the usual way when its source no
longer matches (an edited checkout, an upgraded standard library), when the
interpreter is not the one that built the image, or when the file is unreadable.

Layout (read by ``shim._load_image``, which stays free of imports):

    b"KNLIMG1 " + sys.version (UTF-8, no newline) + b"\\n"
    8 bytes, big-endian: n, the length of the marshalled index
    n bytes: marshal of
        {module name: (is_package, origin, cached, mtime_ns, size, offset, length)}
    the marshalled code objects, each at ``offset`` (from the end of the index)
"""

from __future__ import annotations

import marshal
import os
import sys
import tempfile
from importlib.util import find_spec

import kanal

__all__ = ["IMAGE_NAME", "MAGIC", "build_image", "image_modules"]

IMAGE_NAME = ".kanal-exec-image"
MAGIC = b"KNLIMG1 "

# kanal's packages a plugin command can import (kanald, the engine and the CLI never
# run in a plugin process), and its top-level modules the exec path uses.
_PACKAGES = (
    "kanal.spec",
    "kanal.skel",
    "kanal.plugins",
    "kanal.ipam",
    "kanal.netlink",
    "kanal.firewall",
    "kanal.fastpath",
)
_TOP = ("kanal", "kanal._dataclass", "kanal._ffi", "kanal._hash", "kanal._json", "kanal.errors")
# The standard library's source modules on the exec path (tests/e2e/test_import_budget.py).
# Frozen modules (os, stat, posixpath...) stay out: the interpreter loads those faster.
_STDLIB = (
    "__future__",
    "collections",
    "collections.abc",
    "contextlib",
    "functools",
    "ipaddress",
    "keyword",
    "operator",
    "reprlib",
    "types",
    "struct",
)


def image_modules() -> list[str]:
    """The names the image holds: kanal's exec-path packages, whole, and the standard
    library's modules that path imports."""
    root = os.path.dirname(os.path.abspath(kanal.__file__))
    names = list(_TOP)
    for pkg in _PACKAGES:
        base = os.path.join(root, *pkg.split(".")[1:])
        for dirpath, dirnames, files in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = os.path.relpath(dirpath, root).replace(os.sep, ".")
            prefix = "kanal" if rel == "." else f"kanal.{rel}"
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                names.append(prefix if f == "__init__.py" else f"{prefix}.{f[:-3]}")
    return names + list(_STDLIB)


def _entry(name: str) -> tuple[bool, str, str, int, int, bytes] | None:
    spec = find_spec(name)
    origin = spec.origin if spec is not None else None
    # Only modules loaded from a .py source: frozen and extension modules keep their loaders.
    if spec is None or origin is None or not origin.endswith(".py"):
        return None
    # The stat first: a source changed after it reads as stale to the shim.
    st = os.stat(origin)
    # The import system's own code object (its .pyc when current, else compiled).
    code = spec.loader.get_code(name)  # type: ignore[union-attr]
    if code is None:
        return None
    is_pkg = spec.submodule_search_locations is not None
    cached = spec.cached or ""
    return is_pkg, origin, cached, st.st_mtime_ns, st.st_size, marshal.dumps(code)


def build_image(dest_dir: str, names: list[str] | None = None) -> str:
    """Write the image into ``dest_dir`` (atomically) and return its path.

    Built by, and for, this interpreter: a shim run by another one ignores it.
    """
    index: dict[str, tuple[bool, str, str, int, int, int, int]] = {}
    blobs: list[bytes] = []
    offset = 0
    for name in names if names is not None else image_modules():
        entry = _entry(name)
        if entry is None or "\n" in entry[1]:
            continue
        is_pkg, origin, cached, mtime, size, blob = entry
        index[name] = (is_pkg, origin, cached, mtime, size, offset, len(blob))
        blobs.append(blob)
        offset += len(blob)
    head = marshal.dumps(index)
    data = b"".join(
        (MAGIC, sys.version.encode(), b"\n", len(head).to_bytes(8, "big"), head, *blobs)
    )
    path = os.path.join(dest_dir, IMAGE_NAME)
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f"{IMAGE_NAME}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
