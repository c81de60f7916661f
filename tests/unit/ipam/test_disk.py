"""The Go-compatible disk store: exact bytes, the cached index and its invalidation."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from kanal.errors import IOFailure
from kanal.ipam.disk import DiskStore, disk_store, forget_stores
from kanal.ipam.diskfiles import INDEX_NAME
from kanal.ipam.store import StoreMissing

IP = ip_address


@pytest.fixture(autouse=True)
def plugin_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a plugin process is (a FastPathServer made earlier in this worker would have
    switched the index file off for the whole process)."""
    from kanal.ipam import diskfiles

    monkeypatch.setattr(diskfiles, "_INDEX_FILE", [True])


@pytest.fixture
def netdir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "net1"


def entries(d: Path) -> list[str]:
    """What the directory holds, but for kanal's index file (tested on its own)."""
    return sorted(n for n in os.listdir(d) if n != INDEX_NAME)


def age(path: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_layout_bytes_and_modes(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        assert st.reserve("ctr1 ", "eth0", IP("10.0.0.2"), "0")
        assert st.reserve("ctr1", "eth1", IP("2001:db8::a"), "1")
    assert entries(netdir) == [
        "10.0.0.2",
        "2001:db8::a",
        "last_reserved_ip.0",
        "last_reserved_ip.1",
        "lock",
    ]
    assert (netdir / "10.0.0.2").read_bytes() == b"ctr1\r\neth0"  # id trimmed, as Go
    assert (netdir / "2001:db8::a").read_bytes() == b"ctr1\r\neth1"
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.0.0.2"
    assert (netdir / "last_reserved_ip.1").read_bytes() == b"2001:db8::a"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((netdir / "10.0.0.2").stat().st_mode) == 0o600 & ~umask
    assert stat.S_IMODE((netdir / "last_reserved_ip.0").stat().st_mode) == 0o600 & ~umask
    assert stat.S_IMODE((netdir / "lock").stat().st_mode) == 0o750 & ~umask
    assert stat.S_IMODE(netdir.stat().st_mode) == 0o755 & ~umask
    # the lock file holds only the generation, which no container ID can equal
    assert b" " in (netdir / "lock").read_bytes()


def test_reserve_twice_fails_and_lookups(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        assert st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
        assert not st.reserve("c2", "eth0", IP("10.0.0.2"), "0")
        assert st.is_reserved(IP("10.0.0.2"))
        assert st.is_reserved(IP("::ffff:10.0.0.2"))
        assert not st.is_reserved(IP("10.0.0.3"))
        assert st.get_by_id("c1", "eth0") == [IP("10.0.0.2")]
        assert st.get_by_id("c1", "eth1") == []
        assert st.find_by_id("c1", "eth0")
        assert not st.find_by_id("c2", "eth0")
        assert st.last_reserved_ip("0") == IP("10.0.0.2")
        assert st.last_reserved_ip("7") is None
    assert (netdir / "10.0.0.2").read_bytes() == b"c1\r\neth0"


def test_use_outside_lock_is_a_bug(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with pytest.raises(RuntimeError):
        st.is_reserved(IP("10.0.0.1"))


def test_missing_store(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with pytest.raises(StoreMissing), st.locked(create=False):
        pass
    assert not netdir.exists()


def test_index_is_cached_across_operations(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    for i in range(2, 30):
        with st.locked():
            assert st.reserve(f"c{i}", "eth0", IP(f"10.0.0.{i}"), "0")
    with st.locked():
        assert st.release_by_id("c5", "eth0")
        assert st.find_by_id("c6", "eth0")
    assert st.scans == 1


def test_external_create_is_seen(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
    (netdir / "10.0.0.3").write_bytes(b"go1\r\neth0")
    with st.locked():
        assert st.is_reserved(IP("10.0.0.3"))
        assert st.get_by_id("go1", "eth0") == [IP("10.0.0.3")]
    assert st.scans == 2


def test_external_delete_is_seen(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
    (netdir / "10.0.0.2").unlink()
    with st.locked():
        assert not st.is_reserved(IP("10.0.0.2"))
        assert not st.find_by_id("c1", "eth0")


def test_change_in_the_same_clock_tick_is_seen(netdir: Path) -> None:
    """A change stamped with the mtime our own write had (same coarse tick) is detected."""
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
    assert st._stamp is not None
    sealed = st._stamp[2]
    real = sealed + 1  # the value the kernel gave our write; we sealed it 1 ns back
    assert netdir.stat().st_mtime_ns == sealed
    (netdir / "10.0.0.3").write_bytes(b"go1\r\neth0")
    os.utime(netdir, ns=(real, real))  # as if the Go plugin wrote in that same tick
    with st.locked():
        assert st.is_reserved(IP("10.0.0.3"))


def test_other_kanal_process_is_seen_through_the_generation(netdir: Path) -> None:
    a = DiskStore(str(netdir))
    b = DiskStore(str(netdir))  # stands for another process: own index, own lock fd
    with a.locked():
        a.reserve("c1", "eth0", IP("10.0.0.2"), "0")
    assert a._stamp is not None
    with b.locked():
        b.reserve("c2", "eth0", IP("10.0.0.3"), "0")
    # Worst case: b's seal landed on the very mtime a recorded.
    os.utime(netdir, ns=(a._stamp[2], a._stamp[2]))
    with a.locked():
        assert a.is_reserved(IP("10.0.0.3"))
        assert a.find_by_id("c2", "eth0")


def test_directory_recreated_under_a_cached_store(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
    shutil.rmtree(netdir)
    with st.locked():
        assert not st.is_reserved(IP("10.0.0.2"))
        assert st.reserve("c2", "eth0", IP("10.0.0.2"), "0")
    assert (netdir / "10.0.0.2").read_bytes() == b"c2\r\neth0"
    shutil.rmtree(netdir)
    with pytest.raises(StoreMissing), st.locked(create=False):
        pass


def test_release_exact_then_legacy_like_go(netdir: Path) -> None:
    netdir.mkdir(parents=True)
    (netdir / "10.0.0.2").write_bytes(b"c1\r\neth0")
    (netdir / "10.0.0.3").write_bytes(b"c1")  # legacy: id only
    (netdir / "10.0.0.4").write_bytes(b"c1\r\neth1")
    (netdir / "notes").write_bytes(b"c1\r\neth0")  # Go's walk matches any file
    st = DiskStore(str(netdir))
    with st.locked():
        assert sorted(map(str, st.get_by_id("c1", "eth0"))) == ["10.0.0.2", "10.0.0.3"]
        assert st.release_by_id("c1", "eth0")
    assert entries(netdir) == ["10.0.0.3", "10.0.0.4", "lock"]
    with st.locked():
        assert st.release_by_id("c1", "eth0")  # nothing exact left: legacy
        assert not st.release_by_id("c1", "eth0")
    assert entries(netdir) == ["10.0.0.4", "lock"]


def test_lock_and_last_reserved_are_never_reservations(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
        names = [r.name for r in st.reservations()]
        # a container named like the last reserved address must not own that file
        assert not st.release_by_id("10.0.0.2", "eth0")
    assert names == ["10.0.0.2"]
    assert (netdir / "last_reserved_ip.0").exists()


def test_empty_files_swept_only_when_old(netdir: Path) -> None:
    netdir.mkdir(parents=True)
    (netdir / "10.0.0.7").write_bytes(b"")
    (netdir / "10.0.0.8").write_bytes(b"\r\n")
    (netdir / "10.0.0.9").write_bytes(b"")
    age(netdir / "10.0.0.7")
    age(netdir / "10.0.0.8")
    st = DiskStore(str(netdir))
    with st.locked():
        assert st.is_reserved(IP("10.0.0.7"))  # ADD never reuses them
        assert st.sweep_empty(5.0) == ["10.0.0.7", "10.0.0.8"]
        assert st.is_reserved(IP("10.0.0.9"))
    assert entries(netdir) == ["10.0.0.9", "lock"]


def test_temp_leftovers_swept(netdir: Path) -> None:
    netdir.mkdir(parents=True)
    leftover = netdir / ".kanal-tmp.ip.1.2"
    leftover.write_bytes(b"c1\r\neth0")
    age(leftover)
    st = DiskStore(str(netdir))
    with st.locked():
        assert not st.find_by_id("c1", "eth0")  # not a reservation
        assert st.sweep_empty(5.0) == [".kanal-tmp.ip.1.2"]
    assert entries(netdir) == ["lock"]


def test_no_temp_files_left_after_reserve(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        for i in range(2, 6):
            st.reserve("c", f"eth{i}", IP(f"10.0.0.{i}"), "0")
    assert not [n for n in entries(netdir) if n.startswith(".")]


def test_fallback_without_hard_links(netdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: str, dst: str, **kw: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    st = DiskStore(str(netdir))
    with st.locked():
        assert st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
        assert not st.reserve("c2", "eth0", IP("10.0.0.2"), "0")
    assert (netdir / "10.0.0.2").read_bytes() == b"c1\r\neth0"
    assert not [n for n in entries(netdir) if n.startswith(".")]


def test_named_temp_path_when_no_tmpfile(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    st._tmpfile_ok = False
    with st.locked():
        assert st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
        assert not st.reserve("c2", "eth0", IP("10.0.0.2"), "0")
    assert (netdir / "10.0.0.2").read_bytes() == b"c1\r\neth0"
    assert not [n for n in entries(netdir) if n.startswith(".")]


def test_last_reserved_rewritten_in_place(netdir: Path) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.10"), "0")
        st.reserve("c2", "eth0", IP("10.0.0.9"), "0")  # shorter: trimmed
    assert (netdir / "last_reserved_ip.0").read_bytes() == b"10.0.0.9"
    (netdir / "last_reserved_ip.0").write_bytes(b"10.0.0.9\n")  # Go would not parse this
    with st.locked():
        assert st.last_reserved_ip("0") is None


def test_failed_removal_is_reported(netdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        st.reserve("c1", "eth0", IP("10.0.0.2"), "0")
    real_unlink = os.unlink

    def failing_unlink(path: str, *a: object, **k: object) -> None:
        if path.endswith("10.0.0.2"):
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", failing_unlink)
    with st.locked(), pytest.raises(IOFailure, match="10.0.0.2"):
        st.release_by_id("c1", "eth0")
    monkeypatch.undo()
    with st.locked():
        assert st.find_by_id("c1", "eth0")  # still there, still indexed


def test_disk_store_registry(tmp_path: Path) -> None:
    forget_stores()
    a = disk_store(str(tmp_path), "n1")
    assert disk_store(str(tmp_path) + "/", "n1") is a
    assert disk_store(str(tmp_path), "n2") is not a
    forget_stores()
    assert disk_store(str(tmp_path), "n1") is not a
    forget_stores()


# -- the index file: what a process without kanald starts from -------------------------


def _reserve_some(netdir: Path, n: int = 5) -> None:
    st = DiskStore(str(netdir))
    with st.locked():
        for i in range(2, 2 + n):
            assert st.reserve(f"c{i}", "eth0", IP(f"10.0.0.{i}"), "0")
    st.close()


def test_a_new_process_starts_from_the_index_file(netdir: Path) -> None:
    _reserve_some(netdir)
    assert (netdir / INDEX_NAME).stat().st_mode & 0o777 == 0o600
    fresh = DiskStore(str(netdir))  # as a plugin exec is: nothing in memory
    with fresh.locked():
        assert fresh.get_by_id("c4", "eth0") == [IP("10.0.0.4")]
        assert fresh.is_reserved(IP("10.0.0.6")) and not fresh.is_reserved(IP("10.0.0.7"))
        assert fresh.reserve("c7", "eth0", IP("10.0.0.7"), "0")
    assert fresh.scans == 0
    again = DiskStore(str(netdir))
    with again.locked():
        assert again.get_by_id("c7", "eth0") == [IP("10.0.0.7")]  # its own change, recorded
        assert again.release_by_id("c2", "eth0")
    assert again.scans == 0
    last = DiskStore(str(netdir))
    with last.locked():
        assert not last.find_by_id("c2", "eth0") and last.find_by_id("c3", "eth0")
    assert last.scans == 0


@pytest.mark.parametrize("change", ["go creates", "go deletes", "old kanal", "garbled", "torn"])
def test_the_index_file_is_not_trusted_after_a_change(netdir: Path, change: str) -> None:
    _reserve_some(netdir)
    want_go = False
    if change == "go creates":  # Go's plugin does not know about the index
        (netdir / "10.0.0.9").write_bytes(b"go1\r\neth0")
        want_go = True
    elif change == "go deletes":
        (netdir / "10.0.0.3").unlink()
    elif change == "old kanal":  # another kanal process's change, and a stale index file
        stale = (netdir / INDEX_NAME).read_bytes()
        other = DiskStore(str(netdir))
        with other.locked():
            other.release_by_id("c3", "eth0")
        with open(netdir / INDEX_NAME, "r+b") as f:  # in place: the directory unchanged
            f.truncate(0)
            f.write(stale)
    elif change == "garbled":
        raw = bytearray((netdir / INDEX_NAME).read_bytes())
        raw[-3] ^= 0xFF
        with open(netdir / INDEX_NAME, "r+b") as f:  # in place: the directory unchanged
            f.write(raw)
    elif change == "torn":
        with open(netdir / INDEX_NAME, "r+b") as f:
            f.truncate(40)
    fresh = DiskStore(str(netdir))
    with fresh.locked():
        assert fresh.find_by_id("go1", "eth0") == want_go
        assert fresh.find_by_id("c3", "eth0") == (change not in ("go deletes", "old kanal"))
        assert fresh.find_by_id("c4", "eth0")
    assert fresh.scans == 1


def test_a_long_lived_process_keeps_its_index_in_memory_only(
    netdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kanald serves every request from memory: it does not rewrite the file each time;
    a plugin run after it finds no usable file, reads the directory once, and keeps
    the file from then on."""
    from kanal.ipam import diskfiles

    monkeypatch.setattr(diskfiles, "_INDEX_FILE", [False])
    _reserve_some(netdir)
    assert not (netdir / INDEX_NAME).exists()
    monkeypatch.setattr(diskfiles, "_INDEX_FILE", [True])
    first = DiskStore(str(netdir))
    with first.locked():
        assert first.find_by_id("c3", "eth0")
    assert first.scans == 1 and (netdir / INDEX_NAME).exists()
    second = DiskStore(str(netdir))
    with second.locked():
        assert second.find_by_id("c3", "eth0")
    assert second.scans == 0
