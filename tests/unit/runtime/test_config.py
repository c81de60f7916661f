"""Loading network configurations from a directory with libcni's lookup rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kanal.errors import DecodeError, InvalidConfig, KanalError
from kanal.runtime.config import (
    NetworkNotFound,
    NoConfigsFound,
    conf_files,
    list_networks,
    load_conflist_file,
    load_network_conf,
)


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def clist(name: str, *types: str, **top: Any) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [{"type": t} for t in types or ("bridge",)],
        **top,
    }


def test_first_sorted_conflist_with_the_name_wins(tmp_path: Path) -> None:
    write(tmp_path / "20-b.conflist", clist("net", "second"))
    write(tmp_path / "10-a.conflist", clist("net", "first"))
    write(tmp_path / "05-z.conflist", clist("other", "x"))
    got = load_network_conf(str(tmp_path), "net")
    assert [p["type"] for p in got.plugins] == ["first"]
    assert got.source == str(tmp_path / "10-a.conflist")
    assert got.bytes == (tmp_path / "10-a.conflist").read_bytes()


def test_conflist_preferred_over_single_conf(tmp_path: Path) -> None:
    write(tmp_path / "00-a.conf", {"cniVersion": "0.4.0", "name": "net", "type": "single"})
    write(tmp_path / "99-z.conflist", clist("net", "listed"))
    assert load_network_conf(str(tmp_path), "net").plugins[0]["type"] == "listed"


@pytest.mark.parametrize("ext", [".conf", ".json"])
def test_single_conf_is_up_converted(tmp_path: Path, ext: str) -> None:
    conf = {"cniVersion": "0.4.0", "name": "net", "type": "bridge", "bridge": "br9"}
    write(tmp_path / f"10-net{ext}", conf)
    got = load_network_conf(str(tmp_path), "net")
    assert got.name == "net" and got.cni_version == "0.4.0"
    assert got.plugins == [conf]
    assert json.loads(got.bytes) == {"cniVersion": "0.4.0", "name": "net", "plugins": [conf]}


def test_plugin_dir_is_appended(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", clist("net", "bridge"))
    write(tmp_path / "net" / "20-b.conf", {"type": "portmap", "capabilities": {"x": True}})
    write(tmp_path / "net" / "10-a.conf", {"type": "tuning"})
    write(tmp_path / "net" / "ignored.json", {"type": "nope"})
    (tmp_path / "net" / "sub.conf").mkdir()
    got = load_network_conf(str(tmp_path), "net")
    assert [p["type"] for p in got.plugins] == ["bridge", "tuning", "portmap"]
    # The cached config bytes are the list file's, as libcni's.
    assert got.bytes == (tmp_path / "10.conflist").read_bytes()


def test_plugin_dir_alone_supplies_the_plugins(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", {"cniVersion": "1.0.0", "name": "net"})
    write(tmp_path / "net" / "a.conf", {"type": "bridge"})
    assert [p["type"] for p in load_network_conf(str(tmp_path), "net").plugins] == ["bridge"]


def test_only_inlined_plugins(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", clist("net", "bridge", loadOnlyInlinedPlugins=True))
    write(tmp_path / "net" / "a.conf", {"type": "tuning"})
    assert [p["type"] for p in load_network_conf(str(tmp_path), "net").plugins] == ["bridge"]


def test_no_plugins_anywhere(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", {"cniVersion": "1.0.0", "name": "net"})
    with pytest.raises(InvalidConfig, match="no plugin configs found"):
        load_network_conf(str(tmp_path), "net")


def test_bad_plugin_file_names_the_file(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", clist("net"))
    bad = write(tmp_path / "net" / "a.conf", {"notype": 1})
    with pytest.raises(InvalidConfig, match=f"^{bad}: .*missing 'type'"):
        load_network_conf(str(tmp_path), "net")


def test_not_found_message(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", clist("net"))
    with pytest.raises(NetworkNotFound) as ei:
        load_network_conf(str(tmp_path), "nope")
    assert str(ei.value) == f'no net configuration with name "nope" in {tmp_path}'
    assert ei.value.code == 3


def test_not_found_among_single_confs(tmp_path: Path) -> None:
    write(tmp_path / "a.conf", {"name": "other", "type": "bridge"})
    with pytest.raises(NetworkNotFound):
        load_network_conf(str(tmp_path), "nope")


@pytest.mark.parametrize("make", [True, False])
def test_empty_or_missing_dir(tmp_path: Path, make: bool) -> None:
    d = tmp_path / "net.d"
    if make:
        d.mkdir()
        (d / "README").write_text("not a config")
    with pytest.raises(NoConfigsFound) as ei:
        load_network_conf(str(d), "net")
    assert str(ei.value) == f"no net configurations found in {d}"


def test_broken_file_stops_the_search_and_is_named(tmp_path: Path) -> None:
    bad = write(tmp_path / "05.conflist", "{not json")
    write(tmp_path / "10.conflist", clist("net"))
    with pytest.raises(DecodeError) as ei:
        load_network_conf(str(tmp_path), "net")
    assert str(ei.value).startswith(f"{bad}: error parsing configuration list")


@pytest.mark.parametrize("name", ["a/b", "../etc", "..", "", "-x"])
def test_bad_name_rejected_before_any_lookup(tmp_path: Path, name: str) -> None:
    write(tmp_path / "10.conflist", clist("net"))
    with pytest.raises(InvalidConfig):
        load_network_conf(str(tmp_path), name)


def test_conf_files_filters(tmp_path: Path) -> None:
    write(tmp_path / "b.conflist", "{}")
    write(tmp_path / "a.conflist", "{}")
    write(tmp_path / "c.conflist.bak", "{}")
    (tmp_path / "d.conflist").mkdir()
    assert conf_files(str(tmp_path), [".conflist"]) == [
        str(tmp_path / "a.conflist"),
        str(tmp_path / "b.conflist"),
    ]
    assert conf_files(str(tmp_path / "missing"), [".conf"]) == []


def test_load_conflist_file(tmp_path: Path) -> None:
    p = write(tmp_path / "x.conflist", clist("net", "a", "b", disableCheck="true"))
    got = load_conflist_file(str(p))
    assert got.disable_check is True and [x["type"] for x in got.plugins] == ["a", "b"]


def test_list_networks(tmp_path: Path) -> None:
    write(tmp_path / "20.conflist", clist("b"))
    write(tmp_path / "10.conflist", clist("a"))
    write(tmp_path / "30.conflist", clist("a", "dup"))
    write(tmp_path / "40.conf", {"name": "c", "type": "bridge", "cniVersion": "0.3.1"})
    write(tmp_path / "50.json", {"name": "b", "type": "shadowed"})
    got = list_networks(str(tmp_path))
    assert [(n.name, n.plugins[0]["type"]) for n in got] == [
        ("a", "bridge"),
        ("b", "bridge"),
        ("c", "bridge"),
    ]


def test_list_networks_errors(tmp_path: Path) -> None:
    write(tmp_path / "10.conflist", clist("a"))
    bad = write(tmp_path / "20.conflist", {"name": "b/c", "plugins": [{"type": "x"}]})
    with pytest.raises(InvalidConfig):
        list_networks(str(tmp_path))
    errors: list[KanalError] = []
    got = list_networks(str(tmp_path), errors)
    assert [n.name for n in got] == ["a"]
    assert len(errors) == 1 and str(errors[0]).startswith(str(bad))
