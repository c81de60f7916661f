"""A plugin run in its own process (no daemon): the shim's fallback.

Runs in the shim's interpreter (``python -I -S``): the same dispatcher kanald
uses, with this process's environment and stdin. What it imports is the exec
path of one command of one plugin, kept lean (no pyroute2, no ``typing``,
``dataclasses``, ``json``, ``re``...; see docs/fastpath.md); a test pins it
(tests/e2e/test_import_budget.py).
"""

from __future__ import annotations

import os
import sys


def main(name: str, stdin: bytes | None = None) -> None:
    """Run plugin ``name`` and exit. ``stdin`` is the request when already read."""
    from kanal.plugins.registry import load_plugin
    from kanal.skel.dispatcher import Dispatcher

    if stdin is None:
        stream = sys.stdin.buffer
    else:
        from io import BytesIO

        stream = BytesIO(stdin)
    code = Dispatcher(os.environ, stream, sys.stdout, sys.stderr).run(load_plugin(name))
    sys.stdout.flush()
    sys.stderr.flush()
    # Nothing is left to finalise (every file is closed, no thread runs): skipping the
    # interpreter's teardown of a few hundred objects and modules saves ~1 ms per exec.
    os._exit(code)
