"""Running kanal's own plugins inside the calling process.

The engine inside ``kanald`` executes configuration lists through the libcni
runtime like any runtime would; when a plugin found on the search path is one of
kanal's installed shims, starting a process for it would only hand the request
back to this same daemon. :class:`InProcessExec` runs those through the
dispatcher directly (same stdin, env and stdout bytes as the exec), and anything
else (a third-party plugin in a CNI network) as a child process.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from kanal.runtime.invoke import SubprocessExec

__all__ = ["InProcessExec"]


class InProcessExec(SubprocessExec):
    def exec_plugin(
        self, path: str, stdin: bytes, env: Mapping[str, str], *, cwd: str | None = None
    ) -> bytes:
        from kanal.skel.delegate import kanal_plugin_name

        name = kanal_plugin_name(path)
        if name is None:
            return super().exec_plugin(path, stdin, env, cwd=cwd)
        from kanal.plugins.registry import load_plugin
        from kanal.skel.dispatcher import Dispatcher

        out, err = io.StringIO(), io.StringIO()
        code = Dispatcher(dict(env), io.BytesIO(stdin), out, err, cwd).run(load_plugin(name))
        if code != 0:
            raise self._plugin_error(code, out.getvalue().encode(), err.getvalue().encode())
        return out.getvalue().encode()
