"""parse_rate, parse_size and parse_duration read what people write, and nothing else."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wedguard as wg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10MB/s", 10e6),
        ("10 MB/s", 10e6),
        ("10MiB/s", 10 * 2**20),
        ("512KiB/s", 512 * 1024),
        ("512kB/s", 512_000),
        ("10Mbit/s", 1.25e6),
        ("10Mbps", 1.25e6),
        ("10Mb/s", 1.25e6),
        ("1Gbit/s", 125e6),
        ("10MBps", 10e6),
        ("2000", 2000.0),
        ("2000/s", 2000.0),
        ("1.5MB/s", 1.5e6),
        ("100/min", 100 / 60),
        ("3600/h", 1.0),
        ("10M", 10e6),
        ("0", 0.0),
        ("1_000_000B/s", 1e6),
    ],
)
def test_parse_rate_units(text: str, expected: float) -> None:
    """SI and IEC prefixes, bits and bytes, and time bases convert exactly."""
    assert wg.parse_rate(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text", ["off", "OFF", "unlimited", "inf", " Unlimited "])
def test_parse_rate_unlimited(text: str) -> None:
    assert wg.parse_rate(text) == math.inf


def test_parse_rate_numbers_pass_through() -> None:
    assert wg.parse_rate(1234) == 1234.0
    assert wg.parse_rate(math.inf) == math.inf


@pytest.mark.parametrize(
    "bad", ["", "   ", "fast", "10 parsecs", "-1MB/s", "10MB/x", "nan", "1e999", "MB/s", "1..2"]
)
def test_parse_rate_rejects_with_the_text(bad: str) -> None:
    """The error quotes the bad text and says what a rate looks like."""
    with pytest.raises(wg.ConfigError) as info:
        wg.parse_rate(bad)
    assert repr(bad) in str(info.value)
    assert "10MB/s" in str(info.value)
    assert info.value.field == "rate"
    assert info.value.value == bad


@pytest.mark.parametrize("bad", [-1, float("nan"), True, None, [1]])
def test_parse_rate_rejects_bad_numbers(bad: object) -> None:
    with pytest.raises(wg.ConfigError):
        wg.parse_rate(bad)  # type: ignore[arg-type]


def test_field_name_is_used() -> None:
    with pytest.raises(wg.ConfigError, match=r"^guard\.rate: 'x'"):
        wg.parse_rate("x", field="guard.rate")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512KiB", 512 * 1024),
        ("1.5KiB", 1536),
        ("10MB", 10_000_000),
        ("1GiB", 2**30),
        ("8Mbit", 1_000_000),
        ("4096", 4096),
        ("4096B", 4096),
        ("500 MB", 500_000_000),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    value = wg.parse_size(text)
    assert value == expected
    assert isinstance(value, int)


@pytest.mark.parametrize("bad", ["1.5B", "big", "-1KB", "1KB/s", "3 bits"])
def test_parse_size_rejects(bad: str) -> None:
    with pytest.raises(wg.ConfigError):
        wg.parse_size(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", 5400.0),
        ("90s", 90.0),
        ("90", 90.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("1d 2h 3m 4s", 93784.0),
        ("5 minutes", 300.0),
    ],
)
def test_parse_duration(text: str, expected: float) -> None:
    assert wg.parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "soon", "5 fortnights", "-5s", "1h 30", "h"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(wg.ConfigError, match="duration"):
        wg.parse_duration(bad)


@given(st.text())
def test_arbitrary_text_raises_only_config_error(text: str) -> None:
    """Whatever the text, the parsers return a value or raise ConfigError, nothing else."""
    for parse in (wg.parse_rate, wg.parse_size, wg.parse_duration):
        try:
            value = parse(text)
        except wg.ConfigError:
            continue
        assert value >= 0


@given(
    st.floats(min_value=0, max_value=1e12, allow_nan=False),
    st.sampled_from(["MB/s", "MiB/s", "Mbit/s", "kB/s", "B/s", ""]),
)
def test_rate_round_trip(number: float, unit: str) -> None:
    """A formatted number with a unit parses back to number x the unit's factor."""
    factor = {"MB/s": 1e6, "MiB/s": 2**20, "Mbit/s": 1.25e5, "kB/s": 1e3, "B/s": 1, "": 1}[unit]
    assert wg.parse_rate(f"{number!r}{unit}") == pytest.approx(number * factor, rel=1e-9)


def test_formatting() -> None:
    assert wg.format_rate(1.25e6) == "1.25 MB/s"
    assert wg.format_rate(math.inf) == "unlimited"
    assert wg.format_size(512) == "512 B"
    assert wg.format_duration(5400) == "1h30m"
