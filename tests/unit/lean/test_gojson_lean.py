"""Go's decoding layer on the exec path: :mod:`kanal.spec.gojson` drives json's C scanner
through :mod:`kanal._json` and checks strings by hand, with json's and re's results."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from kanal import _json
from kanal.spec import gojson

SRC = Path(__file__).resolve().parents[3] / "src"

_PIECES = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    '"a"',
    '"A"',
    '"\\ud800"',
    '"\\u00e9"',
    "1",
    "-0",
    "1.5",
    "1e3",
    "2E-2",
    "10000000000000000000000",
    "true",
    "null",
    "NaN",
    "Infinity",
    "x",
]


def _outcome(fn: Any, *a: Any, **kw: Any) -> Any:
    try:
        v = fn(*a, **kw)
        return ("ok", repr(v), repr(getattr(v, "members", None)))
    except Exception as e:  # the same exception type and text count as the same result
        return ("err", type(e).__name__, str(e))


def _reject(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def _texts(rng: random.Random) -> list[str]:
    out = ['{"a": 1, "A": 2, "a": {"b": 1e2}}', '[1, 2.50, "\\ud800x"]', " {} ", "", "[", "{}x"]
    out += ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 12))) for _ in range(4000)]
    out += [json.dumps({"k": [1, {"k": 2.0, "K": None}], "k2": "v"}, indent=rng.randint(0, 2))]
    return out


def test_decode_matches_json_decoder_with_hooks() -> None:
    """Same values (objects through the pairs hook, floats through parse_float), same
    exceptions and texts as ``json.JSONDecoder(...).decode``."""
    rng = random.Random(11)
    hooks: dict[str, Any] = {
        "object_pairs_hook": gojson.GoObject,
        "parse_float": gojson._number,
        "parse_constant": _reject,
    }
    std = json.JSONDecoder(**hooks)
    for text in _texts(rng):
        assert _outcome(_json.decode, text, **hooks) == _outcome(std.decode, text), text
        assert _outcome(_json.decode, text) == _outcome(json.JSONDecoder().decode, text), text


def test_gojson_loads_keeps_members_and_literals() -> None:
    obj = gojson.loads(b'{"a": 1, "a": {"b": 1e2}, "s": "\xff"}')
    assert isinstance(obj, gojson.GoObject)
    assert obj.members == [("a", 1), ("a", {"b": 100.0}), ("s", "\ufffd")]
    assert obj["a"]["b"].text == "1e2"


def test_dumps_of_subclasses_matches_json() -> None:
    """A decoded config (GoObject, GoNumber) is encoded again as json would."""
    obj = gojson.loads('{"a": [1.50, 2e3, {"x": -0.0}], "a": {"n": 7, "f": 1E+2}, "s": "<"}')
    for opts in (
        {},
        {"indent": 1},
        {"separators": (",", ":"), "ensure_ascii": False, "allow_nan": False},
        {"sort_keys": True, "indent": 2},
    ):
        assert _json.dumps(obj, **opts) == json.dumps(obj, **opts), opts


def test_string_repair_matches_its_pattern() -> None:
    rng = random.Random(13)
    rx = re.compile("[\ud800-\udfff]")
    alphabet = ["a", "é", "\ud800", "\udfff", "\ud7ff", "\ue000", "😀", "\ufffd"]
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert gojson._valid_utf16(s) == rx.sub("\ufffd", s), repr(s)


def test_decoding_layer_imports_no_json_re_or_typing() -> None:
    """Decoding a config, with a duplicate key and a type error, and the route lookup
    module: none of json, re, typing or socket comes in (the budget test's exec path
    in small, runnable without root)."""
    code = f"""
import sys
sys.path.insert(0, {str(SRC)!r})
from kanal.spec import gojson, gotypes
from kanal.netlink import routeget
from kanal.spec import _go
conf = gojson.loads(b'{{"cniVersion": "1.0.0", "name": "n", "Name": "m", "mtu": "x",'
                    b' "ipam": {{"type": "host-local"}}, "dns": {{"nameservers": ["1.1.1.1"]}}}}')
spec = gotypes.NETCONF.extend("C", [("mtu", gojson.INT)])
out, err = gojson.decode_lenient(spec, conf)
assert out["name"] == "m" and err.startswith("json: cannot unmarshal string"), (out, err)
_go.marshal(conf)
print(" ".join(m for m in ("json", "re", "typing", "socket") if m in sys.modules))
"""
    p = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=False
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ""
