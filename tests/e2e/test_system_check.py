"""``kanal system check`` finds each kind of leak it promises to, and nothing else.

Leaks are made by hand next to a real kanald (its host a namespace made here): a
link carrying the mark of a network that does not exist, a name held for a sandbox
that does not exist, an nftables entry tagged for a live network but no endpoint,
a ``kanal-<id>`` namespace mount without its sandbox, a sandbox directory without
its sandbox, a process left in a sandbox that is not running. Each is reported;
once they are gone the check is clean again.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kanal.firewall.intents import network_tag
from tests.e2e.private_kanald import PrivateNetnsDaemon, private_daemon
from tests.helpers import nsexec

FAKE = "f" * 64


@pytest.fixture
def cd(host_ns: str, tmp_path: Path) -> Iterator[PrivateNetnsDaemon]:
    # A long reconcile interval: the repairer must not tidy up what the check should see.
    yield from private_daemon(host_ns, tmp_path, "--reconcile-interval", "3600")


def _rows(db: Path, *rows: tuple[str, str]) -> None:
    con = sqlite3.connect(db, timeout=30)
    with con:
        for key, value in rows:
            con.execute("INSERT INTO kv VALUES (?, ?, 1)", (key, value.encode()))
    con.close()


def test_each_leak_is_reported_then_gone(cd: PrivateNetnsDaemon) -> None:
    cd.kanal("create", "--subnet", "10.93.0.0/24", "app")
    cd.k("run", "-d", "--name", "live", "--network", "app", "--", "sleep", "600")
    idle = cd.call(
        "POST",
        "/sandboxes/create",
        {"Name": "idle", "Cmd": ["true"], "Networks": [{"Name": "app"}]},
    )
    assert cd.check() == []
    (net,) = json.loads(cd.kanal("inspect", "app").stdout)
    tag = f"{network_tag('kanal-' + net['Id'][:12])}:0123456789abcdef"
    netns_dir, state = cd.tmp / "netns", cd.tmp / "state"
    orphan = netns_dir / "kanal-0123456789ab"

    nsexec(cd.host, "ip", "link", "add", "stray0", "type", "bridge")
    nsexec(cd.host, "ip", "link", "set", "stray0", "alias", f"kanal:net:{FAKE}")
    _rows(state / "state.db", ("sandbox-names/ghost", FAKE))
    nsexec(cd.host, "nft", "add", "element", "inet", "kanal", "masq4",
           "{", "10.250.0.9", "comment", f'"{tag}"', "}")  # fmt: skip
    orphan.touch()
    subprocess.run(["unshare", f"--net={orphan}", "true"], check=True)
    (state / "sandboxes" / FAKE).mkdir(parents=True)
    sleeper = subprocess.Popen(["nsenter", f"--net={idle['Netns']}", "sleep", "600"])

    found = "\n".join(cd.check())
    try:
        assert "link stray0 is marked for network ffffffffffff" in found
        assert "name 'ghost' is held by sandbox ffffffffffff" in found
        assert f"entries tagged {tag} of app belong to no endpoint" in found
        assert f"network namespace {orphan} belongs to no sandbox" in found
        assert f"{state / 'sandboxes' / FAKE} belongs to no sandbox" in found
        assert "sandbox idle is created but 1 process(es) run in its namespace" in found
        assert "live" not in found  # the healthy sandbox is not mentioned
    finally:
        sleeper.kill()
        sleeper.wait()
        nsexec(cd.host, "ip", "link", "del", "stray0")
        con = sqlite3.connect(state / "state.db", timeout=30)
        with con:
            con.execute("DELETE FROM kv WHERE key = 'sandbox-names/ghost'")
        con.close()
        nsexec(
            cd.host, "nft", "delete", "element", "inet", "kanal", "masq4", "{", "10.250.0.9", "}"
        )
        subprocess.run(["umount", str(orphan)], check=True)
        orphan.unlink()
        (state / "sandboxes" / FAKE).rmdir()
    assert cd.check() == []
    out = cd.k("system", "check")
    assert out.stdout == "no problems found\n"
