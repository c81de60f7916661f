"""Delegating to another plugin (IPAM) found on CNI_PATH, as Go's invoke.Delegate*.

How a plugin found there runs is not decided here: the caller of the dispatcher
injects a :class:`PluginRunner` (``CmdArgs.runner``). The one kanal has is
:class:`InProcessRunner`: the plugins its registry names run in this process
through the dispatcher (same input, same output, no interpreter start), anything
else is executed as a runtime would, by the exec function it was given. Who
builds it decides what the registry is: the engine names the executables it
installed (:mod:`kanal.runtime.inprocess`), a plugin process and kanald's plugin
socket recognise installed shims (:mod:`kanal.fastpath.standalone`).
"""

from __future__ import annotations

import io
import os

from kanal.errors import Internal, NotFound
from kanal.skel.dispatcher import Dispatcher

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO

    from kanal.skel.cmdargs import CmdArgs, PluginFuncs
    from kanal.spec.types import Result

    #: (path, stdin, env, cwd) -> stdout: executes a plugin; raises its error
    ExecFunc = Callable[[str, bytes, Mapping[str, str], str | None], bytes]

__all__ = ["InProcessRunner", "delegate", "find_plugin"]


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


class InProcessRunner:
    """Runs a plugin executable: kanal's own in this process, anything else by exec.

    ``registry(path)`` names the kanal plugin the executable at ``path`` is (None:
    not one of ours); ``load(name)`` gives its :class:`PluginFuncs`; ``exec_plugin``
    runs any other executable. ``log`` receives an in-process plugin's stderr (None:
    only an error carries it). Plugins run here delegate through this same runner.
    """

    def __init__(
        self,
        registry: Callable[[str], str | None],
        load: Callable[[str], PluginFuncs],
        exec_plugin: ExecFunc,
        log: IO[str] | None = None,
    ) -> None:
        self.registry = registry
        self.load = load
        self.exec_plugin = exec_plugin
        self.log = log

    def run(self, path: str, stdin: bytes, env: Mapping[str, str], cwd: str | None) -> bytes:
        """The plugin's stdout. Raises the plugin's error as a KanalError with its code."""
        name = self.registry(path)
        if name is None:
            return self.exec_plugin(path, stdin, env, cwd)
        out, err = io.StringIO(), io.StringIO()
        funcs = self.load(name)
        code = Dispatcher(dict(env), io.BytesIO(stdin), out, err, cwd, runner=self).run(funcs)
        if self.log is not None and err.getvalue():
            self.log.write(err.getvalue())
        if code != 0:
            from kanal.spec.error import error_from_wire  # lazy: errors only

            raise error_from_wire(out.getvalue().encode(), err.getvalue().encode(), exit_code=code)
        return out.getvalue().encode()


def delegate(command: str, plugin_type: str, args: CmdArgs) -> Result | None:
    """Run ``command`` on ``plugin_type`` with the caller's stdin and environment.

    Returns the parsed result for ADD (in the current model), None otherwise.
    Raises the delegate's error as a KanalError with its code.
    """
    path = find_plugin(plugin_type, args.path)
    if args.runner is None:
        raise Internal(f"cannot run plugin {plugin_type!r}: no plugin runner was given")
    env = dict(args.env)
    env["CNI_COMMAND"] = command
    out = args.runner.run(path, args.stdin_data, env, args.cwd)
    if command != "ADD":
        return None
    from kanal.spec.convert import parse_result  # lazy: ADD only (DEL need not load it)

    return parse_result(out, args.cni_version)
