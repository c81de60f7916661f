"""``kanal events`` (issue 15): a stream started in the background sees the
operations done after it, in order; filters, --since/--until and --format as
docker's. The daemon runs in a host namespace made by the test."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanal.daemon.client import ApiClient
from tests.e2e.private_kanald import PrivateNetnsDaemon, private_daemon
from tests.e2e.test_cli_network import VENV

FMT = (
    "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
    "{{if .Actor.Attributes.exitCode}} exit={{.Actor.Attributes.exitCode}}{{end}}"
)


class Stream:
    """``kanal events ARGS`` in the background; its lines read on a thread."""

    def __init__(self, d: PrivateNetnsDaemon, *args: str) -> None:
        self.p = subprocess.Popen(
            [str(VENV / "kanal"), "events", "-H", str(d.api), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, last: str, timeout: float = 60) -> list[str]:
        """Every line up to and including ``last``."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while not out or out[-1] != last:
            try:
                out.append(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no {last!r} in {out}") from None
        return out

    def close(self) -> None:
        self.p.terminate()
        self.p.wait(10)


@pytest.fixture
def md(host_ns: str, tmp_path: Path) -> Iterator[PrivateNetnsDaemon]:
    yield from private_daemon(host_ns, tmp_path)


@pytest.fixture
def stream_of(md: PrivateNetnsDaemon) -> Iterator[list[Stream]]:
    made: list[Stream] = []
    yield made
    for s in made:
        s.close()


def since_now() -> str:
    return f"{time.time():.9f}"


def test_background_stream_sees_the_lifecycle_in_order(md: PrivateNetnsDaemon, stream_of) -> None:
    # --since: the stream also gets what happened between now and its subscription
    s = Stream(md, "--since", since_now(), "--format", FMT)
    stream_of.append(s)
    md.kanal("create", "--subnet", "10.81.0.0/24", "evnet")
    sid = md.k(
        "run", "-d", "--name", "ev1", "--network", "evnet", "--", "sleep", "300"
    ).stdout.strip()
    assert s.until("container start ev1") == [
        "network create evnet",
        "network connect evnet",
        "container create ev1",
        "container start ev1",
    ]
    # a stop gives the sandbox's endpoint back (docker's disconnect on stop) ...
    md.k("stop", "-t", "1", "ev1")
    got = s.until("container stop ev1")
    assert (
        len(got) == 3
        and got[0] == "network disconnect evnet"
        and got[1].startswith("container die ev1 exit=")
        and got[1] != "container die ev1 exit="
    ), got
    # ... and a start takes it again
    ApiClient(str(md.api)).request("POST", f"/sandboxes/{sid}/start")
    assert s.until("container start ev1") == ["network connect evnet", "container start ev1"]
    md.k("stop", "-t", "1", "ev1")
    s.until("container stop ev1")
    md.k("rm", "ev1")
    md.kanal("rm", "evnet")
    assert s.until("network destroy evnet") == [
        "container destroy ev1",
        "network destroy evnet",
    ]
    assert s.p.poll() is None  # without --until it goes on


def test_filters_since_until_and_json(md: PrivateNetnsDaemon) -> None:
    t0 = since_now()
    md.kanal("create", "--subnet", "10.82.0.0/24", "fa")
    md.kanal("create", "--subnet", "10.83.0.0/24", "fb")
    md.k("run", "-d", "--name", "fx", "--network", "fa", "--", "sleep", "300")
    md.k("run", "-d", "--name", "fy", "--network", "fb", "--", "sleep", "300")
    t1 = since_now()
    md.k("rm", "-f", "fx", "fy")

    def ev(*args: str) -> list[str]:
        p = subprocess.run(
            [str(VENV / "kanal"), "events", "-H", str(md.api), "--since", t0, "--until", t1, *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        return p.stdout.splitlines()

    fmt = ("--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}")
    assert ev(*fmt) == [
        "network create fa",
        "network create fb",
        "network connect fa",
        "container create fx",
        "container start fx",
        "network connect fb",
        "container create fy",
        "container start fy",
    ]  # --until: nothing of the removal after t1, and the command ended by itself
    assert ev(*fmt, "-f", "type=network", "-f", "event=create") == [
        "network create fa",
        "network create fb",
    ]
    assert ev(*fmt, "-f", "network=fb") == ["network create fb", "network connect fb"]
    assert ev(*fmt, "-f", "container=fx", "-f", "container=fy", "-f", "event=start") == [
        "container start fx",
        "container start fy",
    ]
    # json: docker's wire form, one object a line
    first = json.loads(ev("--format", "json", "-f", "event=connect")[0])
    assert first["Type"] == "network" and first["Action"] == "connect"
    assert first["Actor"]["Attributes"]["name"] == "fa" and first["scope"] == "local"
    assert isinstance(first["time"], int) and first["timeNano"] // 10**9 == first["time"]
    # the default line: RFC 3339 time with nanoseconds, type, action, id, (attributes)
    [line] = ev("-f", "container=fx", "-f", "event=create")
    stamp, kind, action, ident, attrs = line.split(" ", 4)
    assert len(stamp) == len("2006-01-02T15:04:05.000000000Z") and stamp[10] == "T"
    assert (kind, action, len(ident), attrs) == ("container", "create", 64, "(name=fx)")
    # a duration: events of the last hour (all of these), until t1
    assert len(ev(*fmt, "--since", "1h")) == 8


@pytest.mark.parametrize(
    ("args", "msg"),
    [
        (("-f", "nosuch=1"), "invalid filter 'nosuch'"),
        (("-f", "typenetwork"), "bad format of filter"),
        (("--since", "yesterday"), "invalid --since"),
        (("--until", "2024-13-45"), "invalid --until"),
        (("--format", "{{.Type"), "template"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(
    md: PrivateNetnsDaemon, args: tuple[str, ...], msg: str
) -> None:
    p = subprocess.run(
        [str(VENV / "kanal"), "events", "-H", str(md.api), "--until", "1", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1 and p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and msg in p.stderr, p.stderr


def test_no_daemon_is_one_line(tmp_path: Path) -> None:
    p = subprocess.run(
        [str(VENV / "kanal"), "events", "-H", str(tmp_path / "none.sock")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1 and "is kanald running?" in p.stderr
