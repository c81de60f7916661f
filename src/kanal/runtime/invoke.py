"""Finding and running CNI plugins: the runtime's side of the exec protocol.

Go reference: ``pkg/invoke`` (``exec.go``, ``raw_exec.go``, ``find.go``, ``args.go``).
The :class:`Exec` Protocol is the seam tests replace; :class:`SubprocessExec` is the
real one. Kept light (no JSON result handling here) because plugins delegating to
IPAM import it on their hot path.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Protocol

from kanal.errors import InvalidConfig, KanalError, NotFound
from kanal.spec.gotext import quote
from kanal.spec.versions import decode_version_reply, legacy_supported_versions

__all__ = [
    "VERSION_PROBE_STDIN",
    "Exec",
    "PluginNotFound",
    "SubprocessExec",
    "find_in_path",
    "format_cni_args",
    "get_version_info",
    "plugin_env",
]

# What libcni sends to VERSION: the version it implements, whatever the config says.
VERSION_PROBE_STDIN = b'{"cniVersion":"1.1.0"}'


class PluginNotFound(NotFound):
    """No plugin executable of that name on the search path."""


class Exec(Protocol):
    """How the runtime finds and runs plugins (Go ``invoke.Exec``).

    Implementations: :class:`SubprocessExec` (real); tests use in-memory fakes.
    """

    def exec_plugin(self, path: str, stdin: bytes, env: Mapping[str, str]) -> bytes:
        """Run the plugin at ``path`` with ``stdin`` and exactly ``env``; return its stdout.

        ``env`` is the complete environment of the child (build it with
        :func:`plugin_env`). Not idempotent: the plugin acts.

        Raises:
            KanalError: the plugin failed. For a non-zero exit this is the decoded
                CNI error object (its ``code`` kept), or libcni's "netplugin failed..."
                text when stdout held none.
        """
        ...

    def find_in_path(self, name: str, paths: Sequence[str]) -> str:
        """The path of plugin ``name`` in the first directory of ``paths`` holding it.

        Raises:
            InvalidConfig: empty name, a name with "/", or no paths.
            PluginNotFound: ``failed to find plugin "x" in path [a b]`` (libcni's text).
        """
        ...

    def decode_version(self, data: bytes) -> list[str]:
        """A plugin's VERSION stdout to its supported versions.

        Raises:
            DecodeError: not a valid VERSION reply.
        """
        ...


def _go_list(items: Iterable[str]) -> str:
    # fmt's %s of a []string: [a b c]
    return "[" + " ".join(items) + "]"


def find_in_path(name: str, paths: Sequence[str]) -> str:
    """Go ``invoke.FindInPath``: the first regular file ``<dir>/<name>``.

    Empty entries of ``paths`` are skipped (Go would look relative to the working
    directory for them).

    Raises:
        InvalidConfig: empty ``name``, a ``name`` containing "/", no paths.
        PluginNotFound: not in any directory.
    """
    if name == "":
        raise InvalidConfig("no plugin name provided")
    if "/" in name:
        raise InvalidConfig(f"invalid plugin name: {name}")
    dirs = [p for p in paths if p]
    if not dirs:
        raise InvalidConfig("no paths provided", "the plugin search path (CNI_PATH) is empty")
    for d in dirs:
        full = os.path.join(d, name)
        try:
            st = os.stat(full)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            return full
    raise PluginNotFound(f"failed to find plugin {quote(name)} in path {_go_list(paths)}")


def format_cni_args(pairs: Iterable[tuple[str, str]]) -> str:
    """``[("K","V"), ("A","B")]`` -> ``"K=V;A=B"`` (Go ``stringify``)."""
    return ";".join(f"{k}={v}" for k, v in pairs)


def plugin_env(
    command: str,
    *,
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    args: Iterable[tuple[str, str]] | str = (),
    path: Sequence[str] | str = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one plugin call (Go ``invoke.Args.AsEnv``).

    The caller's environment (``base``, default ``os.environ``) with the six CNI_*
    variables set, always, even when empty (so a stale CNI_NETNS of the caller never
    leaks into a GC call). ``args`` may be pairs or an already formatted string;
    ``path`` a list of directories or a ":"-joined string.
    """
    env = dict(os.environ if base is None else base)
    env["CNI_COMMAND"] = command
    env["CNI_CONTAINERID"] = container_id
    env["CNI_NETNS"] = netns
    env["CNI_ARGS"] = args if isinstance(args, str) else format_cni_args(args)
    env["CNI_IFNAME"] = ifname
    env["CNI_PATH"] = path if isinstance(path, str) else os.pathsep.join(path)
    return env


def _signal_name(num: int) -> str:
    # As Go's ProcessState prints it: "signal: killed", "signal: segmentation fault".
    try:
        return (signal.strsignal(num) or str(num)).lower()
    except ValueError:
        return str(num)


class SubprocessExec:
    """Runs plugins as child processes (Go ``invoke.RawExec`` + ``PluginDecoder``).

    The plugin is executed directly (argument list, no shell) with the given stdin
    and environment. "text file busy" (a plugin binary being replaced) is retried
    ``busy_retries`` times, ``busy_delay`` seconds apart, as libcni does. On success
    the plugin's stderr is copied to ``stderr`` (default: this process's stderr) when
    ``forward_stderr`` is true; stderr is informational only.

    ``timeout`` (seconds, None = wait forever, as libcni without a context deadline)
    kills a plugin that hangs. ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        *,
        stderr: IO[bytes] | None = None,
        forward_stderr: bool = True,
        timeout: float | None = None,
        busy_retries: int = 5,
        busy_delay: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._stderr = stderr
        self._forward_stderr = forward_stderr
        self._timeout = timeout
        self._busy_retries = busy_retries
        self._busy_delay = busy_delay
        self._sleep = sleep

    def exec_plugin(
        self, path: str, stdin: bytes, env: Mapping[str, str], *, cwd: str | None = None
    ) -> bytes:
        """See :meth:`Exec.exec_plugin`; ``cwd``: the child's working directory
        (default: this process's)."""
        attempt = 0
        while True:
            try:
                proc = subprocess.run(
                    [path],
                    input=stdin,
                    capture_output=True,
                    env=dict(env),
                    cwd=cwd,
                    timeout=self._timeout,
                    check=False,
                )
                break
            except subprocess.TimeoutExpired as e:
                raise KanalError(
                    f"netplugin {path} killed after {self._timeout} s without answering"
                ) from e
            except OSError as e:
                if e.errno == errno.ETXTBSY and attempt < self._busy_retries:
                    # The binary is being written (an upgrade in progress): wait, retry.
                    attempt += 1
                    self._sleep(self._busy_delay)
                    continue
                reason = (e.strerror or str(e)).lower()
                raise KanalError(
                    f"netplugin failed with no error message: fork/exec {path}: {reason}",
                    code=0,
                ) from e
        if proc.returncode != 0:
            raise self._plugin_error(proc.returncode, proc.stdout, proc.stderr)
        if self._forward_stderr and proc.stderr:
            self._forward(proc.stderr)
        return proc.stdout

    def _forward(self, data: bytes) -> None:
        try:
            if self._stderr is not None:
                self._stderr.write(data)
                self._stderr.flush()
                return
            buffer = getattr(sys.stderr, "buffer", None)  # absent when stderr was replaced
            if buffer is not None:
                buffer.write(data)
                buffer.flush()
            else:
                sys.stderr.write(data.decode("utf-8", "replace"))
                sys.stderr.flush()
        except (OSError, ValueError):
            pass  # informational only

    @staticmethod
    def _plugin_error(returncode: int, stdout: bytes, stderr: bytes) -> KanalError:
        # lazy: errors only
        from kanal.spec.error import error_from_wire

        if returncode > 0:
            return error_from_wire(stdout, stderr, exit_code=returncode)
        err = error_from_wire(stdout, stderr)
        if stdout:
            return err
        # Killed by a signal: Go's ProcessState text is "signal: killed".
        return KanalError(f"{err.msg}: signal: {_signal_name(-returncode)}", code=err.code)

    def find_in_path(self, name: str, paths: Sequence[str]) -> str:
        return find_in_path(name, paths)

    def decode_version(self, data: bytes) -> list[str]:
        return decode_version_reply(data)


def get_version_info(
    exec_: Exec, path: str, base_env: Mapping[str, str] | None = None
) -> list[str]:
    """Ask the plugin at ``path`` which spec versions it supports (Go ``GetVersionInfo``).

    Sends VERSION with the dummy CNI_NETNS/CNI_IFNAME/CNI_PATH values old skel
    versions insist on and an empty container ID (what podman's probe looks like).
    A pre-0.2.0 plugin answering "unknown CNI_COMMAND: VERSION" supports 0.1.0.

    Raises:
        KanalError: the plugin failed otherwise; DecodeError: a bad reply.
    """
    env = plugin_env("VERSION", netns="dummy", ifname="dummy", path="dummy", base=base_env)
    try:
        out = exec_.exec_plugin(path, VERSION_PROBE_STDIN, env)
    except KanalError as e:
        legacy = legacy_supported_versions(e)
        if legacy is not None:
            return legacy
        raise
    return exec_.decode_version(out)
