"""Finding and executing plugins for real (child processes, no root)."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from kanal.errors import DecodeError, InvalidConfig, KanalError
from kanal.runtime.invoke import (
    PluginNotFound,
    SubprocessExec,
    find_in_path,
    format_cni_args,
    get_version_info,
    plugin_env,
)
from tests.unit.runtime.noop import install_noop

PY = os.path.realpath(sys.executable)


def script(path: Path, body: str) -> Path:
    """An executable Python script at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{PY} -S\nimport os, sys\n{body}\n")
    path.chmod(0o755)
    return path


# --- find_in_path --------------------------------------------------------------------


def test_find_first_directory_wins(tmp_path: Path) -> None:
    a = script(tmp_path / "a" / "plug", "")
    script(tmp_path / "b" / "plug", "")
    assert find_in_path("plug", [str(tmp_path / "a"), str(tmp_path / "b")]) == str(a)
    assert find_in_path("plug", ["", str(tmp_path / "b")]) == str(tmp_path / "b" / "plug")


def test_find_skips_non_regular_files(tmp_path: Path) -> None:
    (tmp_path / "a" / "plug").mkdir(parents=True)
    b = script(tmp_path / "b" / "plug", "")
    assert find_in_path("plug", [str(tmp_path / "a"), str(tmp_path / "b")]) == str(b)


def test_find_not_found_message_is_libcni_s(tmp_path: Path) -> None:
    with pytest.raises(PluginNotFound) as ei:
        find_in_path("bridge", ["/opt/cni/bin", str(tmp_path)])
    assert str(ei.value) == f'failed to find plugin "bridge" in path [/opt/cni/bin {tmp_path}]'
    assert ei.value.code == 3


@pytest.mark.parametrize(
    ("name", "paths", "msg"),
    [
        ("", ["/x"], "no plugin name provided"),
        ("../bin/sh", ["/x"], "invalid plugin name: ../bin/sh"),
        ("a/b", ["/x"], "invalid plugin name: a/b"),
        ("bridge", [], "no paths provided"),
        ("bridge", [""], "no paths provided"),
    ],
)
def test_find_bad_input(name: str, paths: list[str], msg: str) -> None:
    with pytest.raises(InvalidConfig) as ei:
        find_in_path(name, paths)
    assert ei.value.msg == msg


# --- environment ---------------------------------------------------------------------


def test_plugin_env_sets_all_cni_vars_over_the_base() -> None:
    base = {"PATH": "/bin", "CNI_NETNS": "/stale", "CNI_IFNAME": "old"}
    env = plugin_env(
        "ADD",
        container_id="c",
        netns="/run/netns/n",
        ifname="eth0",
        args=[("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")],
        path=["/a", "/b"],
        base=base,
    )
    assert env == {
        "PATH": "/bin",
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "c",
        "CNI_NETNS": "/run/netns/n",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=p",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/a:/b",
    }
    assert base["CNI_NETNS"] == "/stale"  # the base mapping is not modified
    gc = plugin_env("GC", path="/a", base=base)
    assert gc["CNI_NETNS"] == "" and gc["CNI_IFNAME"] == "" and gc["CNI_PATH"] == "/a"


def test_plugin_env_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANAL_TEST_MARK", "yes")
    assert plugin_env("DEL")["KANAL_TEST_MARK"] == "yes"


def test_format_cni_args() -> None:
    assert format_cni_args([]) == ""
    assert format_cni_args([("A", "1"), ("B", "x=y")]) == "A=1;B=x=y"


# --- SubprocessExec ------------------------------------------------------------------


def test_exec_passes_stdin_and_exact_env(tmp_path: Path) -> None:
    p = script(
        tmp_path / "echo",
        "import json\n"
        "data = sys.stdin.buffer.read().decode()\n"
        "sys.stdout.write(json.dumps({'stdin': data, 'env': dict(os.environ)}))",
    )
    out = SubprocessExec().exec_plugin(str(p), b'{"x":1}', {"CNI_COMMAND": "ADD", "ONLY": "me"})
    got = json.loads(out)
    assert got["stdin"] == '{"x":1}'
    assert {k: v for k, v in got["env"].items() if k != "LC_CTYPE"} == {
        "CNI_COMMAND": "ADD",
        "ONLY": "me",
    }


def test_exec_forwards_stderr_on_success(tmp_path: Path) -> None:
    p = script(tmp_path / "p", "sys.stderr.write('log line\\n'); print('{}')")
    sink = io.BytesIO()
    assert SubprocessExec(stderr=sink).exec_plugin(str(p), b"", {}) == b"{}\n"
    assert sink.getvalue() == b"log line\n"
    quiet = io.BytesIO()
    SubprocessExec(stderr=quiet, forward_stderr=False).exec_plugin(str(p), b"", {})
    assert quiet.getvalue() == b""


def test_exec_error_json_keeps_code_and_class(tmp_path: Path) -> None:
    err = {"cniVersion": "1.0.0", "code": 7, "msg": "bad config", "details": "key x"}
    p = script(tmp_path / "p", f"print({json.dumps(json.dumps(err))}); sys.exit(1)")
    with pytest.raises(InvalidConfig) as ei:
        SubprocessExec().exec_plugin(str(p), b"", {})
    assert (ei.value.code, ei.value.msg, ei.value.details) == (7, "bad config", "key x")


def test_exec_plugin_specific_code(tmp_path: Path) -> None:
    p = script(tmp_path / "p", 'print(\'{"code": 142, "msg": "custom"}\'); sys.exit(2)')
    with pytest.raises(KanalError) as ei:
        SubprocessExec().exec_plugin(str(p), b"", {})
    assert ei.value.code == 142 and ei.value.msg == "custom"


def test_exec_failure_with_only_stderr(tmp_path: Path) -> None:
    p = script(tmp_path / "p", "sys.stderr.write('panic: boom\\n'); sys.exit(3)")
    with pytest.raises(KanalError) as ei:
        SubprocessExec().exec_plugin(str(p), b"", {})
    assert str(ei.value) == 'netplugin failed: "panic: boom\\n": exit status 3'


def test_exec_failure_with_no_output(tmp_path: Path) -> None:
    p = script(tmp_path / "p", "sys.exit(1)")
    with pytest.raises(KanalError) as ei:
        SubprocessExec().exec_plugin(str(p), b"", {})
    assert str(ei.value) == "netplugin failed with no error message: exit status 1"


def test_exec_failure_with_garbage_stdout(tmp_path: Path) -> None:
    p = script(tmp_path / "p", "print('oops'); sys.exit(1)")
    with pytest.raises(
        KanalError, match='netplugin failed but error parsing its diagnostic message "oops'
    ):
        SubprocessExec().exec_plugin(str(p), b"", {})


def test_exec_killed_by_signal(tmp_path: Path) -> None:
    p = script(tmp_path / "p", "import signal; os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(KanalError, match="signal: killed$"):
        SubprocessExec().exec_plugin(str(p), b"", {})


def test_exec_not_executable(tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.write_text("#!/bin/sh\n")
    p.chmod(0o644)
    with pytest.raises(KanalError) as ei:
        SubprocessExec().exec_plugin(str(p), b"", {})
    assert (
        str(ei.value) == f"netplugin failed with no error message: fork/exec {p}: permission denied"
    )


def test_exec_timeout(tmp_path: Path) -> None:
    p = script(tmp_path / "p", "sys.stdin.read(); import time; time.sleep(30)")
    with pytest.raises(KanalError, match="killed after 0.2 s"):
        SubprocessExec(timeout=0.2).exec_plugin(str(p), b"", {})


def test_text_file_busy_is_retried(tmp_path: Path) -> None:
    # A plugin binary still open for writing (an upgrade in progress) gives ETXTBSY.
    p = tmp_path / "plug"
    p.write_text(f"#!{PY} -S\nprint('{{}}')\n")
    p.chmod(0o755)
    writer = os.open(p, os.O_WRONLY)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        os.close(writer)  # the "upgrade" finishes while the runtime waits

    try:
        out = SubprocessExec(sleep=sleep).exec_plugin(str(p), b"", {})
    finally:
        if not sleeps:
            os.close(writer)
    assert out == b"{}\n"
    assert sleeps == [1.0]


def test_text_file_busy_gives_up_after_five_retries(tmp_path: Path) -> None:
    p = tmp_path / "plug"
    p.write_text("#!/bin/sh\n")
    p.chmod(0o755)
    writer = os.open(p, os.O_WRONLY)
    sleeps: list[float] = []
    try:
        with pytest.raises(KanalError, match="text file busy"):
            SubprocessExec(sleep=sleeps.append).exec_plugin(str(p), b"", {})
    finally:
        os.close(writer)
    assert sleeps == [1.0] * 5


def test_decode_version(tmp_path: Path) -> None:
    assert SubprocessExec().decode_version(b'{"cniVersion":"0.2.0"}') == ["0.1.0", "0.2.0"]
    with pytest.raises(DecodeError):
        SubprocessExec().decode_version(b"{}")


# --- VERSION through the real noop plugin ---------------------------------------------


def test_get_version_info_real_plugin(tmp_path: Path) -> None:
    p = install_noop(tmp_path / "bin")
    log = tmp_path / "log"
    versions = get_version_info(SubprocessExec(), str(p), {"NOOP_LOG": str(log)})
    assert versions == ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
    entry = json.loads(log.read_text())
    assert entry["command"] == "VERSION"
    assert entry["env"]["CNI_NETNS"] == "dummy" and entry["env"]["CNI_CONTAINERID"] == ""
    assert json.loads(entry["stdin"]) == {"cniVersion": "1.1.0"}


def test_get_version_info_legacy_real_plugin(tmp_path: Path) -> None:
    p = install_noop(tmp_path / "bin")
    s = tmp_path / "script.json"
    s.write_text(
        json.dumps({"VERSION": {"error": {"code": 4, "msg": "unknown CNI_COMMAND: VERSION"}}})
    )
    assert get_version_info(SubprocessExec(), str(p), {"NOOP_SCRIPT": str(s)}) == ["0.1.0"]


def test_stderr_forwarded_when_sys_stderr_is_text_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = script(tmp_path / "p", "sys.stderr.write('hello'); print('{}')")
    sink = io.StringIO()
    monkeypatch.setattr(sys, "stderr", sink)
    SubprocessExec().exec_plugin(str(p), b"", {})
    assert sink.getvalue() == "hello"
