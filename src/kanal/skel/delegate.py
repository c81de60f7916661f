"""Delegating to another plugin (IPAM) found on CNI_PATH, as Go's invoke.Delegate*.

When the plugin found on CNI_PATH is one of kanal's own installed shims, it is run
in-process through the dispatcher instead of being executed: same input, same
output, no interpreter start. Anything else is executed as a runtime would.
"""

from __future__ import annotations

import os
import sys

from kanal.errors import KanalError, NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from kanal.skel.cmdargs import CmdArgs
    from kanal.spec.types import Result

__all__ = ["MARKER", "delegate", "find_plugin", "kanal_plugin_name"]

# Installed shims carry this line; see kanal.fastpath.install.
MARKER = b"# kanal-plugin: "
_marker_cache: dict[tuple[str, int, int], str | None] = {}


def find_plugin(name: str, paths: tuple[str, ...] | list[str]) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise NotFound(f"invalid plugin name {name!r}")
    for d in paths:
        if not d:
            continue
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise NotFound(f"failed to find plugin {name!r} in path {list(paths)}")


def kanal_plugin_name(path: str) -> str | None:
    """The kanal plugin an installed shim runs, or None for any other executable."""
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


def delegate(command: str, plugin_type: str, args: CmdArgs) -> Result | None:
    """Run ``command`` on ``plugin_type`` with the caller's stdin and environment.

    Returns the parsed result for ADD (in the current model), None otherwise.
    Raises the delegate's error as a KanalError with its code.
    """
    path = find_plugin(plugin_type, args.path)
    env = dict(args.env)
    env["CNI_COMMAND"] = command
    name = kanal_plugin_name(path)
    if name is not None:
        out = _run_in_process(name, env, args.stdin_data, args.cwd)
    else:
        from kanal.runtime.invoke import SubprocessExec

        out = SubprocessExec().exec_plugin(path, args.stdin_data, env, cwd=args.cwd)
    if command != "ADD":
        return None
    from kanal.spec.convert import parse_result

    return parse_result(out, args.cni_version)


def _run_in_process(name: str, env: dict[str, str], stdin: bytes, cwd: str) -> bytes:
    import io

    from kanal.plugins.registry import load_plugin
    from kanal.skel.dispatcher import Dispatcher

    out = io.StringIO()
    code = Dispatcher(env, io.BytesIO(stdin), out, sys.stderr, cwd).run(load_plugin(name))
    data = out.getvalue().encode()
    if code != 0:
        from kanal.spec.error import error_from_wire

        err: KanalError = error_from_wire(data)
        raise err
    return data
