"""``--format`` next to the real docker CLI: both read the same objects from one API.

No docker daemon runs here, but the docker CLI does: pointed at a small Engine API
(tests/e2e/docker_fixture_api.py) that serves the objects of
tests/fixtures/docker_objects.py, it renders templates with docker's own code. That
makes it the oracle of tests/unit/cli/template_cases.py (every case not marked
``differs`` must still be what docker prints), and kanal's CLI, reading the same
server, must print what docker's prints, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.docker_fixture_api import serve
from tests.fixtures.docker_objects import CONTAINERS, NETWORKS, SANDBOXES
from tests.unit.cli.template_cases import CASES, C

VENV = Path(__file__).resolve().parents[2] / ".venv" / "bin"
MIN_DOCKER = (28, 0)  # the cases were recorded from 28.2 (Go 1.24: range over ints, else with)


def _docker_version(exe: str) -> tuple[int, ...]:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m[1]), int(m[2])) if m else (0, 0)


@pytest.fixture(scope="module")
def docker() -> str:
    exe = shutil.which("docker")
    if exe is None:
        pytest.skip("the docker CLI is not installed: no oracle for --format templates")
    version = _docker_version(exe)
    if version < MIN_DOCKER:
        pytest.skip(
            f"docker CLI {version[0]}.{version[1]} at {exe} is older than the 28.x the "
            "template cases were recorded from"
        )
    return exe


@pytest.fixture(scope="module")
def api() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="kfmt"))
    try:
        with serve(tmp / "api.sock", NETWORKS, CONTAINERS, SANDBOXES) as sock:
            yield sock
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _env(sock: Path) -> dict[str, str]:
    home = sock.parent
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "DOCKER_HOST": f"unix://{sock}",
        "DOCKER_CONFIG": str(home / "docker-config"),
        "KANAL_CONNECT_TIMEOUT": "5",
        "LANG": "C.UTF-8",
        "TZ": "UTC",  # docker prints a container's CreatedAt in local time
    }


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def _args(case: C) -> list[str]:
    if case.kind == "ls":
        return ["network", "ls", "--format", case.template]
    what = "network" if case.kind == "net" else "container"
    return [what, "inspect", "-f", case.template, case.name]


def _labels_sorted(text: str) -> str:
    # docker's `network ls` joins a network's labels in Go's random map order
    return re.sub(
        r'"Labels":"([^"]*)"',
        lambda m: '"Labels":"' + ",".join(sorted(m[1].split(","))) + '"',
        text,
    )


def _check_docker(case: C, p: subprocess.CompletedProcess[str]) -> str | None:
    """None when docker printed what the case says, else what it printed."""
    if case.err:
        got = p.stderr.strip().removeprefix("template parsing error: ")
        ok = p.returncode != 0 and got == case.err
    else:
        got = p.stdout
        ok = p.returncode == 0 and _labels_sorted(got) == _labels_sorted(case.out)
    return None if ok else f"rc={p.returncode} stdout={p.stdout!r} stderr={p.stderr!r}"


def test_docker_prints_the_recorded_outputs(docker: str, api: Path) -> None:
    cases = [c for c in CASES if not c.differs]
    env = _env(api)
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda c: _run([docker, *_args(c)], env), cases))
    wrong = [
        f"{c.kind} {c.template!r}: want {c.err or c.out!r}, docker: {why}"
        for c, p in zip(cases, runs)
        if (why := _check_docker(c, p)) is not None
    ]
    assert len(cases) > 250
    assert not wrong, f"{len(wrong)} cases differ from docker:\n" + "\n".join(wrong[:20])


def _kanal(*args: str, sock: Path) -> list[str]:
    return [str(VENV / "kanal"), "network", "-H", str(sock), *args]


def test_kanal_cli_prints_what_docker_prints(docker: str, api: Path) -> None:
    """Both CLIs, same objects, same templates: every ls case and a spread of
    inspect cases (the renderer itself is checked on all of them in the unit tier)."""
    nets = [c for c in CASES if c.kind == "net"]
    cases = [c for c in CASES if c.kind == "ls"] + nets[::5]
    env = _env(api)

    def both(c: C) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        return _run([docker, *_args(c)], env), _run(_kanal(*_args(c)[1:], sock=api), env)

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(both, cases))
    wrong = []
    for c, (d, k) in zip(cases, runs):
        if c.err:  # one line on stderr, nothing on stdout, a failure status
            ok = k.returncode == 1 and k.stdout == "" and k.stderr == f"kanal: {c.err}\n"
            ok = ok and d.returncode != 0
        else:
            ok = k.returncode == 0 and k.stderr == "" and k.stdout == c.out
            ok = ok and (c.differs != "" or _labels_sorted(d.stdout) == _labels_sorted(k.stdout))
        if not ok:
            wrong.append(f"{c.template!r}:\n  docker {d!r}\n  kanal  {k!r}")
    assert len(cases) > 60
    assert not wrong, "\n".join(wrong[:10])


def test_kanal_inspect_prints_what_docker_inspect_prints(docker: str, api: Path) -> None:
    """``kanal inspect -f`` on a container object docker printed: every container case,
    docker's bytes (or its error, in one line)."""
    cases = [c for c in CASES if c.kind == "ctr" and not c.differs]
    env = _env(api)

    def both(c: C) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        argv = [str(VENV / "kanal"), "inspect", "-H", str(api), "-f", c.template, c.name]
        return _run([docker, *_args(c)], env), _run(argv, env)

    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(both, cases))
    wrong = []
    for c, (d, k) in zip(cases, runs):
        if c.err:
            ok = k.returncode == 1 and k.stdout == "" and k.stderr == f"kanal: {c.err}\n"
        else:
            ok = k.returncode == 0 and k.stderr == "" and k.stdout == d.stdout == c.out
        if not ok:
            wrong.append(f"{c.template!r}:\n  docker {d!r}\n  kanal  {k!r}")
    assert len(cases) > 30
    assert not wrong, "\n".join(wrong[:10])


def test_inspect_json_and_plain(docker: str, api: Path) -> None:
    env = _env(api)
    for args in (
        ["-f", "json", "web", "back"],
        ["-f", "json", "bridge"],
        ["--format=json", "web"],
        ["web", "bridge"],  # no format: docker's indented JSON array
        ["-f", "", "back"],
        ["-f", "{{.Name}}", "back", "web", "bridge"],
    ):
        d = _run([docker, "network", "inspect", *args], env)
        k = _run(_kanal("inspect", *args, sock=api), env)
        assert d.returncode == k.returncode == 0, (args, d, k)
        assert k.stdout == d.stdout, args
    both = _run(_kanal("inspect", "-f", "json", "web", "back", sock=api), env).stdout
    assert json.loads(both) == [NETWORKS["web"], NETWORKS["back"]]
    # a name that is not there: what was found is printed, the error told, status 1
    for args in (
        ["-f", "json", "nosuch"],
        ["-f", "json", "nosuch", "web"],
        ["-f", "{{.Id}}", "web", "nosuch"],
    ):
        d = _run([docker, "network", "inspect", *args], env)
        k = _run(_kanal("inspect", *args, sock=api), env)
        assert d.returncode == k.returncode == 1, (args, d, k)
        assert k.stdout == d.stdout, args
        assert k.stderr.startswith("kanal: ") and len(k.stderr.splitlines()) == 1


def test_ls_default_and_quiet(docker: str, api: Path) -> None:
    env = _env(api)
    for args in ([], ["-q"], ["--no-trunc", "-q"], ["--format", "table"]):
        d = _run([docker, "network", "ls", *args], env)
        k = _run(_kanal("ls", *args, sock=api), env)
        assert d.returncode == k.returncode == 0, (args, d, k)
        assert k.stdout == d.stdout, args


PS_TEMPLATES = [
    "{{.ID}} {{.Names}} {{.Command}} {{.State}}",
    "{{.Networks}}|{{.Ports}}|{{.CreatedAt}}",
    "table {{.ID}}\\t{{.Names}}\\t{{.Command}}\\t{{.Networks}}",
    "table {{.Names}}\t{{.Ports}}",
    '{{range $i, $w := split .Command " "}}{{$i}}={{$w}} {{else}}none{{end}}',
    '{{if eq .State "running"}}up{{else}}down{{end}} {{len .Names}} {{len .Command}}',
    '{{.Names | upper}} {{printf "%.4s|%-8s|" .ID .Names}} {{truncate .Names 2}}',
    '{{json .Names}} {{join (split .Command " ") "+"}} {{index (split .Command " ") 0}}',
    "{{with .Ports}}ports: {{.}}{{else}}no ports{{end}}",
    "{{/* a comment */}}{{- .Names -}} !",
]


def _ps(docker: str, api: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], ...]:
    env = _env(api)
    d = _run([docker, "ps", *args], env)
    # docker joins a container's networks in Go's random map order; kanal sorts them
    d.stdout = d.stdout.replace("web,back", "back,web")
    # kanal's sandboxes are not containers: the one header it names its own way
    d.stdout = d.stdout.replace("CONTAINER ID", "SANDBOX ID  ")
    k = _run([str(VENV / "kanal"), "ps", "-H", str(api), *args], env)
    return d, k


@pytest.mark.parametrize("no_trunc", [False, True], ids=["trunc", "no-trunc"])
def test_ps_format_as_docker(docker: str, api: Path, no_trunc: bool) -> None:
    """``kanal ps`` on kanald's sandboxes prints what ``docker ps`` prints for
    dockerd's summaries of the same sandboxes: truncated IDs and quoted COMMANDs
    cut with an ellipsis, or whole with --no-trunc."""
    flags = ["--no-trunc"] if no_trunc else []
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(lambda t: _ps(docker, api, *flags, "--format", t), PS_TEMPLATES))
    wrong = [
        f"{t!r}:\n  docker {d!r}\n  kanal  {k!r}"
        for t, (d, k) in zip(PS_TEMPLATES, runs)
        if not (d.returncode == k.returncode == 0 and k.stderr == "" and k.stdout == d.stdout)
    ]
    assert not wrong, "\n".join(wrong)
    d, _ = runs[0]
    # the oracle really cut (or did not cut) the long command, so both were checked on it
    cut = '"busybox httpd -f -p…"' in d.stdout
    assert cut != no_trunc and ('"sh -c echo \\"hi\\"; sleep 600"' in d.stdout) == no_trunc


def test_ps_quiet_as_docker(docker: str, api: Path) -> None:
    for args in (["-q"], ["-q", "--no-trunc"], ["-a", "-q"], ["-q", "--format", "{{.Names}}"]):
        d, k = _ps(docker, api, *args)
        assert d.returncode == k.returncode == 0, (args, d, k)
        assert k.stdout == d.stdout and k.stderr == d.stderr, (args, d, k)
        assert len(k.stdout.split()) == len(SANDBOXES)
    assert "WARNING: Ignoring custom format" in k.stderr  # -q wins, with docker's warning


@pytest.mark.parametrize(
    "template",
    ["{{.Nope}}", "{{.Names", "{{index .Names 9}}", '{{template "x"}}', "{{.Names.Foo}}"],
)
def test_ps_template_errors_as_docker(docker: str, api: Path, template: str) -> None:
    """A bad template: status 1, nothing on stdout, Go's words on one line."""
    d, k = _ps(docker, api, "--format", template)
    assert d.returncode != 0 and k.returncode == 1, (d, k)
    assert k.stdout == "" and len(k.stderr.splitlines()) == 1, k
    go = re.sub(r"^failed to (parse|execute) template: ", "", d.stderr)
    assert k.stderr == f"kanal: {go}", (d, k)


def test_ps_default_table_never_cuts_silently(docker: str, api: Path) -> None:
    """kanal's own default table (its columns are not docker's) shows COMMAND as
    docker's COMMAND column does: the same cell, ellipsis and all."""
    for flags in ([], ["--no-trunc"]):
        d, k = _ps(docker, api, *flags, "--format", "{{.Command}}")
        _, table = _ps(docker, api, *flags)
        assert table.returncode == 0 and table.stderr == "", table
        rows = table.stdout.splitlines()[1:]
        assert len(rows) == len(SANDBOXES) == len(d.stdout.splitlines())
        for row, cell in zip(rows, d.stdout.splitlines()):
            assert f"   {cell}   " in row, (row, cell)
        # docker's cells themselves: cut with an ellipsis, or whole with --no-trunc
        assert ('"busybox httpd -f -p 80 -h /www"' in table.stdout) == bool(flags)
        assert ('"busybox httpd -f -p…"' in table.stdout) != bool(flags)
