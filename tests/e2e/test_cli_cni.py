"""``kanal cni ...`` as a subprocess, against the scriptable noop plugin.

The noop plugin touches no network state; the namespaces here only give the CLI a
real network-namespace path to accept.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.runtime.noop import install_noop, read_log

ROOT = Path(__file__).resolve().parents[2]
KANAL = ROOT / ".venv" / "bin" / "kanal"


@dataclass
class Env:
    tmp: Path
    conf_dir: Path
    bin_dir: Path
    cache_dir: Path
    log: Path
    netns: str

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("CAP_ARGS", "CNI_ARGS", "CNI_IFNAME")
        }
        env.update(
            NETCONFPATH=str(self.conf_dir),
            CNI_PATH=str(self.bin_dir),
            NOOP_LOG=str(self.log),
        )
        env.update(extra)
        return env

    def kanal(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """``kanal ARGS`` with this test's dirs; ``cni`` operations get --cache-dir."""
        cmd = [str(KANAL), *args]
        if len(args) > 2 and args[0] == "cni" and args[1] != "install":
            cmd += ["--cache-dir", str(self.cache_dir)]
        return subprocess.run(
            cmd, capture_output=True, text=True, env=self.environ(**extra), timeout=60
        )

    def network(self, name: str, plugins: list[dict[str, Any]], version: str = "1.1.0") -> None:
        doc = {"cniVersion": version, "name": name, "plugins": plugins}
        (self.conf_dir / f"10-{name}.conflist").write_text(json.dumps(doc))

    def cache_files(self) -> list[str]:
        d = self.cache_dir / "results"
        return sorted(os.listdir(d)) if d.exists() else []


def cnitool_id(netns: str) -> str:
    return "cnitool-" + hashlib.sha512(netns.encode()).hexdigest()[:20]


@pytest.fixture
def env(tmp_path: Path, make_netns: Callable[[str], str]) -> Env:
    e = Env(
        tmp=tmp_path,
        conf_dir=tmp_path / "net.d",
        bin_dir=tmp_path / "bin",
        cache_dir=tmp_path / "cache",
        log=tmp_path / "calls.log",
        netns=f"/run/netns/{make_netns('kcli')}",
    )
    e.conf_dir.mkdir()
    for name in ("noop", "second"):
        install_noop(e.bin_dir, name)
    return e


def test_add_check_del(env: Env) -> None:
    env.network(
        "cli1", [{"type": "noop", "capabilities": {"portMappings": True}}, {"type": "second"}]
    )
    caps = json.dumps({"portMappings": [{"hostPort": 8080, "containerPort": 80}], "other": 1})
    add = env.kanal("cni", "add", "cli1", env.netns, CAP_ARGS=caps, CNI_ARGS="A=1;B=2")
    assert add.returncode == 0, add.stderr
    assert add.stderr == ""
    result = json.loads(add.stdout)
    assert result["cniVersion"] == "1.1.0"
    assert result["ips"][0]["address"] == "10.99.0.2/24"
    assert add.stdout.startswith('{\n    "cniVersion": "1.1.0"')  # Go's MarshalIndent

    cid = cnitool_id(env.netns)
    assert env.cache_files() == [f"cli1-{cid}-eth0"]
    cached = json.loads((env.cache_dir / "results" / f"cli1-{cid}-eth0").read_text())
    assert cached["containerId"] == cid
    assert cached["cniArgs"] == [["A", "1"], ["B", "2"]]
    assert cached["capabilityArgs"] == json.loads(caps)

    assert env.kanal("cni", "check", "cli1", env.netns).returncode == 0
    deleted = env.kanal("cni", "del", "cli1", env.netns)
    assert deleted.returncode == 0, deleted.stderr
    assert env.cache_files() == []

    calls = read_log(env.log)
    assert [(c["plugin"], c["command"]) for c in calls] == [
        ("noop", "ADD"),
        ("second", "ADD"),
        ("noop", "CHECK"),
        ("second", "CHECK"),
        ("second", "DEL"),
        ("noop", "DEL"),
    ]
    add_env = calls[0]["env"]
    assert add_env["CNI_CONTAINERID"] == cid
    assert add_env["CNI_NETNS"] == env.netns
    assert add_env["CNI_IFNAME"] == "eth0"
    assert add_env["CNI_ARGS"] == "A=1;B=2"
    assert add_env["CNI_PATH"] == str(env.bin_dir)
    assert calls[0]["conf"]["runtimeConfig"] == {"portMappings": json.loads(caps)["portMappings"]}
    assert "runtimeConfig" not in calls[1]["conf"]
    assert calls[4]["conf"]["prevResult"] == result


def test_ifname_flag_env_and_default(env: Env) -> None:
    env.network("cli2", [{"type": "noop"}])
    assert (
        env.kanal("cni", "add", "cli2", env.netns, "-i", "net7", CNI_IFNAME="env1").returncode == 0
    )
    assert env.kanal("cni", "add", "cli2", env.netns, CNI_IFNAME="env1").returncode == 0
    assert env.kanal("cni", "add", "cli2", env.netns, CNI_IFNAME="").returncode == 0
    assert [c["env"]["CNI_IFNAME"] for c in read_log(env.log)] == ["net7", "env1", "eth0"]
    cid = cnitool_id(env.netns)
    assert env.cache_files() == [f"cli2-{cid}-{i}" for i in ("env1", "eth0", "net7")]


def test_relative_netns_path_is_made_absolute(env: Env) -> None:
    env.network("cli3", [{"type": "noop"}])
    rel = os.path.relpath(env.netns, env.tmp)
    proc = subprocess.run(
        [str(KANAL), "cni", "add", "cli3", rel, "--cache-dir", str(env.cache_dir)],
        capture_output=True,
        text=True,
        env=env.environ(),
        cwd=env.tmp,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_log(env.log)[0]["env"]["CNI_CONTAINERID"] == cnitool_id(env.netns)
    assert read_log(env.log)[0]["env"]["CNI_NETNS"] == env.netns


def test_option_overrides(env: Env) -> None:
    other_conf = env.tmp / "other.d"
    other_conf.mkdir()
    other_bin = env.tmp / "otherbin"
    install_noop(other_bin, "alt")
    doc = {"cniVersion": "1.0.0", "name": "cli4", "plugins": [{"type": "alt"}]}
    (other_conf / "a.conflist").write_text(json.dumps(doc))
    proc = env.kanal(
        "cni",
        "add",
        "cli4",
        env.netns,
        "--conf-dir",
        str(other_conf),
        "--cni-path",
        f"/nowhere:{other_bin}",
    )
    assert proc.returncode == 0, proc.stderr
    call = read_log(env.log)[0]
    assert call["plugin"] == "alt"
    assert call["env"]["CNI_PATH"] == f"/nowhere:{other_bin}"


def test_gc_and_status(env: Env, make_netns: Callable[[str], str]) -> None:
    env.network("cli5", [{"type": "noop"}])
    other = f"/run/netns/{make_netns('kcli')}"
    assert env.kanal("cni", "add", "cli5", env.netns).returncode == 0
    assert env.kanal("cni", "add", "cli5", other).returncode == 0
    keep = cnitool_id(env.netns)
    gc = env.kanal("cni", "gc", "cli5", "--valid", f"{keep}:eth0")
    assert gc.returncode == 0, gc.stderr
    assert env.cache_files() == [f"cli5-{keep}-eth0"]
    gc_all = env.kanal("cni", "gc", "cli5", env.netns)  # cnitool form: no valid list
    assert gc_all.returncode == 0, gc_all.stderr
    assert env.cache_files() == []
    status = env.kanal("cni", "status", "cli5")
    assert status.returncode == 0 and status.stdout == "" and status.stderr == ""
    calls = [(c["command"], c["env"]["CNI_CONTAINERID"]) for c in read_log(env.log)]
    assert calls[2:] == [
        ("DEL", cnitool_id(other)),
        ("GC", ""),
        ("DEL", keep),
        ("GC", ""),
        ("STATUS", ""),
    ]
    gcs = [c["conf"] for c in read_log(env.log) if c["command"] == "GC"]
    assert gcs[0]["cni.dev/valid-attachments"] == [{"containerID": keep, "ifname": "eth0"}]
    assert "cni.dev/valid-attachments" not in gcs[1]


def test_status_failure_exit_code_and_message(env: Env) -> None:
    env.network(
        "cli6", [{"type": "noop", "noop": {"STATUS": {"error": {"code": 50, "msg": "pool empty"}}}}]
    )
    proc = env.kanal("cni", "status", "cli6")
    assert proc.returncode == 1
    assert proc.stderr == 'kanal: plugin type="noop" failed (status): pool empty\n'


def test_plugin_failure_one_line_no_cache(env: Env) -> None:
    env.network(
        "cli7",
        [
            {"type": "noop"},
            {
                "type": "second",
                "noop": {"ADD": {"error": {"code": 7, "msg": "bad", "details": "line1\nline2"}}},
            },
        ],
    )
    proc = env.kanal("cni", "add", "cli7", env.netns)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr == 'kanal: plugin type="second" failed (add): bad: line1 line2\n'
    assert env.cache_files() == []


@pytest.mark.parametrize(
    ("args", "extra", "message"),
    [
        (["add", "nosuch", "{netns}"], {}, 'no net configuration with name "nosuch" in {conf}'),
        (
            ["add", "bad", "/run/netns/kanal-does-not-exist"],
            {},
            "network namespace /run/netns/kanal-does-not-exist does not exist",
        ),
        (["add", "bad", "/etc/hostname"], {}, "/etc/hostname is not a network namespace"),
        (["add", "bad", "{netns}"], {"CAP_ARGS": "{not json"}, "invalid CAP_ARGS: not JSON"),
        (["add", "bad", "{netns}"], {"CAP_ARGS": "[1]"}, "invalid CAP_ARGS: want a JSON object"),
        (["add", "bad", "{netns}"], {"CNI_ARGS": "K="}, 'invalid CNI_ARGS pair "K="'),
        (["add", "a/b", "{netns}"], {}, "invalid characters found in network name: a/b"),
        (["add", "../bad", "{netns}"], {}, "invalid characters found in network name: ../bad"),
        (
            ["add", "bad", "{netns}", "-i", "a/b"],
            {},
            "interface name contains / or : or whitespace",
        ),
        (["add", "bad", "{netns}"], {"CNI_PATH": ""}, "no paths provided"),
        (["add", "missing", "{netns}"], {}, 'failed to find plugin "gone" in path'),
        (["check", "bad", "{netns}"], {}, 'failed to get network "bad" cached result'),
        (["del", "bad", "{netns}"], {"CNI_ARGS": "novalue"}, 'invalid CNI_ARGS pair "novalue"'),
        (["gc", "bad", "--valid", "nocolon"], {}, "invalid --valid 'nocolon'"),
    ],
)
def test_bad_input_one_line_nonzero_no_cache(
    env: Env, args: list[str], extra: dict[str, str], message: str
) -> None:
    env.network("bad", [{"type": "noop"}])
    env.network("missing", [{"type": "gone"}])
    argv = [a.format(netns=env.netns) for a in args]
    proc = env.kanal("cni", *argv, **extra)
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kanal: ")
    assert message.format(conf=env.conf_dir) in lines[0]
    assert "Traceback" not in proc.stderr
    assert env.cache_files() == []
    assert read_log(env.log) == []  # refused before any plugin ran


def test_usage_errors_are_one_line(env: Env) -> None:
    proc = env.kanal("cni", "add")
    assert proc.returncode == 2
    assert len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith("kanal: ")


def test_help_and_module_entry(env: Env) -> None:
    assert subprocess.run([str(KANAL), "--help"], capture_output=True, timeout=60).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "kanal.cli.main", "cni", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "status" in proc.stdout


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys; from kanal.cli import main as m; m.build_parser();"
        "print(' '.join(sorted(k for k in sys.modules if k.startswith('kanal') or k in "
        "('pyroute2', 'subprocess', 'json', 'hashlib'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [
        "kanal",
        "kanal.cli",
        "kanal.cli.cni",
        "kanal.cli.dhcp",
        "kanal.cli.events",
        "kanal.cli.explain",
        "kanal.cli.flags",  # docker's flag syntax for the parsers: argparse only
        "kanal.cli.graph",
        "kanal.cli.inspect",
        "kanal.cli.lab",
        "kanal.cli.lifecycle",
        "kanal.cli.main",
        "kanal.cli.network",
        "kanal.cli.node",
        "kanal.cli.run",
        "kanal.cli.system",
        "kanal.errors",
    ]


@pytest.mark.skipif(
    importlib.util.find_spec("kanal.fastpath.install") is None,
    reason="kanal.fastpath.install is not there yet",
)
def test_install(env: Env) -> None:
    dest = env.tmp / "installed"
    proc = env.kanal("cni", "install", "--dir", str(dest), "--socket", str(env.tmp / "k.sock"))
    assert proc.returncode == 0, proc.stderr
    paths = proc.stdout.split()
    assert paths
    for p in paths:
        assert Path(p).parent == dest
        assert os.access(p, os.X_OK)
    image = dest / ".kanal-exec-image"  # the exec path's modules (docs/fastpath.md)
    assert sorted(os.listdir(dest)) == sorted([image.name, *(Path(p).name for p in paths)])
    assert image.is_file() and not os.access(image, os.X_OK)
