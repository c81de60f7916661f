"""Install kanal's CNI plugin executables under the reference plugins' names."""

from __future__ import annotations

import os
import site
import sys
import tempfile
from pathlib import Path

import kanal
from kanal.errors import InvalidConfig
from kanal.fastpath.image import build_image
from kanal.fastpath.standalone import MARKER
from kanal.plugins.registry import PLUGINS

__all__ = ["DEFAULT_SOCKET", "install_plugins", "real_python", "site_paths"]

DEFAULT_SOCKET = "/run/kanal/kanald.sock"

_TEMPLATE = """#!{python} -IS
{marker}{name}
# Installed by `kanal cni install`: hands the request to kanald at {socket}
# (or runs the plugin in its own process when no daemon answers).
import sys
sys.path.insert(0, {shim_dir!r})
from shim import run
run({name!r}, {socket!r}, {src!r}, {paths!r}, {image!r})
"""


def real_python() -> str:
    """This interpreter, refusing shims: a pyenv shim costs ~80 ms per exec.

    In a virtual environment, the interpreter it was made from: the installed
    executables run it with ``-I -S`` and put the environment's site directories on
    their path themselves, and the venv's own start (finding and reading
    ``pyvenv.cfg``) would add ~0.2 ms to every exec.
    """
    exe = sys.executable
    base = getattr(sys, "_base_executable", "") or exe
    if sys.prefix != sys.base_prefix and os.path.isfile(base):
        exe = base
    with open(exe, "rb") as f:
        if f.read(2) == b"#!":
            raise InvalidConfig(f"{exe} is a script (a shim?), not a real interpreter")
    return exe


def site_paths() -> tuple[str, ...]:
    """The installing interpreter's site directories (where pyroute2 and kanal's other
    dependencies are): a shim runs ``python -S`` and puts them on its path itself."""
    found: list[str] = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    try:
        # lazy: optional; only to find where it is installed
        import pyroute2

        found.append(os.path.dirname(os.path.dirname(os.path.abspath(pyroute2.__file__))))
    except ImportError:
        pass
    out: list[str] = []
    for p in found:
        if os.path.isabs(p) and os.path.isdir(p) and "\n" not in p and p not in out:
            out.append(p)
    return tuple(out)


def install_plugins(
    dest_dir: str, socket_path: str | None = None, python: str | None = None
) -> list[str]:
    """Write one executable per kanal plugin into ``dest_dir``; returns their paths.

    Each file is written atomically (temp file + rename) so a runtime exec'ing a
    plugin while it is replaced never sees half a file ("text file busy" aside).
    """
    socket_path = socket_path or DEFAULT_SOCKET
    python = python or real_python()
    src = os.path.dirname(os.path.dirname(os.path.abspath(kanal.__file__)))
    for v, what in ((socket_path, "socket path"), (src, "source path"), (python, "python")):
        if "\n" in v or not os.path.isabs(v):
            raise InvalidConfig(f"invalid {what} {v!r}: must be an absolute path")
    os.makedirs(dest_dir, mode=0o755, exist_ok=True)
    out = []
    # The shim is imported as a top-level module from its own directory: one cached
    # .pyc, no kanal package imports (embedding its text would recompile it per exec).
    shim_dir = str(Path(__file__).resolve().parent)
    paths = tuple(p for p in site_paths() if p != src)
    # The exec path's modules in one file (docs/fastpath.md, "The exec image").
    image = build_image(dest_dir)
    for name in sorted(PLUGINS):
        body = _TEMPLATE.format(
            python=python,
            marker=MARKER.decode(),
            name=name,
            socket=socket_path,
            src=src,
            shim_dir=shim_dir,
            paths=paths,
            image=image,
        )
        fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            os.chmod(tmp, 0o755)  # noqa: S103 - plugin executables are world-executable
            path = os.path.join(dest_dir, name)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        out.append(path)
    return out
