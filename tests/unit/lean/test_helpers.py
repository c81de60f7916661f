"""The exec path's stand-ins for json, dataclasses, hashlib, ctypes and re give the
standard library's results (they exist only to keep a plugin exec's imports lean)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import random
import re
from typing import Any

import pytest

from kanal import _dataclass, _ffi, _hash, _json
from kanal.firewall import fwplugin_nft, intents
from kanal.plugins import _conf
from kanal.spec import args, types, versions

_CHARS = ["a", "Z", "0", "9", "<", "&", "\u2028", "é", "\x00", '"', "\\", "\n", "\ud800", "😀", " "]


def _text(rng: random.Random, n: int = 5) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randint(0, n)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice(
            [None, True, False, 0, -5, 10**20, 1.5, -0.0, 1e300, _text(rng), float("nan")]
        )
    if r < 0.6:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if r < 0.7:
        return tuple(_value(rng, depth + 1) for _ in range(rng.randint(0, 3)))
    return {_text(rng, 4): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


_DUMPS_OPTIONS: list[dict[str, Any]] = [
    {},
    {"indent": 4},
    {"indent": 4, "separators": (",", ": "), "ensure_ascii": False, "allow_nan": False},
    {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False},
    {"indent": 1},
    {"indent": 0},
    {"sort_keys": True, "indent": 2},
]


def _outcome(fn: Any, *a: Any, **kw: Any) -> Any:
    try:
        return ("ok", repr(fn(*a, **kw)))
    except Exception as e:  # the same exception type and text count as the same result
        return ("err", type(e).__name__, str(e))


def test_json_dumps_and_loads_match_json() -> None:
    rng = random.Random(7)
    for _ in range(1500):
        obj = _value(rng)
        for opts in _DUMPS_OPTIONS:
            assert _outcome(_json.dumps, obj, **opts) == _outcome(json.dumps, obj, **opts), opts
        text = json.dumps(obj)
        variants: list[str | bytes] = [text, text.encode(), f" \n{text}\n ", text + " x", text[:-1]]
        for s in variants:
            assert _outcome(_json.loads, s) == _outcome(json.loads, s)
    odd: list[str | bytes] = ["NaN", "[Infinity]", "\ufeff{}", b"\xff\xfe{\x00}\x00", b"\xff"]
    for o in [*odd, b"\xef\xbb\xbf{}"]:
        assert _outcome(_json.loads, o) == _outcome(json.loads, o)
    assert _json.dumps({1: 2}) == json.dumps({1: 2})  # unusual keys: json's own answer


def test_json_raw_decode_calls_the_hook() -> None:
    seen: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append(pairs)
        return dict(pairs)

    assert _json.raw_decode('{"a": 1, "a": 2} tail', object_pairs_hook=hook) == ({"a": 2}, 16)
    assert seen == [[("a", 1), ("a", 2)]]
    with pytest.raises(ValueError):
        _json.raw_decode("nope")


@dataclasses.dataclass(frozen=True)
class _StdFrozen:
    a: int
    b: tuple[int, ...] = ()
    c: list[int] = dataclasses.field(default_factory=list)


@_dataclass.dataclass(frozen=True)
class _LeanFrozen:
    a: int
    b: tuple[int, ...] = ()
    c: list[int] = _dataclass.field(default_factory=list)


@dataclasses.dataclass
class _StdPlain:
    a: int
    b: str = "x"

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


@_dataclass.dataclass
class _LeanPlain:
    a: int
    b: str = "x"

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("negative")


def _shape(obj: Any) -> str:
    return repr(obj).split("(", 1)[1]


def test_dataclass_behaves_like_dataclasses() -> None:
    for std, lean in ((_StdFrozen, _LeanFrozen), (_StdPlain, _LeanPlain)):
        assert list(lean.__dataclass_fields__) == [f.name for f in dataclasses.fields(std)]
        assert lean.__match_args__ == std.__match_args__
    s, lean_f = _StdFrozen(1, c=[2]), _LeanFrozen(1, c=[2])
    assert _shape(s) == _shape(lean_f)
    assert lean_f == _LeanFrozen(1, (), [2]) and lean_f != _LeanFrozen(2)
    other: object = _StdFrozen(1)
    assert _LeanFrozen(1) != other  # another class is never equal
    # Frozen hashes its fields, like dataclasses (here: a list, so neither can).
    assert _outcome(hash, _LeanFrozen(1))[:2] == _outcome(hash, _StdFrozen(1))[:2]
    keyed: Any = _dataclass.dataclass(frozen=True)(type("K", (), {"__annotations__": {"a": "int"}}))
    assert hash(keyed(1)) == hash(keyed(1)) == hash((1,)) and {keyed(1): 0}[keyed(1)] == 0
    assert _LeanFrozen(1).c is not _LeanFrozen(1).c  # a fresh default each time
    with pytest.raises(AttributeError):
        lean_f.a = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        lean_f.other = 3  # type: ignore[attr-defined]
    assert _LeanPlain.__hash__ is None and _StdPlain.__hash__ is None
    p = _LeanPlain(1)
    p.b = "y"
    assert _shape(p) == _shape(_StdPlain(1, "y"))
    for cls in (_StdPlain, _LeanPlain):
        with pytest.raises(ValueError, match="negative"):
            cls(-1)
        for bad_args, bad_kwargs in (
            ((), {}),
            ((1, "y", 3), {}),
            ((1,), {"a": 2}),
            ((1,), {"z": 1}),
        ):
            with pytest.raises(TypeError):
                cls(*bad_args, **bad_kwargs)


def test_dataclass_refuses_what_it_does_not_implement() -> None:
    with pytest.raises(TypeError):
        _dataclass.dataclass(order=True)
    with pytest.raises(ValueError):

        @_dataclass.dataclass
        class Mutable:
            x: list[int] = []

    with pytest.raises(TypeError):

        @_dataclass.dataclass
        class Order:
            x: int = 0
            y: int  # type: ignore[misc]


def test_hash_and_ffi_match_the_standard_library() -> None:
    for data in (b"", b"kanal", os.urandom(300)):
        assert _hash.sha256_hex(data) == hashlib.sha256(data).hexdigest()
        assert _hash.sha512_hex(data) == hashlib.sha512(data).hexdigest()
    libc = _ffi.Library(None)
    assert libc.function("getpid")() == os.getpid()
    close = libc.function("close", _ffi.c_int, (_ffi.c_int,))
    assert close(-1) == -1 and _ffi.get_errno() == errno.EBADF
    with pytest.raises(AttributeError):
        libc.function("no_such_function_in_libc")


_PATTERN_CHECKS: list[tuple[str, Any, str]] = [
    (r"\A[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z", args.CONTAINER_ID_RE.match, "aZ9_.-/ \n"),
    (r"\A[0-9A-Fa-f:.]+\Z", types._ip_text, "0aF:.g/ \n"),
    (r"\A[+-]?[0-9]+\Z", versions._atoi_ok, "+-09a \n"),
    (r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z", _conf._mac_ok, "0aF:g\n"),
    (r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z", intents._name_ok, "aZ9_.-/ \n"),
    (r"^[^\s/:\"'\\]{1,15}\Z", intents._ifname_ok, "ab/:\"'\\ \t\n\u3000é"),
    (r"^[A-Za-z0-9_.:@-]{1,15}\Z", fwplugin_nft._ifname_ok, "aZ9_.:@-/ \n"),
]


@pytest.mark.parametrize(("pattern", "check", "alphabet"), _PATTERN_CHECKS)
def test_hand_written_checks_match_their_patterns(pattern: str, check: Any, alphabet: str) -> None:
    rng = random.Random(pattern)
    rx = re.compile(pattern)
    samples = ["", "\n", "aa:bb:cc:dd:ee:ff", "aa:bb:cc:dd:ee:ff\n", "0" * 15, "0" * 16 + "\n"]
    samples += [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20))) for _ in range(4000)
    ]
    mac_like = [
        ":".join(rng.choice(["0a", "FF", "g0", "1", "abc"]) for _ in range(6)) for _ in range(300)
    ]
    for s in samples + mac_like + [m + "\n" for m in mac_like]:
        assert bool(check(s)) == bool(rx.match(s)), repr(s)


def test_cidr_and_ip_parsing_match_the_go_syntax() -> None:
    rng = random.Random(3)
    rx = re.compile(r"\A([0-9A-Fa-f:.]+)/([0-9]{1,3})\Z")
    pieces = ["10.0.0.1", "fd00::1", "1", "/", "/24", "/128", "/1000", "x", " ", "\n", "::"]
    for _ in range(3000):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
        try:
            types.parse_cidr(s)
            ok = True
        except Exception:
            ok = False
        if ok:
            assert rx.match(s), s


def test_disk_index_reads_addresses_as_ipaddress_does() -> None:
    """The host-local store's quick read of entry names equals ipaddress's."""
    from kanal.ipam.disk import _address
    from kanal.ipam.ranges import canonical_ip
    from kanal.ipam.store import name_ip

    def reference(name: str) -> tuple[int, int] | None:
        ip = name_ip(name)
        if ip is None:
            return None
        ip = canonical_ip(ip)
        return ip.version, int(ip)

    rng = random.Random(5)
    parts: list[Any] = [0, 1, 9, 10, 99, 100, 255, 256, "01", "001", "x", "", " 1", "\u0661"]
    names = ["1.2.3.4", "0.0.0.0", "::ffff:1.2.3.4", "fd00::1", "lock", "last_reserved_ip.0"]
    names += [
        ".".join(str(rng.choice(parts)) for _ in range(rng.choice([3, 4, 4, 4, 5])))
        for _ in range(5000)
    ]
    for name in names:
        assert _address(name) == reference(name), name
