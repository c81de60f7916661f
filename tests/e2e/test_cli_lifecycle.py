"""A sandbox's life as docker's: ``kanal inspect / start / stop / restart / kill / wait /
logs`` and ``ps``'s options, against a real kanald in a host namespace made here.

What is asserted is what the kernel and kanald show: the sandbox's namespace and
processes (``/proc``), its interfaces (``ip -j``), the published port's rules
(``nft``), and the endpoints kanald holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_network import VENV
from tests.e2e.test_cli_run import RunDaemon, curl
from tests.helpers import ip_json, nsexec


@pytest.fixture
def rd(host_ns: str, tmp_path: Path) -> Iterator[RunDaemon]:
    d = RunDaemon(host_ns, tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.remove_all_and_stop()


def inspect(rd: RunDaemon, ref: str) -> Any:
    """docker's container object of the sandbox, as ``kanal inspect`` prints it."""
    (got,) = json.loads(rd.k("inspect", ref).stdout)
    return got


def pids_with(needle: str) -> list[int]:
    """Processes whose command line has ``needle`` (a unique sleep length)."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if needle.encode() in f.read():
                        out.append(int(p))
            except OSError:
                pass
    return out


def published(host: str, port: int) -> bool:
    """Whether the host namespace's firewall names the host port (a rule or a map
    element of kanal's port publishing)."""
    text = nsexec(host, "nft", "list", "ruleset").stdout.decode()
    return str(port) in text


def test_inspect_is_dockers_container_object(rd: RunDaemon) -> None:
    rd.kanal("create", "--subnet", "10.74.0.0/24", "app")
    sid = rd.k(
        "run", "-d", "--name", "web", "--network", "app", "--ip", "10.74.0.10", "--alias", "www",
        "-p", "127.0.0.1:18091:80", "-e", "APP=1", "--", "sleep", "86400.101",
    ).stdout.strip()  # fmt: skip
    c = inspect(rd, "web")
    assert c["Id"] == sid and c["Name"] == "/web"
    assert (c["Path"], c["Args"]) == ("sleep", ["86400.101"])
    st = c["State"]
    assert st["Status"] == "running" and st["Running"] is True and st["ExitCode"] == 0
    # State.Pid: the sandbox's first process, in the sandbox's network namespace and a
    # PID namespace of its own (PID 1 there)
    pid = st["Pid"]
    assert isinstance(pid, int) and pid > 1
    ns = c["NetworkSettings"]
    key = ns["SandboxKey"]
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(key).st_ino
    assert os.stat(f"/proc/{pid}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino
    with open(f"/proc/{pid}/status") as f:
        nspid = next(line for line in f if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1"
    app = ns["Networks"]["app"]
    assert app["IPAddress"] == "10.74.0.10" and app["IPPrefixLen"] == 24
    assert app["Gateway"] == "10.74.0.1" and app["Aliases"] == ["www"]
    assert app["IPAMConfig"] == {"IPv4Address": "10.74.0.10", "IPv6Address": ""}
    # the MAC is the sandbox's interface's, as the kernel has it
    links = ip_json(os.path.basename(key), "link", "show")
    assert app["MacAddress"] in [link.get("address") for link in links]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18091"}]}
    hc = c["HostConfig"]
    assert hc["NetworkMode"] == "app" and hc["PidMode"] == ""
    assert hc["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18091"}]}
    assert "APP=1" in c["Config"]["Env"] and c["Config"]["Cmd"] == ["sleep", "86400.101"]

    # -f TEMPLATE as docker's, and -f json (one JSON array, docker's bytes)
    tmpl = (
        "{{.State.Status}} {{.State.Pid}} {{range $k, $v := .NetworkSettings.Networks}}"
        "{{$k}}={{$v.IPAddress}}{{end}} {{.NetworkSettings.SandboxKey}}"
    )
    out = rd.k("inspect", "-f", tmpl, "web").stdout
    assert out == f"running {pid} app=10.74.0.10 {key}\n"
    assert rd.k("inspect", "-f", "{{json .NetworkSettings.Ports}}", sid[:10]).stdout == (
        '{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"18091"}]}\n'
    )
    (j,) = json.loads(rd.k("inspect", "-f", "json", "web").stdout)
    assert j["Id"] == sid and "\n" not in rd.k("inspect", "-f", "json", "web").stdout.strip()
    # bad input: one line, non-zero; a good name next to a bad one still prints
    bad = rd.k("inspect", "-f", "{{.State.Nope}}", "web", check=False)
    assert bad.returncode != 0 and bad.stderr == (
        'kanal: template: :1:8: executing "" at <.State.Nope>: map has no entry for key "Nope"\n'
    )  # docker's words: inspect templates run on the decoded JSON
    mixed = rd.k("inspect", "-f", "{{.Name}}", "nosuch", "web", check=False)
    assert mixed.returncode == 1 and mixed.stdout == "/web\n"
    assert mixed.stderr == "kanal: No such container: nosuch\n"


def test_stop_releases_start_takes_back(rd: RunDaemon) -> None:
    www = rd.tmp / "www"
    www.mkdir()
    (www / "index.html").write_text("web\n")
    rd.kanal("create", "--subnet", "10.75.0.0/24", "app")
    rd.k(
        "run", "-d", "--name", "web", "--network", "app", "--ip", "10.75.0.10",
        "-p", "127.0.0.1:18092:80", "--", "busybox", "httpd", "-f", "-p", "80", "-h", str(www),
    )  # fmt: skip
    key = inspect(rd, "web")["NetworkSettings"]["SandboxKey"]
    netns = os.path.basename(key)
    assert curl(rd.host, "http://127.0.0.1:18092/") == "web\n"
    assert published(rd.host, 18092)

    # stop: SIGTERM ends it, docker's 143; its address, interface and port are given back
    assert rd.k("stop", "web").stdout == "web\n"
    c = inspect(rd, "web")
    assert c["State"]["Status"] == "exited" and c["State"]["ExitCode"] == 143
    assert c["State"]["Pid"] == 0 and c["NetworkSettings"]["Ports"] == {}
    assert c["NetworkSettings"]["Networks"]["app"]["IPAddress"] == ""
    assert "exited (143)" in rd.k("ps", "-a").stdout
    assert [link["ifname"] for link in ip_json(netns, "link", "show")] == ["lo"]
    assert not published(rd.host, 18092)
    from kanal.daemon.client import ApiClient

    assert ApiClient(str(rd.api)).request("GET", "/endpoints") == []

    # the address is free meanwhile: another sandbox takes it, and start then fails
    # cleanly (one line; nothing taken, still exited)
    rd.k("run", "-d", "--name", "other", "--network", "app", "--ip", "10.75.0.10",
         "--", "sleep", "86400.102")  # fmt: skip
    p = rd.k("start", "web", check=False)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1 and "10.75.0.10" in p.stderr
    assert inspect(rd, "web")["State"]["Status"] == "exited"
    assert [link["ifname"] for link in ip_json(netns, "link", "show")] == ["lo"]
    assert not published(rd.host, 18092)
    rd.k("rm", "-f", "other")

    # start: the same address (it was --ip), the port published again, served again
    assert rd.k("start", "web").stdout == "web\n"
    c = inspect(rd, "web")
    assert c["State"]["Running"] is True
    assert c["NetworkSettings"]["Networks"]["app"]["IPAddress"] == "10.75.0.10"
    addrs = [a["local"] for link in ip_json(netns, "addr", "show") for a in link["addr_info"]]
    assert "10.75.0.10" in addrs
    assert published(rd.host, 18092)
    assert curl(rd.host, "http://127.0.0.1:18092/") == "web\n"

    # restart: a new process, the same address
    pid = c["State"]["Pid"]
    assert rd.k("restart", "-t", "5", "web").stdout == "web\n"
    c = inspect(rd, "web")
    assert c["State"]["Running"] is True and c["State"]["Pid"] != pid
    assert c["NetworkSettings"]["Networks"]["app"]["IPAddress"] == "10.75.0.10"
    assert curl(rd.host, "http://127.0.0.1:18092/") == "web\n"

    # kanald killed and started again: a stop still releases (and start takes back)
    rd.stop(kill=True)
    rd.start()
    rd.k("stop", "web")
    assert not published(rd.host, 18092)
    assert [link["ifname"] for link in ip_json(netns, "link", "show")] == ["lo"]
    rd.k("start", "web")
    assert curl(rd.host, "http://127.0.0.1:18092/") == "web\n"
    # a start of nothing: docker's words
    p = rd.k("start", "nosuch", check=False)
    assert p.returncode == 1 and p.stderr == "kanal: No such container: nosuch\n"


def test_kill_wait_and_background_processes_end_with_the_sandbox(rd: RunDaemon) -> None:
    rd.kanal("create", "--subnet", "10.76.0.0/24", "app")
    # The command leaves a process in the background and exits: with a PID namespace
    # of its own (the default) that process ends with it.
    rd.k("run", "-d", "--name", "bg", "--network", "app",
         "--", "sh", "-c", "sleep 86400.201 & sleep 86400.202")  # fmt: skip
    for _ in range(100):
        if pids_with("86400.201") and pids_with("86400.202"):
            break
        time.sleep(0.05)
    assert pids_with("86400.201") and pids_with("86400.202")
    assert rd.k("kill", "-s", "TERM", "bg").stdout == "bg\n"
    assert rd.k("wait", "bg").stdout == "143\n"
    assert pids_with("86400.201") == [] and pids_with("86400.202") == []

    rd.k("run", "-d", "--name", "quits", "--network", "app",
         "--", "sh", "-c", "sleep 86400.203 & exit 3")  # fmt: skip
    assert rd.k("wait", "quits").stdout == "3\n"
    assert pids_with("86400.203") == []
    assert inspect(rd, "quits")["State"]["ExitCode"] == 3

    # --pid host opts out: the background process outlives the command (rm -f ends it:
    # it is still in the sandbox's network namespace)
    rd.k("run", "-d", "--pid", "host", "--name", "hostpid", "--network", "app",
         "--", "sh", "-c", "sleep 86400.204 & exit 0")  # fmt: skip
    assert rd.k("wait", "hostpid").stdout == "0\n"
    assert pids_with("86400.204")
    assert inspect(rd, "hostpid")["HostConfig"]["PidMode"] == "host"
    rd.k("rm", "-f", "hostpid")
    assert pids_with("86400.204") == []

    # an attached run (its process the CLI's child, in the CLI's process group) stopped
    # from another client: the SIGTERM reaches the command (143, not a SIGKILL's 137
    # after the 60 s)
    att = subprocess.Popen(
        [str(VENV / "kanal"), "run", "-H", str(rd.api), "--name", "att", "--network", "host",
         "--", "sleep", "86400.205"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(200):
            if pids_with("86400.205") and "att" in rd.k("ps", "--format", "{{.Names}}").stdout:
                break
            time.sleep(0.05)
        rd.k("stop", "-t", "60", "att")
        assert att.wait(timeout=60) == 143
    finally:
        if att.poll() is None:
            att.kill()
            att.wait()
    assert inspect(rd, "att")["State"]["ExitCode"] == 143

    # kill's default is SIGKILL: docker's 137
    rd.k("start", "bg")
    rd.k("kill", "bg")
    assert rd.k("wait", "bg").stdout == "137\n"
    assert "exited (137)" in rd.k("ps", "-a").stdout
    # bad input: one line each, nothing changed
    before = rd.k("ps", "-a", "--no-trunc").stdout
    for bad, words in (
        (["kill", "bg"], "is not running"),
        (["kill", "-s", "NOPE", "bg"], "Invalid signal: NOPE"),
        (["wait", "nosuch"], "No such container: nosuch"),
        (["run", "-d", "--pid", "container:bg", "--", "true"], "invalid PidMode"),
        (["ps", "--filter", "status=sleeping"], "status=sleeping"),
        (["ps", "--filter", "color=red"], "invalid filter 'color'"),
        (["ps", "--filter", "name"], "expected name=value"),
    ):
        p = rd.k(*bad, check=False)
        assert p.returncode != 0, bad
        assert len(p.stderr.splitlines()) == 1 and words in p.stderr, (bad, p.stderr)
    assert rd.k("ps", "-a", "--no-trunc").stdout.split("\n")[1:] == before.split("\n")[1:]


def test_logs_and_ps_options(rd: RunDaemon) -> None:
    rd.kanal("create", "--subnet", "10.77.0.0/24", "app")
    sid = rd.k(
        "run", "-d", "--name", "talker", "--network", "app", "--", "sh", "-c",
        "echo one; echo two >&2; echo three; sleep 86400.301",
    ).stdout.strip()  # fmt: skip
    for _ in range(100):
        if rd.k("logs", "talker").stdout.count("\n") == 3:
            break
        time.sleep(0.05)
    assert rd.k("logs", "talker").stdout == "one\ntwo\nthree\n"
    assert rd.k("logs", "-n", "1", "talker").stdout == "three\n"
    assert rd.k("logs", "--tail", "0", "talker").stdout == ""
    # -f follows until the sandbox stops
    follow = subprocess.Popen(
        [str(VENV / "kanal"), "logs", "-H", str(rd.api), "-f", sid[:12]],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert [follow.stdout.readline() for _ in range(3)] == ["one\n", "two\n", "three\n"]
        rd.k("stop", "-t", "1", "talker")
        assert follow.stdout.read() == ""
        assert follow.wait(timeout=60) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()

    rd.k("run", "-d", "--name", "up", "--network", "app", "--", "sleep", "86400.302")
    ps_q = rd.k("ps", "-q").stdout.split()
    assert len(ps_q) == 1 and len(ps_q[0]) == 12
    assert len(rd.k("ps", "-q", "--no-trunc").stdout.split()[0]) == 64
    assert sorted(rd.k("ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["talker", "up"]
    assert rd.k("ps", "--filter", "status=exited", "--format", "{{.Names}} {{.Status}}").stdout == (
        "talker exited (143)\n"
    )
    assert rd.k("ps", "-a", "--filter", "name=tal", "-q", "--no-trunc").stdout == sid + "\n"
    assert (
        rd.k("ps", "-a", "--filter", "exited=143", "--filter", "network=app", "-q").stdout
        == sid[:12] + "\n"
    )
    assert rd.k("ps", "--filter", "network=app", "--format", "{{.Names}}").stdout == "up\n"
    long = rd.k("ps", "-a", "--no-trunc", "--filter", "name=talker").stdout
    assert '"sh -c echo one; echo two >&2; echo three; sleep 86400.301"' in long
    assert rd.k("logs", "nosuch", check=False).stderr == "kanal: No such container: nosuch\n"
