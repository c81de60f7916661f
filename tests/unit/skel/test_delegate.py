"""Delegation through the injected runner: kanal's plugins in-process, others executed."""

from __future__ import annotations

import io
import ipaddress
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import Conflict, Internal, KanalError
from kanal.fastpath.install import install_plugins
from kanal.fastpath.standalone import installed_plugin
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.delegate import InProcessRunner, delegate
from kanal.skel.dispatcher import Dispatcher
from kanal.spec.types import IPConfig, Result
from kanal.spec.versions import ALL_VERSIONS


def _ipam(fail: bool = False, bug: bool = False) -> PluginFuncs:
    """A fake IPAM plugin: ADD hands out 10.0.0.2/24 (or fails with Conflict, or has
    a bug)."""

    def add(args: CmdArgs) -> Result:
        if bug:
            raise RuntimeError("boom")
        if fail:
            raise Conflict("address taken", "10.0.0.2")
        return Result(ips=[IPConfig(address=ipaddress.ip_interface("10.0.0.2/24"))])

    def nothing(args: CmdArgs) -> None:
        pass

    return PluginFuncs("ipam", ALL_VERSIONS, add, nothing, nothing)


def _upper(seen: list[Result | None]) -> PluginFuncs:
    """A fake interface plugin whose ADD delegates to the ``ipam`` type."""

    def add(args: CmdArgs) -> Result:
        r = delegate("ADD", "ipam", args)
        seen.append(r)
        assert r is not None
        return r

    def nothing(args: CmdArgs) -> None:
        delegate("DEL", "ipam", args)

    return PluginFuncs("upper", ALL_VERSIONS, add, nothing, nothing)


def _bin(tmp: Path) -> Path:
    d = tmp / "bin"
    d.mkdir()
    for name in ("ipam", "other"):
        p = d / name
        p.write_text("#!/bin/sh\nexit 3\n")
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return d


def _env(bindir: Path, command: str = "ADD") -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_NETNS": "/run/netns/x",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bindir),
    }


CONF = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "upper"}).encode()


def _runner(bindir: Path, ipam: PluginFuncs, execs: list[str]) -> InProcessRunner:
    def exec_plugin(path: str, stdin: bytes, env: Mapping[str, str], cwd: str | None) -> bytes:
        execs.append(path)
        raise KanalError("executed", code=11)

    registry = {str(bindir / "ipam"): "ipam"}
    return InProcessRunner(registry.get, {"ipam": ipam}.__getitem__, exec_plugin)


def test_a_registered_delegate_runs_in_process(tmp_path: Path) -> None:
    bindir = _bin(tmp_path)
    seen: list[Result | None] = []
    execs: list[str] = []
    runner = _runner(bindir, _ipam(), execs)
    out, err = io.StringIO(), io.StringIO()
    code = Dispatcher(_env(bindir), io.BytesIO(CONF), out, err, runner=runner).run(_upper(seen))
    assert code == 0, out.getvalue()
    assert execs == []
    assert seen[0] is not None
    assert [str(ipc.address) for ipc in seen[0].ips] == ["10.0.0.2/24"]
    assert json.loads(out.getvalue())["ips"][0]["address"] == "10.0.0.2/24"


def test_an_unregistered_delegate_is_executed(tmp_path: Path) -> None:
    bindir = _bin(tmp_path)
    execs: list[str] = []
    registry: dict[str, str] = {}
    runner = _runner(bindir, _ipam(), execs)
    runner.registry = registry.get
    out = io.StringIO()
    code = Dispatcher(_env(bindir), io.BytesIO(CONF), out, io.StringIO(), runner=runner).run(
        _upper([])
    )
    assert code == 1
    assert execs == [str(bindir / "ipam")]
    assert json.loads(out.getvalue())["code"] == 11


def test_the_delegates_error_keeps_its_code_and_its_log(tmp_path: Path) -> None:
    bindir = _bin(tmp_path)
    execs: list[str] = []
    runner = _runner(bindir, _ipam(fail=True), execs)
    log = io.StringIO()
    runner.log = log
    with pytest.raises(KanalError) as e:
        runner.run(str(bindir / "ipam"), CONF, _env(bindir), str(tmp_path))
    assert (e.value.code, e.value.msg, e.value.details) == (
        Conflict("x").code,
        "address taken",
        "10.0.0.2",
    )
    assert execs == [] and log.getvalue() == ""

    runner = _runner(bindir, _ipam(bug=True), execs)
    runner.log = log
    with pytest.raises(KanalError) as e:
        runner.run(str(bindir / "ipam"), CONF, _env(bindir), str(tmp_path))
    assert e.value.code == Internal("x").code and "boom" in e.value.msg
    assert "Traceback" in log.getvalue() and "RuntimeError: boom" in log.getvalue()


def test_delegating_without_a_runner_is_an_error(tmp_path: Path) -> None:
    bindir = _bin(tmp_path)
    out = io.StringIO()
    code = Dispatcher(_env(bindir), io.BytesIO(CONF), out, io.StringIO()).run(_upper([]))
    assert code == 1
    reply = json.loads(out.getvalue())
    assert reply["code"] == Internal("x").code and "no plugin runner" in reply["msg"]


def test_installed_shims_name_their_plugin_and_nothing_else_does(tmp_path: Path) -> None:
    paths = install_plugins(str(tmp_path / "inst"), socket_path=str(tmp_path / "s.sock"))
    assert {installed_plugin(p) for p in paths} == {os.path.basename(p) for p in paths}
    other = _bin(tmp_path) / "other"
    assert installed_plugin(str(other)) is None
    assert installed_plugin(str(tmp_path / "missing")) is None


def test_the_engine_runner_takes_an_explicit_registry(tmp_path: Path) -> None:
    from kanal.runtime.inprocess import InProcessExec

    paths = install_plugins(str(tmp_path / "inst"), socket_path=str(tmp_path / "s.sock"))
    host_local = next(p for p in paths if p.endswith("/host-local"))
    ex = InProcessExec({})  # the installed shim is not in the registry: executed
    env: dict[str, Any] = {**_env(tmp_path / "inst", "VERSION"), "PATH": os.environ["PATH"]}
    env["KANAL_SOCKET"] = str(tmp_path / "none.sock")
    out = ex.exec_plugin(host_local, b'{"cniVersion": "1.0.0"}', env)
    assert "supportedVersions" in json.loads(out)
    ex = InProcessExec({host_local: "host-local"})
    assert json.loads(ex.exec_plugin(host_local, b'{"cniVersion": "1.0.0"}', env)) == json.loads(
        out
    )
