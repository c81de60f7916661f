"""kanal.jsonget: the typed getters every JSON reader uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kanal import jsonget
from kanal.errors import DecodeError, InvalidConfig, KanalError

D: dict[str, Any] = {
    "s": "x",
    "empty": "",
    "b": True,
    "i": 7,
    "o": {"k": 1},
    "l": ["a", "b"],
    "ip": "10.0.0.1",
    "cidr": "10.0.0.2/24",
    "null": None,
    "n": 1.5,
}


def test_values_and_defaults() -> None:
    assert jsonget.opt_str(D, "s") == "x"
    assert jsonget.opt_str(D, "null", default="d") == "d"
    assert jsonget.opt_str(D, "missing") == ""
    assert jsonget.req_str(D, "s") == "x"
    assert jsonget.opt_bool(D, "b") is True
    assert jsonget.opt_bool(D, "missing", True) is True
    assert jsonget.opt_int(D, "i", lo=0, hi=10) == 7
    assert jsonget.opt_int(D, "null", 3) == 3
    assert jsonget.opt_obj(D, "o") == {"k": 1}
    assert jsonget.opt_obj(D, "missing") == {}
    lst = jsonget.str_list(D, "l")
    assert lst == ["a", "b"] and lst is not D["l"]
    assert jsonget.str_list(D, "null") == []
    assert jsonget.opt_ip(D, "ip") == "10.0.0.1"
    assert jsonget.opt_ip(D, "empty") == ""
    assert jsonget.opt_cidr(D, "cidr") == "10.0.0.2/24"
    assert jsonget.obj(D) is D


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: jsonget.opt_str(D, "i", "IPAM."), "invalid IPAM.i: want a string"),
        (lambda: jsonget.req_str(D, "empty"), "empty is required (a non-empty string)"),
        (lambda: jsonget.req_str(D, "missing"), "missing is required (a non-empty string)"),
        (lambda: jsonget.opt_bool(D, "s"), "invalid s: want true or false"),
        (lambda: jsonget.opt_int(D, "b"), "invalid b: want an integer"),
        (lambda: jsonget.opt_int(D, "n"), "invalid n: want an integer"),
        (lambda: jsonget.opt_int(D, "i", hi=5), "invalid i: want an integer from None to 5"),
        (lambda: jsonget.opt_obj(D, "l"), "invalid l: want an object"),
        (lambda: jsonget.str_list(D, "o"), "invalid o: want a list of strings"),
        (lambda: jsonget.opt_ip(D, "s"), "invalid s: want an IP address"),
        (lambda: jsonget.opt_cidr(D, "ip"), "invalid ip: want an address with a prefix"),
        (lambda: jsonget.opt_cidr(D, "s"), "invalid s: want an address with a prefix"),
        (lambda: jsonget.obj([]), "the request body must be a JSON object"),
    ],
)
def test_errors_name_the_key_and_what_was_wanted(call: Any, text: str) -> None:
    with pytest.raises(InvalidConfig) as e:
        call()
    assert e.value.msg == text


def test_error_class_and_wording_are_the_readers() -> None:
    with pytest.raises(DecodeError):
        jsonget.opt_obj(D, "s", error=DecodeError)

    def bad(key: str, want: str, value: Any) -> KanalError:
        return KanalError(f"{key}={value!r} is not {want}", code=42)

    with pytest.raises(KanalError) as e:
        jsonget.str_list(D, "s", bad=bad)
    assert (e.value.msg, e.value.code) == ("s='x' is not a list of strings", 42)


def test_stays_lean() -> None:
    src = str(Path(jsonget.__file__).resolve().parent.parent)
    code = (
        f"import sys\nsys.path.insert(0, {src!r})\nimport kanal.jsonget\n"
        "print(' '.join(m for m in ('typing', 'dataclasses', 'json', 're') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""
