"""The lean loopback's config reader (pure logic): what it takes, and that it declines
everything else rather than reading it differently from the full decoder."""

from __future__ import annotations

import json

import pytest

from kanal.fastpath.lean_loopback import _Decline, _parse

PLAIN = {"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(PLAIN, separators=(",", ":")),  # Go's json.Marshal (containerd, podman)
        json.dumps(PLAIN),
        json.dumps(PLAIN, indent=4) + "\n",  # a file written by hand
        ' \r\n\t{ "cniVersion" : "1.0.0" ,"name":"cni-loopback",\t"type":"loopback" } \n',
    ],
)
def test_the_shapes_runtimes_and_people_write_are_read(text: str) -> None:
    assert _parse(text) == PLAIN


def test_an_empty_object_is_read() -> None:
    assert _parse("{}") == {}


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "a\\"b"}',  # any escape: the full decoder's to read
        '{"name": "a\\u0041"}',
        '{"name": "a\x01"}',  # a raw control character: not JSON
        '{"name": 1}',
        '{"name": true}',
        '{"name": {}}',
        '{"name": "a",}',
        "{,}",
        '{"name" "a"}',
        '{"name": "a" "type": "b"}',
        '{"name": "a"} {}',
        '{"name": "a"',
        '"name"',
        "",
        "{'name': 'a'}",
        '{"name": "a", "name": "a"}',
    ],
)
def test_anything_else_is_declined(text: str) -> None:
    with pytest.raises(_Decline):
        _parse(text)
