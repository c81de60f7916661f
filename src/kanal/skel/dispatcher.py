"""The one CNI plugin dispatcher: environment + stdin in, result or error out.

Its streams and environment are injected so the same code serves a plugin run as
a process, a request handed to the warm daemon, an in-process IPAM delegation and
the tests. Errors leave as the CNI error object on stdout with exit code 1 (what
libcni parses); stderr carries logs only.
"""

from __future__ import annotations

import os
import sys

from kanal.errors import DecodeError, IncompatibleVersion, InvalidEnv, IOFailure, KanalError
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.spec.args import validate_network_name
from kanal.spec.env import parse_env
from kanal.spec.gojson import STRING, Struct, decode, loads
from kanal.spec.gotypes import VERSION_ONLY
from kanal.spec.versions import CURRENT, check_supported, version_ge, version_reply

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO, Any

    from kanal.skel.cmdargs import PluginRunner

__all__ = ["Dispatcher", "plugin_main"]

# Why a bound: a plugin must not be made to buffer arbitrary input (docs/cni-spec.md §1.6).
MAX_STDIN = 1 << 20

_MIN_VERSION = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}


class Dispatcher:
    """Runs one CNI command against a plugin's :class:`PluginFuncs`."""

    def __init__(
        self,
        env: Mapping[str, str],
        stdin: IO[bytes],
        stdout: IO[str],
        stderr: IO[str],
        cwd: str | None = None,
        *,
        runner: PluginRunner | None = None,
        process_exits: bool = False,
    ) -> None:
        """``cwd``: the runtime's working directory (default: this process's);
        ``runner``: how the plugin's delegates run (``CmdArgs.runner``);
        ``process_exits``: the process ends after this command (``CmdArgs``)."""
        self.runner = runner
        self.process_exits = process_exits
        self.env = env
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.cwd = cwd if cwd is not None else _getcwd()

    def run(self, funcs: PluginFuncs) -> int:
        """Dispatch; returns the process exit code (0 success, 1 CNI error)."""
        version = CURRENT
        try:
            return self._run(funcs)
        except _VersionKnown as vk:
            version, err = vk.version, vk.err
        except KanalError as e:
            err = e
        except Exception as e:  # any bug becomes code 999, never a traceback on stdout
            # lazy: only for a plugin's bug (traceback costs an exec ~3 ms)
            import traceback

            self.stderr.write(traceback.format_exc())
            err = KanalError(str(e) or type(e).__name__)
        self._print_error(err, version)
        return 1

    def _run(self, funcs: PluginFuncs) -> int:
        command = self.env.get("CNI_COMMAND", "")
        if command == "VERSION":
            # The runtime may send {"cniVersion": ...}; the answer does not depend on it.
            self._read_stdin(optional=True)
            # lazy: ADD and VERSION only: a DEL need not load the result codecs
            from kanal.spec.convert import dumps

            # Go prints the VERSION reply compact, with a newline.
            self.stdout.write(dumps(version_reply(funcs.versions), compact=True).decode() + "\n")
            return 0
        cmd_env = parse_env(self.env)
        data = self._read_stdin()
        conf = _decode_conf(data)
        _validate_name(conf)
        version = _conf_version(conf)
        try:
            check_supported(version, funcs.versions)
            minimum = _MIN_VERSION.get(command)
            if minimum and not version_ge(version, minimum):
                raise IncompatibleVersion(f"config version does not allow {command}")
            args = CmdArgs(
                command=command,
                container_id=cmd_env.container_id,
                netns=cmd_env.netns,
                ifname=cmd_env.ifname,
                args=cmd_env.args,
                # CNI_PATH as the runtime meant it: relative entries are its own.
                path=tuple(os.path.join(self.cwd, p) for p in cmd_env.path),
                stdin_data=data,
                conf=conf,
                cni_version=version,
                env=self.env,
                cwd=self.cwd,
                runner=self.runner,
                process_exits=self.process_exits,
            )
            if command == "ADD":
                # lazy: ADD only: a DEL need not load the result codecs
                from kanal.spec.convert import render_result

                result = funcs.add(args)
                self._print_json(render_result(result, version))
            elif command == "DEL":
                funcs.delete(args)
            elif command == "CHECK":
                funcs.check(args)
            elif command == "STATUS":
                if funcs.status is not None:
                    funcs.status(args)
            elif command == "GC":
                if funcs.gc is not None:
                    funcs.gc(args)
            else:  # parse_env already refuses unknown commands
                raise InvalidEnv(f"unknown CNI_COMMAND: {command}")
        except KanalError as e:
            raise _VersionKnown(version, e) from e
        except Exception as e:
            # lazy: only for a plugin's bug (traceback costs an exec ~3 ms)
            import traceback

            self.stderr.write(traceback.format_exc())
            raise _VersionKnown(version, KanalError(str(e) or type(e).__name__)) from e
        return 0

    def _read_stdin(self, optional: bool = False) -> bytes:
        try:
            data = self.stdin.read(MAX_STDIN + 1)
        except OSError as e:
            raise IOFailure("error reading from stdin", str(e)) from e
        if len(data) > MAX_STDIN:
            raise DecodeError("network config too large", f"more than {MAX_STDIN} bytes on stdin")
        if not data and not optional:
            raise DecodeError("error reading network config", "stdin is empty")
        return data

    def _print_json(self, obj: Any) -> None:
        # lazy: ADD and VERSION only: a DEL need not load the result codecs
        from kanal.spec.convert import dumps

        self.stdout.write(dumps(obj).decode())
        self.stdout.flush()

    def _print_error(self, err: KanalError, version: str) -> None:
        # lazy: errors only
        from kanal.spec.error import error_to_wire

        self._print_json(error_to_wire(err, version))


class _VersionKnown(Exception):
    """Carries the config's cniVersion with an error, for the error object."""

    def __init__(self, version: str, err: KanalError) -> None:
        super().__init__(str(err))
        self.version = version
        self.err = err


def _decode_conf(data: bytes) -> dict[str, Any]:
    conf = loads(data, "error decoding network config", MAX_STDIN)
    if not isinstance(conf, dict):
        raise DecodeError("error decoding network config", "not a JSON object")
    return conf


def _getcwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the directory was removed: no relative path can resolve
        return "/"


def _validate_name(conf: Mapping[str, Any]) -> None:
    """Go skel's ``validateConfig``: a valid ``name``, read by Go's rules.

    Raises:
        DecodeError: (code 6) ``name`` is not a string.
        InvalidConfig: (code 7) missing or invalid name.
    """
    spec = Struct("", [("name", STRING)], pkg="")
    name = decode(spec, conf, "error unmarshall network config", error=DecodeError)["name"]
    validate_network_name(name)


def _conf_version(conf: Mapping[str, Any]) -> str:
    """Go ``version.ConfigDecoder``: ``cniVersion`` read by Go's rules; "" is 0.1.0."""
    version: str = decode(
        VERSION_ONLY, conf, "decoding version from network config", error=DecodeError
    )["cniVersion"]
    return version or "0.1.0"


def plugin_main(funcs: PluginFuncs, runner: PluginRunner | None = None) -> None:
    """Entry point of a plugin run as its own process (installed plugins start in
    :func:`kanal.fastpath.standalone.main`, which gives the runner)."""
    code = Dispatcher(
        os.environ, sys.stdin.buffer, sys.stdout, sys.stderr, runner=runner, process_exits=True
    ).run(funcs)
    sys.stdout.flush()
    sys.exit(code)
