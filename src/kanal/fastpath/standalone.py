"""A plugin run in its own process (no daemon): the shim's fallback.

Runs in the shim's interpreter (``python -I -S``): the same dispatcher kanald
uses, with this process's environment and stdin. What it imports is the exec
path of one command of one plugin, kept lean (no pyroute2, no ``typing``,
``dataclasses``, ``json``, ``re``...; see docs/fastpath.md); a test pins it
(tests/e2e/test_import_budget.py).

Also the registry of installed plugins, for delegation here and in kanald's
plugin socket: an executable on CNI_PATH is one of kanal's plugins when it is a
shim :mod:`kanal.fastpath.install` wrote, which names its plugin on a line of its
own (:data:`MARKER`). Such a delegate runs in-process; any other is executed.
"""

from __future__ import annotations

import os
import sys
from io import BytesIO

from kanal.plugins.registry import load_plugin
from kanal.skel.delegate import InProcessRunner
from kanal.skel.dispatcher import Dispatcher

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MARKER", "installed_plugin", "main", "plugin_runner"]

# Installed shims carry this line; see kanal.fastpath.install.
MARKER = b"# kanal-plugin: "
_marker_cache: dict[tuple[str, int, int], str | None] = {}


def installed_plugin(path: str) -> str | None:
    """The kanal plugin an installed shim at ``path`` runs, or None for any other file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_ino, st.st_mtime_ns)
    if key in _marker_cache:
        return _marker_cache[key]
    name = None
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        i = head.find(MARKER)
        if i >= 0:
            name = head[i + len(MARKER) :].split(b"\n", 1)[0].decode().strip() or None
    except OSError:
        name = None
    _marker_cache[key] = name
    return name


def _exec(path: str, stdin: bytes, env: Mapping[str, str], cwd: str | None) -> bytes:
    # lazy: only a delegate that is not kanal's needs it (subprocess costs an exec ~9 ms)
    from kanal.runtime.invoke import SubprocessExec

    return SubprocessExec().exec_plugin(path, stdin, env, cwd=cwd)


def plugin_runner() -> InProcessRunner:
    """The runner of a plugin process (and kanald's plugin socket): installed shims
    in-process, their stderr on this process's, anything else executed."""
    return InProcessRunner(installed_plugin, load_plugin, _exec, log=sys.stderr)


def main(name: str, stdin: bytes | None = None) -> None:
    """Run plugin ``name`` and exit. ``stdin`` is the request when already read."""
    stream = sys.stdin.buffer if stdin is None else BytesIO(stdin)
    runner = plugin_runner()
    code = Dispatcher(
        os.environ, stream, sys.stdout, sys.stderr, runner=runner, process_exits=True
    ).run(load_plugin(name))
    sys.stdout.flush()
    sys.stderr.flush()
    # Nothing is left to finalise (every file is closed, no thread runs): skipping the
    # interpreter's teardown of a few hundred objects and modules saves ~1 ms per exec.
    os._exit(code)
