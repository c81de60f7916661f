"""``kanal events``'s time arguments and default line (pure logic)."""

from __future__ import annotations

import time

import pytest

from kanal.cli.events import line, timestamp
from kanal.errors import InvalidConfig

NOW = 1_700_000_000_123_456_789


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("10m", "1699999400.123456789"),
        ("1h30m", "1699994600.123456789"),
        ("1.5s", "1699999998.623456789"),
        ("-1m", "1700000060.123456789"),  # a negative duration: after now
        ("0", "1700000000.123456789"),
        ("1700000000", "1700000000"),
        ("1700000000.5", "1700000000.5"),
        ("2023-11-14T22:13:20Z", "1700000000.000000000"),
        ("2023-11-14T22:13:20.25Z", "1700000000.250000000"),
        ("2023-11-14T23:13:20+01:00", "1700000000.000000000"),
    ],
)
def test_timestamp_forms(value: str, want: str) -> None:
    assert timestamp(value, NOW) == want


def test_timestamp_without_zone_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert timestamp("2023-11-14T23:13:20", NOW) == "1700000000.000000000"
        assert timestamp("2023-11-14", NOW) == "1699916400.000000000"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("value", ["yesterday", "1d", "2023-13-01", "2023-11-14T25", "1.2.3", "m"])
def test_timestamp_refuses(value: str) -> None:
    with pytest.raises(InvalidConfig, match="invalid --since"):
        timestamp(value, NOW)


def test_default_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        ev = {
            "Type": "container",
            "Action": "die",
            "Actor": {"ID": "abc", "Attributes": {"name": "web", "exitCode": "137"}},
            "timeNano": 1_700_000_000_000_000_042,
        }
        assert line(ev) == (
            "2023-11-14T22:13:20.000000042Z container die abc (exitCode=137, name=web)"
        )
        ev["Actor"] = {"ID": "n1"}
        assert line(ev).endswith(" container die n1")
    finally:
        monkeypatch.undo()
        time.tzset()
