"""PeakHourCalendar: the line syntax, overlaps, presets, dict form, description."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib  # type: ignore[no-redef]

import itertools

import wedguard as wg
from wedguard import CalendarRule as Rule
from wedguard import ConfigError, Level, PeakHourCalendar, Season, Window

UTC = timezone.utc
LONDON = ZoneInfo("Europe/London")


def at(cal: PeakHourCalendar, *args: int, tz: object = UTC) -> Window:
    return cal.at(datetime(*args, tzinfo=tz))  # type: ignore[arg-type,misc]


def test_public_names() -> None:
    """The calendar's names are exported from the package."""
    for name in ("PeakHourCalendar", "CalendarRule", "Window", "Season", "Level"):
        assert name in wg.__all__
        assert getattr(wg, name) is not None


def test_contract_example() -> None:
    """The example of docs/contract.md: peak hours, wedding-season Saturdays, an event date."""
    cal = PeakHourCalendar.parse(
        """
        Mon-Sun 06:00-22:00 peak 10Mbit/s
        May-Oct Sat 08:00-24:00 blackout
        2026-06-13 blackout
        """,
        tz="Europe/London",
    )
    assert len(cal.rules) == 3
    # a Tuesday in January, 09:00 London (= UTC in winter)
    w = at(cal, 2026, 1, 6, 9)
    assert w.level is Level.PEAK
    assert w.rate == 1_250_000.0
    assert w.start == datetime(2026, 1, 6, 6, tzinfo=LONDON)
    assert w.end == datetime(2026, 1, 6, 22, tzinfo=LONDON)
    assert "Mon-Sun 06:00-22:00 peak 10Mbit/s" in w.reason
    # a Saturday in July, 07:00 London: peak; 08:00 onwards blackout until midnight
    assert at(cal, 2026, 7, 4, 7, tz=LONDON).level is Level.PEAK
    w = at(cal, 2026, 7, 4, 12, tz=LONDON)
    assert w.level is Level.BLACKOUT
    assert w.rate == 0.0
    assert w.start == datetime(2026, 7, 4, 8, tzinfo=LONDON)
    assert w.end == datetime(2026, 7, 5, 0, tzinfo=LONDON)
    # the event date (a Saturday in June): blackout all day, from midnight
    w = at(cal, 2026, 6, 13, 3, tz=LONDON)
    assert w.level is Level.BLACKOUT
    assert w.start == datetime(2026, 6, 13, 0, tzinfo=LONDON)
    assert w.reason == "rule '2026-06-13 blackout'"
    # at 08:00 the season rule joins in: still BLACKOUT, and the reason names both
    assert w.end == datetime(2026, 6, 13, 8, tzinfo=LONDON)
    w = at(cal, 2026, 6, 13, 12, tz=LONDON)
    assert w.level is Level.BLACKOUT
    assert w.reason == "rules 'May-Oct Sat 08:00-24:00 blackout', '2026-06-13 blackout'"
    assert w.end == datetime(2026, 6, 14, 0, tzinfo=LONDON)
    # a Saturday in December: the season rule does not hold
    assert at(cal, 2026, 12, 5, 12).level is Level.PEAK
    # the night: OPEN by default
    w = at(cal, 2026, 1, 6, 23)
    assert w.level is Level.OPEN
    assert w.rate is None
    assert w.reason == "no rule applies (default OPEN)"


def test_naive_datetime_refused() -> None:
    cal = PeakHourCalendar.default()
    with pytest.raises(ConfigError, match="when"):
        cal.at(datetime(2026, 1, 1, 12))
    with pytest.raises(ConfigError):
        cal.next_change(datetime(2026, 1, 1, 12))
    with pytest.raises(ConfigError):
        list(cal.windows(datetime(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC)))


def test_aware_datetimes_in_any_zone_are_converted() -> None:
    """07:00 in Tokyo is 22:00 UTC the day before: after peak hours in a UTC calendar."""
    cal = PeakHourCalendar.default("UTC")
    tokyo = ZoneInfo("Asia/Tokyo")
    assert cal.at(datetime(2026, 1, 6, 7, tzinfo=tokyo)).level is Level.OPEN
    assert cal.at(datetime(2026, 1, 6, 20, tzinfo=tokyo)).level is Level.PEAK  # 11:00 UTC
    w = cal.at(datetime(2026, 1, 6, 20, tzinfo=tokyo))
    assert w.start.tzinfo is cal.tz or w.start.utcoffset() == timedelta(0)


def test_default_preset() -> None:
    cal = PeakHourCalendar.default(tz="Europe/London")
    assert at(cal, 2026, 3, 2, 5, 59, tz=LONDON).level is Level.OPEN
    w = at(cal, 2026, 3, 2, 6, 0, tz=LONDON)
    assert w.level is Level.PEAK
    assert w.cpu_share == 0.3
    assert w.rate == wg.parse_rate("10Mbit/s")
    assert at(cal, 2026, 3, 2, 22, 0, tz=LONDON).level is Level.OPEN
    assert cal.next_change(datetime(2026, 3, 2, 7, tzinfo=LONDON)) == datetime(
        2026, 3, 2, 22, tzinfo=LONDON
    )


def test_wedding_platform_preset() -> None:
    cal = PeakHourCalendar.wedding_platform([date(2026, 6, 13), "2026-09-19"], tz="Europe/London")
    # outside the season: the normal peak caps
    w = at(cal, 2026, 2, 10, 12, tz=LONDON)
    assert (w.level, w.rate, w.cpu_share) == (Level.PEAK, 1_250_000.0, 0.3)
    assert w.reason == "rule 'peak hours'"
    # in the season: both peak rules hold, the stricter caps win
    w = at(cal, 2026, 7, 1, 12, tz=LONDON)
    assert (w.level, w.rate, w.cpu_share) == (Level.PEAK, 625_000.0, 0.2)
    assert w.reason == "rule 'wedding season peak hours'"
    assert at(cal, 2026, 7, 1, 23, tz=LONDON).level is Level.OPEN
    # event days: blackout all day, also at night
    for day in (date(2026, 6, 13), date(2026, 9, 19)):
        for hour in (0, 3, 12, 23):
            w = at(cal, day.year, day.month, day.day, hour, tz=LONDON)
            assert w.level is Level.BLACKOUT
            assert w.reason == "rule 'event day'"
    assert at(cal, 2026, 6, 14, 3, tz=LONDON).level is Level.OPEN
    with pytest.raises(ConfigError, match="dates"):
        PeakHourCalendar.wedding_platform(["2026-02-30"])
    assert len(PeakHourCalendar.wedding_platform().rules) == 2


def test_overlap_most_restrictive_level_then_lowest_cap() -> None:
    cal = PeakHourCalendar.parse(
        """
        06:00-22:00 peak 10MB/s cpu=50% name=wide
        09:00-17:00 peak 2MB/s name=office
        12:00-13:00 peak 8MB/s cpu=20% name=lunch
        15:00-16:00 blackout name=sync
        """
    )
    w = at(cal, 2026, 1, 5, 7)
    assert (w.rate, w.cpu_share, w.reason) == (10e6, 0.5, "rule 'wide'")
    w = at(cal, 2026, 1, 5, 10)
    assert (w.rate, w.cpu_share) == (2e6, 0.5)
    assert w.reason == "rules 'wide', 'office'"  # one set the cpu cap, one the rate
    w = at(cal, 2026, 1, 5, 12, 30)
    assert (w.rate, w.cpu_share) == (2e6, 0.2)
    assert {r.name for r in w.rules} == {"office", "lunch"}
    w = at(cal, 2026, 1, 5, 15, 30)
    assert (w.level, w.reason) == (Level.BLACKOUT, "rule 'sync'")
    assert w.start == datetime(2026, 1, 5, 15, tzinfo=UTC)
    assert w.end == datetime(2026, 1, 5, 16, tzinfo=UTC)


def test_window_that_starts_or_ends_in_an_irrelevant_rule_is_not_split() -> None:
    """A rule that does not change the answer does not end the window."""
    cal = PeakHourCalendar.parse("Mon-Sun blackout name=freeze; 06:00-22:00 peak 1MB/s")
    w = at(cal, 2026, 1, 5, 12)
    assert w.level is Level.BLACKOUT
    assert not w.bounded
    assert cal.next_change(datetime(2026, 1, 5, 12, tzinfo=UTC)) is None


def test_open_rule_overrides_a_restrictive_default() -> None:
    cal = PeakHourCalendar.parse("01:00-05:00 open name=night", default="peak")
    assert at(cal, 2026, 1, 5, 12).level is Level.PEAK
    w = at(cal, 2026, 1, 5, 2)
    assert (w.level, w.reason) == (Level.OPEN, "rule 'night'")


def test_midnight_crossing_and_24_00() -> None:
    cal = PeakHourCalendar.parse("Fri 22:00-02:00 peak 1MB/s; Sat 08:00-24:00 blackout")
    # Friday 2026-01-09 22:00 until Saturday 02:00
    w = at(cal, 2026, 1, 10, 1)
    assert w.level is Level.PEAK
    assert w.start == datetime(2026, 1, 9, 22, tzinfo=UTC)
    assert w.end == datetime(2026, 1, 10, 2, tzinfo=UTC)
    assert at(cal, 2026, 1, 10, 2).level is Level.OPEN
    assert at(cal, 2026, 1, 9, 1).level is Level.OPEN  # Thursday night is not Friday's
    w = at(cal, 2026, 1, 10, 23, 59)
    assert w.end == datetime(2026, 1, 11, 0, tzinfo=UTC)
    # 00:00 as an end means midnight too
    assert PeakHourCalendar.parse("20:00-00:00 peak").rules[0].end == 24 * 60


def test_all_day_rules_on_consecutive_days_make_one_window() -> None:
    cal = PeakHourCalendar.parse("Sat-Sun blackout")
    w = at(cal, 2026, 1, 10, 12)
    assert w.start == datetime(2026, 1, 10, tzinfo=UTC)
    assert w.end == datetime(2026, 1, 12, tzinfo=UTC)
    w = at(cal, 2026, 1, 7, 12)
    assert (w.level, w.start, w.end) == (
        Level.OPEN,
        datetime(2026, 1, 5, tzinfo=UTC),
        datetime(2026, 1, 10, tzinfo=UTC),
    )


def test_seasons_wrap_the_year_and_month_days() -> None:
    cal = PeakHourCalendar.parse("Nov-Feb blackout; 05-15..09-30 peak 1MB/s")
    assert at(cal, 2026, 12, 31, 12).level is Level.BLACKOUT
    assert at(cal, 2027, 2, 28, 12).level is Level.BLACKOUT
    assert at(cal, 2028, 2, 29, 12).level is Level.BLACKOUT
    w = at(cal, 2027, 1, 10)
    assert w.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert w.end == datetime(2027, 3, 1, tzinfo=UTC)
    assert at(cal, 2026, 5, 14, 12).level is Level.OPEN
    w = at(cal, 2026, 5, 15, 12)
    assert w.level is Level.PEAK
    assert w.end == datetime(2026, 10, 1, tzinfo=UTC)
    assert Season.parse("Nov-Feb") == Season(1101, 229)
    assert date(2026, 3, 1) not in Season.parse("Nov-Feb")
    assert str(Season.parse("Dec")) == "Dec"


def test_specific_dates_lists_and_ranges() -> None:
    cal = PeakHourCalendar.parse(
        "2026-12-24..2026-12-26 blackout; 2026-07-04,2026-08-01 10:00-14:00 peak 1MB/s"
    )
    w = at(cal, 2026, 12, 25, 12)
    assert (w.start, w.end) == (
        datetime(2026, 12, 24, tzinfo=UTC),
        datetime(2026, 12, 27, tzinfo=UTC),
    )
    assert at(cal, 2026, 8, 1, 11).level is Level.PEAK
    assert at(cal, 2026, 8, 2, 11).level is Level.OPEN
    assert cal.next_change(datetime(2027, 1, 1, tzinfo=UTC)) is None
    assert cal.next_change(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 7, 4, 10, tzinfo=UTC)


def test_next_change_and_windows() -> None:
    cal = PeakHourCalendar.default()
    t = datetime(2026, 1, 5, 3, tzinfo=UTC)
    seen = []
    for _ in range(6):
        nxt = cal.next_change(t)
        assert nxt is not None
        assert nxt > t
        assert nxt == cal.at(t).end
        seen.append(nxt.hour)
        t = nxt
    assert seen == [6, 22, 6, 22, 6, 22]
    assert PeakHourCalendar([]).next_change(t) is None
    ws = list(cal.windows(datetime(2026, 1, 5, 12, tzinfo=UTC), datetime(2026, 1, 7, tzinfo=UTC)))
    assert [w.level for w in ws] == [Level.PEAK, Level.OPEN, Level.PEAK, Level.OPEN]
    assert ws[0].start == datetime(2026, 1, 5, 12, tzinfo=UTC)
    assert ws[-1].end == datetime(2026, 1, 7, tzinfo=UTC)
    for a, b in itertools.pairwise(ws):
        assert a.end == b.start
    assert list(cal.windows(t, t)) == []
    with pytest.raises(ConfigError, match="end"):
        list(cal.windows(t, t - timedelta(seconds=1)))


def test_constant_calendars() -> None:
    w = PeakHourCalendar().at(datetime(2026, 1, 1, tzinfo=UTC))
    assert (w.level, w.bounded) == (Level.OPEN, False)
    assert w.to_dict()["start"] is None
    assert w.to_dict()["end"] is None
    w = PeakHourCalendar.parse("peak 5MB/s").at(datetime(2026, 1, 1, tzinfo=UTC))
    assert (w.level, w.rate, w.bounded) == (Level.PEAK, 5e6, False)


def test_window_to_dict() -> None:
    cal = PeakHourCalendar.default("Europe/London")
    d = cal.at(datetime(2026, 6, 1, 12, tzinfo=UTC)).to_dict()
    assert d == {
        "level": "PEAK",
        "rate": 1_250_000.0,
        "cpu_share": 0.3,
        "rate_down": None,
        "start": "2026-06-01T06:00:00+01:00",
        "end": "2026-06-01T22:00:00+01:00",
        "reason": "rule 'peak hours'",
        "rules": ["peak hours"],
    }


def test_rule_values_and_text_round_trip() -> None:
    r = Rule(
        "peak",
        weekdays="Mon-Fri",
        start="06:00",
        end="22:00",
        season="May-Oct",
        rate="10Mbit/s",
        cpu_share="30%",
        name="busy",
    )
    assert r.weekdays == frozenset(range(5))
    assert (r.start, r.end) == (360, 1320)
    assert str(r) == 'May-Oct Mon-Fri 06:00-22:00 peak 10Mbit/s cpu=30% name="busy"'
    assert PeakHourCalendar.parse(str(r)).rules == (r,)
    with pytest.raises(AttributeError):
        r.level = Level.OPEN  # type: ignore[misc]
    assert hash(r) == hash(Rule.from_dict(r.to_dict()))
    assert Rule.from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"level": "loud"}, "level"),
        ({"level": "peak", "weekdays": "Mon-Funday"}, "weekdays"),
        ({"level": "peak", "weekdays": []}, "weekdays"),
        ({"level": "peak", "start": "24:00"}, "start"),
        ({"level": "peak", "end": "24:30"}, "end"),
        ({"level": "peak", "start": "06:00", "end": "06:00"}, "end"),
        ({"level": "peak", "season": "Mayday"}, "season"),
        ({"level": "peak", "dates": ["2026-13-01"]}, "dates"),
        ({"level": "peak", "rate": "fast"}, "rate"),
        ({"level": "peak", "rate": -1.0}, "rate"),
        ({"level": "peak", "rate": 0}, "rate"),
        ({"level": "peak", "cpu_share": 1.5}, "cpu_share"),
        ({"level": "blackout", "rate": "1MB/s"}, "rate"),
        ({"level": "open", "cpu_share": 0.5}, "cpu_share"),
        ({"level": "peak", "name": 'a "quoted" name'}, "name"),
    ],
)
def test_rule_refuses_bad_fields(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Rule(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("text", "token", "expected"),
    [
        ("peak\n06:00-25:00 peak", "25:00", "line 2: '25:00' is not a time (HH:MM, 00:00–24:00)"),
        ("Mon-Funday peak", "Mon-Funday", "line 1: 'Mon-Funday' is not weekdays"),
        ("06:00-22:00 peek", "peek", "line 1: 'peek' is not a season"),
        ("06:00-22:00 peak 10parsecs", "10parsecs", "line 1: '10parsecs' is not a rate"),
        ("peak cpu=150%", "150%", "line 1: '150%' is not a CPU share"),
        ("# fine\n\n2026-02-30 blackout", "2026-02-30", "line 3: '2026-02-30' is not a date"),
        ("05-15..13-01 peak", "05-15..13-01", "line 1: '05-15..13-01' is not a season"),
        ("Mon 06:00-22:00", "Mon 06:00-22:00", "line 1: 'Mon 06:00-22:00' is not a rule"),
        ("peak; 24:00-06:00 peak", "24:00", "line 1: '24:00' is not a start time"),
        ("blackout 1MB/s", "blackout 1MB/s", "BLACKOUT takes no rate"),
        ('peak name="unclosed', 'peak name="unclosed', "double quote is missing"),
        ("peak colour=red", "colour=red", "is not a known key"),
        ("peak open", "open", "a second level"),
        ("06:00-06:00 peak", "06:00-06:00", "end differs from its start"),
    ],
)
def test_parse_errors_name_line_token_and_expectation(text: str, token: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        PeakHourCalendar.parse(text)
    message = str(info.value)
    assert expected in message
    assert info.value.value == token
    assert info.value.field.startswith("line ")


def test_parse_comments_semicolons_names_and_keys() -> None:
    cal = PeakHourCalendar.parse(
        """
        # peak hours
        weekdays 06:00-22:00 peak rate=10MB/s cpu=0.25 name="office # hours"  # trailing
        weekends peak 2MB/s; Dec 2026-12-31 blackout name=nye
        """
    )
    a, b, c = cal.rules
    assert a.name == "office # hours"
    assert a.rate == 10e6
    assert a.cpu_share == 0.25
    assert b.weekdays == frozenset({5, 6})
    assert b.rate == 2e6
    assert c.dates == frozenset({date(2026, 12, 31)})
    assert c.season == Season.parse("Dec")
    assert PeakHourCalendar.parse("").rules == ()
    assert PeakHourCalendar.parse("Fri-Mon peak").rules[0].weekdays == frozenset({4, 5, 6, 0})


def test_unknown_zone_names_the_zone() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus_Mons"):
        PeakHourCalendar.parse("peak", tz="Mars/Olympus_Mons")
    with pytest.raises(ConfigError, match="tz"):
        PeakHourCalendar([], tz="")
    with pytest.raises(ConfigError, match="rules"):
        PeakHourCalendar(["peak"])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="default"):
        PeakHourCalendar([], default="sometimes")


def test_dict_and_toml_forms() -> None:
    toml_text = """
    [calendar]
    tz = "Europe/London"
    rules = '''
    Mon-Sun 06:00-22:00 peak 10Mbit/s
    2026-06-13 blackout
    '''
    """
    data = tomllib.loads(toml_text)["calendar"]
    cal = PeakHourCalendar.from_dict(data)
    assert cal == PeakHourCalendar.parse(data["rules"], tz="Europe/London")
    assert PeakHourCalendar.from_dict(cal.to_dict()) == cal
    tables = tomllib.loads(
        """
        tz = "UTC"
        default = "open"
        [[rules]]
        level = "peak"
        weekdays = ["Mon", "Tue"]
        hours = "06:00-22:00"
        rate = "10Mbit/s"
        cpu = "30%"
        [[rules]]
        level = "blackout"
        dates = ["2026-06-13"]
        name = "wedding"
        """
    )
    cal = PeakHourCalendar.from_dict(tables)
    assert cal.rules[0].weekdays == frozenset({0, 1})
    assert cal.rules[0].cpu_share == 0.3
    assert cal.rules[1].name == "wedding"
    assert PeakHourCalendar.from_dict(cal.to_dict()) == cal
    rc = PeakHourCalendar.from_dict({"rclone": "08:00,512k 23:00,off"})
    assert rc == PeakHourCalendar.from_rclone("08:00,512k 23:00,off")


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"tz": "Nowhere/Land"}, "tz"),
        ({"colour": "red"}, "calendar.colour"),
        ({"rules": 5}, "calendar.rules"),
        ({"rules": [{"level": "peak", "hours": "25:00-26:00"}]}, "calendar.rules[0].hours"),
        ({"rules": [{"level": "peak", "when": "now"}]}, "calendar.rules[0].when"),
        ({"rules": [{"hours": "06:00-07:00"}]}, "calendar.rules[0].level"),
        ({"rules": [{"level": "peak", "rate": "fast"}]}, "calendar.rules[0].rate"),
        ({"default": 3}, "calendar.default"),
    ],
)
def test_dict_form_errors_name_the_key(data: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        PeakHourCalendar.from_dict(data)
    assert info.value.field == field


def test_describe_tables() -> None:
    cal = PeakHourCalendar.wedding_platform(["2026-06-13"], tz="Europe/London")
    text = str(cal)
    assert text.startswith("Calendar in Europe/London (default OPEN)")
    assert re.search(r"^Sat +06:00-22:00 +PEAK +625 kB/s +20% +May-Oct", text, re.M)
    assert "wedding season peak hours" in text
    assert "2026-06-13" in text
    assert "BLACKOUT" in text
    week = cal.describe(date(2026, 6, 10))
    lines = week.splitlines()
    assert lines[0] == "Week of 2026-06-08 in Europe/London"
    assert any(line.startswith("Sat 2026-06-13  00:00  24:00") for line in lines)
    assert "rule 'event day'" in week
    assert cal.describe(datetime(2026, 6, 10, 12, tzinfo=UTC)) == week
    with pytest.raises(ConfigError):
        cal.describe(datetime(2026, 6, 10))


def test_repeated_queries_use_the_remembered_window() -> None:
    cal = PeakHourCalendar.default()
    t = datetime(2026, 1, 5, 12, tzinfo=UTC)
    first = cal.at(t)
    assert cal.at(t + timedelta(hours=1)) is first
    assert cal.at(t + timedelta(hours=12)) is not first


def test_instants_outside_supported_years_are_refused() -> None:
    with pytest.raises(ConfigError, match="when"):
        PeakHourCalendar.default().at(datetime(1, 1, 1, tzinfo=UTC))


def test_rules_sharing_a_name_read_as_one() -> None:
    """Two rules with one name that meet end to start make one window."""
    cal = PeakHourCalendar.parse(
        "Mon-Fri 20:00-24:00 peak 1MB/s name=evening; Tue-Sat 00:00-02:00 peak 1MB/s name=evening"
    )
    w = at(cal, 2026, 1, 6, 1)  # Tuesday 01:00
    assert w.start == datetime(2026, 1, 5, 20, tzinfo=UTC)
    assert w.end == datetime(2026, 1, 6, 2, tzinfo=UTC)
    assert w.reason == "rule 'evening'"


def test_names_cannot_break_lines_or_quotes() -> None:
    for bad in ("a\nb", "a\x0cb", "a\u2028b", 'say "hi"'):
        with pytest.raises(ConfigError, match="name"):
            Rule("peak", name=bad)


def test_non_datetimes_are_refused() -> None:
    cal = PeakHourCalendar.default()
    for bad in (date(2026, 1, 1), "2026-01-01T00:00Z", 1767225600):
        with pytest.raises(ConfigError, match="when"):
            cal.at(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="start"):
        list(cal.windows(date(2026, 1, 1), datetime(2026, 1, 2, tzinfo=UTC)))  # type: ignore[arg-type]


def test_window_contains_compares_instants_in_the_fold() -> None:
    """Around the fall-back change, wall-clock comparison in one zone would be wrong."""
    cal = PeakHourCalendar.parse("2026-10-25 00:00-01:30 blackout", tz="Europe/London")
    first = datetime(2026, 10, 25, 0, 45, tzinfo=UTC)  # 01:45 BST, the first 01:45
    second = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)  # 01:15 GMT, the second 01:15
    w = cal.at(datetime(2026, 10, 25, 0, 10, tzinfo=UTC))  # 01:10 BST: blackout
    assert w.level is Level.BLACKOUT
    assert w.end.timestamp() == datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()
    assert not w.contains(first)
    assert not w.contains(second)  # its wall clock (01:15) is inside 00:00-01:30
    assert cal.at(second).level is Level.OPEN


def test_text_given_as_rules_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="parse"):
        PeakHourCalendar("Mon-Fri peak")  # type: ignore[arg-type]
