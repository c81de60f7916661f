"""The dispatcher with injected env/stdin/stdout and a fake plugin."""

from __future__ import annotations

import io
import ipaddress
import json
from typing import Any

import pytest

from kanal.errors import Conflict, InvalidConfig
from kanal.skel.cmdargs import CmdArgs, PluginFuncs
from kanal.skel.dispatcher import MAX_STDIN, Dispatcher
from kanal.spec.types import Interface, IPConfig, Result
from kanal.spec.versions import ALL_VERSIONS

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, CmdArgs]] = []

    def add(self, args: CmdArgs) -> Result:
        self.calls.append(("ADD", args))
        return Result(
            interfaces=[Interface(name="eth0", mac="0a:58:0a:00:00:02", sandbox=args.netns)],
            ips=[
                IPConfig(
                    address=ipaddress.ip_interface("10.0.0.2/24"),
                    gateway=ipaddress.ip_address("10.0.0.1"),
                    interface=0,
                )
            ],
        )

    def delete(self, args: CmdArgs) -> None:
        self.calls.append(("DEL", args))

    def check(self, args: CmdArgs) -> None:
        self.calls.append(("CHECK", args))

    def status(self, args: CmdArgs) -> None:
        self.calls.append(("STATUS", args))

    def funcs(self, versions: tuple[str, ...] = ALL_VERSIONS) -> PluginFuncs:
        return PluginFuncs(
            about="t",
            versions=versions,
            add=self.add,
            delete=self.delete,
            check=self.check,
            status=self.status,
        )


def run(env: dict[str, str], stdin: bytes, funcs: PluginFuncs) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    code = Dispatcher(env, io.BytesIO(stdin), out, err).run(funcs)
    text = out.getvalue()
    return code, (json.loads(text) if text else None), err.getvalue()


def conf(version: str, **kw: Any) -> bytes:
    return json.dumps({"cniVersion": version, "name": "net1", "type": "fake", **kw}).encode()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_renders_result_at_config_version(version: str) -> None:
    rec = Recorder()
    code, out, _ = run(ENV, conf(version), rec.funcs())
    assert code == 0
    assert out["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert out["ip4"]["ip"] == "10.0.0.2/24"
    else:
        assert out["ips"][0]["address"] == "10.0.0.2/24"
        assert ("version" in out["ips"][0]) == version.startswith("0.")
    ((cmd, args),) = rec.calls
    assert (cmd, args.container_id, args.ifname, args.cni_version) == ("ADD", "c1", "eth0", version)


def test_version_command_needs_only_cni_command() -> None:
    code, out, _ = run({"CNI_COMMAND": "VERSION"}, b"", Recorder().funcs(("0.4.0", "1.0.0")))
    assert code == 0
    assert out["supportedVersions"] == ["0.4.0", "1.0.0"]


def test_unsupported_version_is_code_1_and_nothing_called() -> None:
    rec = Recorder()
    code, out, _ = run(ENV, conf("1.0.0"), rec.funcs(("0.4.0",)))
    assert code == 1 and out["code"] == 1 and "incompatible CNI versions" in out["msg"]
    assert rec.calls == []


@pytest.mark.parametrize("command,minimum", [("CHECK", "0.4.0"), ("STATUS", "1.1.0")])
def test_check_and_status_gated_by_version(command: str, minimum: str) -> None:
    rec = Recorder()
    code, out, _ = run({**ENV, "CNI_COMMAND": command}, conf("0.3.1"), rec.funcs())
    assert code == 1 and out["code"] == 1 and command in out["msg"]
    code, _, _ = run({**ENV, "CNI_COMMAND": command}, conf(minimum), rec.funcs())
    assert code == 0 and rec.calls[-1][0] == command


@pytest.mark.parametrize(
    "stdin,code",
    [(b"{not json", 6), (b"[1,2]", 6), (b"", 6), (b" " * (MAX_STDIN + 1), 6)],
)
def test_bad_stdin_is_decode_error(stdin: bytes, code: int) -> None:
    rec = Recorder()
    rc, out, _ = run(ENV, stdin, rec.funcs())
    assert rc == 1 and out["code"] == code and rec.calls == []


@pytest.mark.parametrize(
    "override",
    [
        {"CNI_CONTAINERID": "a/../b"},
        {"CNI_IFNAME": "a" * 16},
        {"CNI_IFNAME": "../x"},
        {"CNI_NETNS": ""},
    ],
)
def test_bad_env_is_code_4(override: dict[str, str]) -> None:
    rec = Recorder()
    rc, out, _ = run({**ENV, **override}, conf("1.0.0"), rec.funcs())
    assert rc == 1 and out["code"] == 4 and rec.calls == []


def test_missing_env_names_every_var() -> None:
    rc, out, _ = run({"CNI_COMMAND": "ADD"}, conf("1.0.0"), Recorder().funcs())
    assert rc == 1 and out["code"] == 4
    for var in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"):
        assert var in out["msg"] + out.get("details", "")


def test_del_accepts_empty_netns() -> None:
    rec = Recorder()
    rc, _, _ = run({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}, conf("1.0.0"), rec.funcs())
    assert rc == 0 and rec.calls[0][1].netns == ""


def test_plugin_errors_keep_their_code_and_bugs_become_999() -> None:
    def bad_conf(args: CmdArgs) -> Result:
        raise InvalidConfig("bad thing", "details here")

    def conflict(args: CmdArgs) -> Result:
        raise Conflict("taken", code=108)

    def bug(args: CmdArgs) -> Result:
        raise ZeroDivisionError("boom")

    for fn, code in ((bad_conf, 7), (conflict, 108), (bug, 999)):
        rec = Recorder()
        funcs = PluginFuncs(
            about="t", versions=ALL_VERSIONS, add=fn, delete=rec.delete, check=rec.check
        )
        rc, out, err = run(ENV, conf("1.0.0"), funcs)
        assert rc == 1 and out["code"] == code and out["cniVersion"] == "1.0.0"
        if code == 999:
            assert "ZeroDivisionError" in err and out["msg"] == "boom"


def test_unknown_command() -> None:
    rc, out, _ = run({**ENV, "CNI_COMMAND": "FROB"}, conf("1.0.0"), Recorder().funcs())
    assert rc == 1 and out["code"] in (3, 4)
