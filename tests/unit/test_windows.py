"""Deploy windows and freezes (bot.domain.windows, issue 19): the rule, its daylight-saving
semantics, the text that says when a window opens, and a property test against a
minute-by-minute reference."""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.windows import (
    DASH,
    HORIZON,
    CronError,
    Freeze,
    Rules,
    Window,
    describe_opening,
    freezes_change,
    may_start,
    next_change,
    next_open,
    parse_cron,
    parse_duration,
    rules_change,
    verdict,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)


def plain(text: str) -> str:
    """`text` with its en dashes (between the ends of a span) as hyphens."""
    return text.replace(DASH, "-")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


OFFICE = Window("allow", "0 9 * * mon-fri", timedelta(hours=8), "Europe/Berlin")


# --- allow, deny, across midnight ---------------------------------------------------------------


def test_outside_the_allow_window_it_opens_on_monday_morning():
    friday_evening = berlin(2026, 12, 18, 18, 0)
    v = verdict(Rules((OFFICE,)), friday_evening)
    assert not v.open
    assert plain(v.why) == "outside the allow window Mon-Fri 09:00-17:00 Europe/Berlin"
    assert v.opens_at == berlin(2026, 12, 21, 9, 0)
    assert describe_opening(v.opens_at, friday_evening, "Europe/Berlin") == (
        "opens Monday 09:00 Europe/Berlin, in 2 days 15 h"
    )


def test_inside_the_allow_window_it_is_open_and_opens_at_is_now():
    at = berlin(2026, 12, 16, 16, 59)
    v = verdict(Rules((OFFICE,)), at)
    assert v.open and v.opens_at == at
    assert plain(v.why) == "inside the allow window Mon-Fri 09:00-17:00 Europe/Berlin"
    assert not verdict(Rules((OFFICE,)), berlin(2026, 12, 16, 17, 0)).open  # the end is out


def test_no_rules_is_always_open():
    v = verdict(Rules(), utc(2026, 1, 1))
    assert v.open and plain(v.why) == "no freeze or deny window holds"


def test_a_deny_window_across_midnight():
    night = Window("deny", "0 22 * * *", timedelta(hours=8), "Europe/Berlin")
    rules = Rules((night,))
    assert verdict(rules, berlin(2026, 6, 1, 21, 59)).open
    for at in (berlin(2026, 6, 1, 22, 0), berlin(2026, 6, 1, 23, 30), berlin(2026, 6, 2, 5, 59)):
        v = verdict(rules, at)
        assert not v.open
        assert plain(v.why) == "inside the deny window daily 22:00-06:00 Europe/Berlin"
        assert v.opens_at == berlin(2026, 6, 2, 6, 0)
    assert verdict(rules, berlin(2026, 6, 2, 6, 0)).open


def test_the_next_change_of_windows_is_the_first_opening_or_closing_after_now():
    night = Window("deny", "0 22 * * *", timedelta(hours=8), "Europe/Berlin")
    office = Window("allow", "0 9 * * mon-fri", timedelta(hours=8), "Europe/Berlin")
    # Monday 2026-06-01 23:00: inside the night, which ends at 06:00.
    assert next_change((night, office), berlin(2026, 6, 1, 23, 0)) == berlin(2026, 6, 2, 6, 0)
    # 06:00 exactly: the night just ended; the office opens at 09:00.
    assert next_change((night, office), berlin(2026, 6, 2, 6, 0)) == berlin(2026, 6, 2, 9, 0)
    # Inside the office: it closes at 17:00, before the night opens.
    assert next_change((night, office), berlin(2026, 6, 2, 12, 0)) == berlin(2026, 6, 2, 17, 0)
    # Friday evening, the office alone: it opens again on Monday.
    assert next_change((office,), berlin(2026, 6, 5, 18, 0)) == berlin(2026, 6, 8, 9, 0)
    assert next_change((), berlin(2026, 6, 5, 18, 0)) is None


def test_rules_next_change_when_a_freeze_starts_or_ends_or_a_window_opens_or_closes():
    office = Window("allow", "0 9 * * mon-fri", timedelta(hours=8), "Europe/Berlin")
    migration = Freeze(berlin(2026, 6, 2, 10, 0), berlin(2026, 6, 2, 12, 0), "migration")
    rules = Rules((office,), (migration,))
    assert rules_change(rules, berlin(2026, 6, 2, 9, 30)) == berlin(2026, 6, 2, 10, 0)  # starts
    assert rules_change(rules, berlin(2026, 6, 2, 10, 0)) == berlin(2026, 6, 2, 12, 0)  # ends
    assert rules_change(rules, berlin(2026, 6, 2, 12, 0)) == berlin(2026, 6, 2, 17, 0)  # closes
    assert freezes_change((migration,), berlin(2026, 6, 2, 12, 0)) is None  # it is over
    assert rules_change(Rules(()), berlin(2026, 6, 2, 12, 0)) is None


def test_an_allow_window_across_midnight_opens_from_the_day_before():
    late = Window("allow", "0 23 * * fri", timedelta(hours=3), "UTC")
    assert verdict(Rules((late,)), utc(2026, 6, 6, 1, 0)).open  # Saturday 01:00
    assert not verdict(Rules((late,)), utc(2026, 6, 6, 2, 0)).open
    assert plain(late.describe()) == "Fri 23:00-02:00 UTC"


def test_a_deny_window_inside_an_allow_window_wins():
    lunch = Window("deny", "0 12 * * *", timedelta(hours=1), "Europe/Berlin")
    rules = Rules((OFFICE, lunch))
    v = verdict(rules, berlin(2026, 12, 16, 12, 30))
    assert not v.open
    assert plain(v.why) == "inside the deny window daily 12:00-13:00 Europe/Berlin"
    assert v.opens_at == berlin(2026, 12, 16, 13, 0)
    assert verdict(rules, berlin(2026, 12, 16, 11, 59)).open


def test_a_deny_window_at_the_end_of_the_allow_one_opens_next_working_day():
    late = Window("deny", "0 16 * * fri", timedelta(hours=1), "Europe/Berlin")
    v = verdict(Rules((OFFICE, late)), berlin(2026, 12, 18, 16, 30))
    assert plain(v.why) == "inside the deny window Fri 16:00-17:00 Europe/Berlin"
    assert v.opens_at == berlin(2026, 12, 21, 9, 0)


def test_a_weekend_deny_window_is_described_by_its_days():
    weekend = Window("deny", "0 17 * * fri", timedelta(days=2, hours=16), "Europe/Berlin")
    v = verdict(Rules((weekend,)), berlin(2026, 12, 19, 12, 0))
    assert plain(v.why) == "inside the deny window Fri 17:00-Mon 09:00 Europe/Berlin"
    assert v.opens_at == berlin(2026, 12, 21, 9, 0)


def test_windows_that_no_plain_words_say_are_described_by_their_cron():
    w = Window("deny", "*/30 9-17 * * *", timedelta(minutes=15), "UTC")
    assert plain(w.describe()) == '"*/30 9-17 * * *" for 15 min UTC'
    assert plain(Window("allow", "0 9 * * sat,sun", timedelta(hours=2)).describe()) == (
        "Sat, Sun 09:00-11:00 UTC"
    )
    assert plain(Window("allow", "0 9 * * 1,3-5", timedelta(days=1)).describe()) == (
        "Mon, Wed-Fri 09:00 for 1 day UTC"
    )


def test_two_allow_windows_are_both_named():
    evening = Window("allow", "0 20 * * *", timedelta(hours=1), "Europe/Berlin")
    v = verdict(Rules((OFFICE, evening)), berlin(2026, 12, 19, 12, 0))  # Saturday
    assert plain(v.why) == (
        "outside the allow windows Mon-Fri 09:00-17:00 Europe/Berlin and "
        "daily 20:00-21:00 Europe/Berlin"
    )
    assert v.opens_at == berlin(2026, 12, 19, 20, 0)


# --- daylight-saving changes --------------------------------------------------------------------
# Europe/Berlin 2026: forward on 29 March at 02:00 (to 03:00), back on 25 October at 03:00 (to
# 02:00). America/New_York 2026: forward on 8 March at 02:00, back on 1 November at 02:00.


@pytest.mark.parametrize(
    ("zone", "day", "opens"),
    [
        # The skipped 02:30 opens the window at the end of the gap, for its whole hour.
        ("Europe/Berlin", datetime(2026, 3, 29), utc(2026, 3, 29, 1, 0)),
        ("America/New_York", datetime(2026, 3, 8), utc(2026, 3, 8, 7, 0)),
        # The day before: 02:30 standard time.
        ("Europe/Berlin", datetime(2026, 3, 28), utc(2026, 3, 28, 1, 30)),
        ("America/New_York", datetime(2026, 3, 7), utc(2026, 3, 7, 7, 30)),
    ],
)
def test_a_window_at_a_time_the_spring_change_skips_opens_after_the_gap(zone, day, opens):
    w = Window("deny", "30 2 * * *", timedelta(hours=1), zone)
    start = day.replace(tzinfo=ZoneInfo(zone))
    assert list(w.fires(start, start + timedelta(days=1))) == [opens]
    assert w.occurrence(opens + timedelta(minutes=59)) == (opens, opens + timedelta(hours=1))
    assert w.occurrence(opens - MINUTE) is None


@pytest.mark.parametrize(
    ("zone", "cron", "day", "first", "second"),
    [
        # 02:30 comes twice in Berlin on 25 October: the window opens once, at the first.
        ("Europe/Berlin", "30 2 * * *", datetime(2026, 10, 25), (0, 30), (1, 30)),
        # 01:30 comes twice in New York on 1 November.
        ("America/New_York", "30 1 * * *", datetime(2026, 11, 1), (5, 30), (6, 30)),
    ],
)
def test_a_window_at_a_time_the_fall_change_repeats_opens_once(zone, cron, day, first, second):
    w = Window("deny", cron, timedelta(minutes=45), zone)
    start = day.replace(tzinfo=ZoneInfo(zone))
    opens = utc(day.year, day.month, day.day, *first)
    assert list(w.fires(start, start + timedelta(days=1))) == [opens]
    rules = Rules((w,))
    assert not verdict(rules, opens + timedelta(minutes=44)).open
    repeated = utc(day.year, day.month, day.day, *second)  # the same wall time, once more
    assert verdict(rules, repeated).open


def test_an_allow_window_keeps_its_wall_clock_hours_across_the_change():
    # 09:00 Berlin is 08:00 UTC before the change and 07:00 UTC after it.
    friday = verdict(Rules((OFFICE,)), utc(2026, 3, 27, 7, 30))
    assert not friday.open and friday.opens_at == utc(2026, 3, 27, 8, 0)
    monday = verdict(Rules((OFFICE,)), utc(2026, 3, 30, 7, 30))
    assert monday.open
    assert verdict(Rules((OFFICE,)), utc(2026, 3, 30, 14, 59)).open  # 16:59 CEST
    assert not verdict(Rules((OFFICE,)), utc(2026, 3, 30, 15, 0)).open
    # New York, on the Monday after its fall change: 09:00 EST is 14:00 UTC.
    ny_office = Window("allow", "0 9 * * mon-fri", timedelta(hours=8), "America/New_York")
    v = verdict(Rules((ny_office,)), new_york(2026, 11, 2, 8, 0))
    assert v.opens_at == utc(2026, 11, 2, 14, 0)


def test_a_window_across_the_change_lasts_its_duration_in_elapsed_time():
    # 01:00 CET for 3 h on the spring-forward night: 00:00-03:00 UTC, so until 05:00 CEST.
    w = Window("deny", "0 1 * * *", timedelta(hours=3), "Europe/Berlin")
    v = verdict(Rules((w,)), berlin(2026, 3, 29, 4, 30))
    assert not v.open and v.opens_at == berlin(2026, 3, 29, 5, 0)
    # The same in New York on its fall-back night: 00:00 EDT + 3 h is 02:00 EST.
    w = Window("deny", "0 0 * * *", timedelta(hours=3), "America/New_York")
    v = verdict(Rules((w,)), new_york(2026, 11, 1, 1, 30))
    assert v.opens_at == new_york(2026, 11, 1, 2, 0)


# --- freezes ------------------------------------------------------------------------------------

HOLIDAYS = Freeze(berlin(2026, 12, 20, 0, 0), berlin(2027, 1, 4, 9, 0), "holidays", "U0ANN")


def test_a_freeze_closes_with_its_reason_until_its_end():
    v = verdict(Rules(freezes=(HOLIDAYS,)), berlin(2026, 12, 24, 10, 0))
    assert not v.open
    assert plain(v.why) == "frozen until 2027-01-04 09:00 Europe/Berlin: holidays (by <@U0ANN>)"
    assert v.opens_at == berlin(2027, 1, 4, 9, 0)
    assert verdict(Rules(freezes=(HOLIDAYS,)), berlin(2027, 1, 4, 9, 0)).open
    assert verdict(Rules(freezes=(HOLIDAYS,)), berlin(2026, 12, 19, 23, 59)).open


def test_a_freeze_and_a_window_both_named_and_the_opening_after_both():
    v = verdict(Rules((OFFICE,), (HOLIDAYS,)), berlin(2026, 12, 26, 10, 0))  # a Saturday
    assert plain(v.why) == (
        "frozen until 2027-01-04 09:00 Europe/Berlin: holidays (by <@U0ANN>); "
        "outside the allow window Mon-Fri 09:00-17:00 Europe/Berlin"
    )
    assert v.opens_at == berlin(2027, 1, 4, 9, 0)
    # A freeze ending on a Saturday: the allow window opens on Monday.
    short = Freeze(utc(2026, 12, 14), utc(2026, 12, 19, 12, 0), "audit")
    assert plain(short.describe()) == "frozen until 2026-12-19 12:00 UTC: audit"
    v = verdict(Rules((OFFICE,), (short,)), utc(2026, 12, 15))
    assert v.opens_at == berlin(2026, 12, 21, 9, 0)


def test_overlapping_freezes_and_deny_windows_open_after_the_last():
    first = Freeze(utc(2026, 5, 1), utc(2026, 5, 2, 21, 30), "migration")
    night = Window("deny", "0 21 * * *", timedelta(hours=2), "UTC")
    second = Freeze(utc(2026, 5, 2, 22, 0), utc(2026, 5, 3, 1, 0), "vendor outage")
    v = verdict(Rules((night,), (first, second)), utc(2026, 5, 1, 12, 0))
    assert v.opens_at == utc(2026, 5, 3, 1, 0)


def test_it_says_when_it_never_opens_within_the_horizon():
    leap_day = Window("allow", "0 9 29 2 *", timedelta(hours=8), "UTC")
    v = verdict(Rules((leap_day,)), utc(2026, 3, 1))
    assert not v.open and v.opens_at is None  # 29 February 2028 is past 400 days
    assert next_open(Rules((leap_day,)), utc(2027, 3, 1)) == utc(2028, 2, 29, 9, 0)
    long = Freeze(utc(2026, 1, 1), utc(2026, 1, 1) + HORIZON * 2, "forever")
    assert verdict(Rules(freezes=(long,)), utc(2026, 1, 2)).opens_at is None


def test_freezes_and_instants_must_be_aware_and_in_order():
    with pytest.raises(ValueError, match="aware"):
        verdict(Rules(), datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="aware"):
        Freeze(datetime(2026, 1, 1), utc(2026, 1, 2), "x")
    with pytest.raises(ValueError, match="after its start"):
        Freeze(utc(2026, 1, 2), utc(2026, 1, 1), "x")


# --- the text of an opening ---------------------------------------------------------------------

NOW = berlin(2026, 12, 16, 10, 0)  # a Wednesday


@pytest.mark.parametrize(
    ("opens_at", "text"),
    [
        (NOW + timedelta(minutes=35), "opens today 10:35 Europe/Berlin, in 35 min"),
        (NOW + timedelta(minutes=34, seconds=10), "opens today 10:34 Europe/Berlin, in 35 min"),
        (NOW + timedelta(seconds=20), "opens today 10:00 Europe/Berlin, in 1 min"),
        (NOW + timedelta(hours=3, minutes=10), "opens today 13:10 Europe/Berlin, in 3 h 10 min"),
        (NOW + timedelta(hours=5), "opens today 15:00 Europe/Berlin, in 5 h"),
        (berlin(2026, 12, 17, 9, 0), "opens tomorrow 09:00 Europe/Berlin, in 23 h"),
        (berlin(2026, 12, 19, 0, 30), "opens Saturday 00:30 Europe/Berlin, in 2 days 15 h"),
        (berlin(2026, 12, 18, 10, 0), "opens Friday 10:00 Europe/Berlin, in 2 days"),
        (
            berlin(2026, 12, 23, 9, 0),
            "opens Wednesday 23 December 09:00 Europe/Berlin, in 6 days 23 h",
        ),
        (
            berlin(2027, 1, 4, 9, 0),
            "opens Monday 4 January 2027 09:00 Europe/Berlin, in 18 days 23 h",
        ),
        (NOW, "opens today 10:00 Europe/Berlin, now"),
    ],
)
def test_the_opening_is_said_in_the_teams_zone_and_relative(opens_at, text):
    assert describe_opening(opens_at, NOW, "Europe/Berlin") == text


def test_the_opening_is_said_in_the_zone_asked_for():
    opens = utc(2026, 12, 21, 8, 0)
    assert describe_opening(opens, NOW, "America/New_York") == (
        "opens Monday 03:00 America/New_York, in 4 days 23 h"
    )


# --- cron and durations -------------------------------------------------------------------------


def test_cron_fields_names_ranges_steps_and_lists():
    cron = parse_cron("*/15 9-17/4 1,15 JAN-mar mon-fri")
    assert cron.minutes == (0, 15, 30, 45)
    assert cron.hours == (9, 13, 17)
    assert cron.days == {1, 15}
    assert cron.months == {1, 2, 3}
    assert cron.weekdays == {0, 1, 2, 3, 4}  # Python's Monday 0
    assert parse_cron("0 0 * * 7").weekdays == parse_cron("0 0 * * sun").weekdays == {6}
    assert parse_cron("0 0 * * sat-sun").weekdays == {5, 6}
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)


def test_both_day_fields_restricted_match_either_as_cron_does():
    cron = parse_cron("0 9 13 * fri")
    assert cron.on(datetime(2026, 3, 13).date())  # a Friday the 13th
    assert cron.on(datetime(2026, 3, 20).date())  # a Friday
    assert cron.on(datetime(2026, 4, 13).date())  # a Monday the 13th
    assert not cron.on(datetime(2026, 4, 14).date())
    only_fridays = parse_cron("0 9 * * fri")
    assert not only_fridays.on(datetime(2026, 4, 13).date())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0 9 * *", "has 4 fields; a cron expression has 5"),
        ("0 9 * * * *", "has 6 fields"),
        ("60 9 * * *", "minute: 60 is out of range (0-59)"),
        ("0 24 * * *", "hour: 24 is out of range (0-23)"),
        ("0 9 0 * *", "day of month: 0 is out of range (1-31)"),
        ("0 9 * 13 *", "month: 13 is out of range (1-12)"),
        ("0 9 * * mon-fry", 'day of week: "fry" is not a number (0-7) or a name (sun-sat)'),
        ("0 9 * foo *", 'month: "foo" is not a number (1-12) or a name (jan-dec)'),
        ("0 9 * * fri-mon", 'day of week: the range "fri-mon" runs backwards'),
        ("*/0 9 * * *", 'minute: the step in "*/0" must be a whole number above 0'),
        ("0 9 31 2 *", "never fires"),
        ("0 9 30 feb,apr *", ""),  # April has a 30th: fine
        ("@daily", "has 1 field"),
        ("0 ٩ * * *", 'hour: "٩" is not a number'),
    ],
)
def test_a_bad_cron_says_which_field_and_why(text, fragment):
    if not fragment:
        parse_cron(text)
        return
    with pytest.raises(CronError) as info:
        parse_cron(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30m", 30), ("8h", 480), ("2d", 2880), ("1h30m", 90), ("1d 2h", 1560), ("366d", 527040)],
)
def test_durations(text, minutes):
    assert parse_duration(text) == timedelta(minutes=minutes)


@pytest.mark.parametrize("text", ["", "0m", "8", "h", "30s", "1.5h", "30m1h", "367d", "-1h"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match=r"duration|above 0"):
        parse_duration(text)


def test_a_window_checks_what_it_is_given():
    with pytest.raises(CronError):
        Window("deny", "0 9 * *", timedelta(hours=1))
    with pytest.raises(ValueError, match="IANA"):
        Window("deny", "0 9 * * *", timedelta(hours=1), "Europe/Berlinn")
    with pytest.raises(ValueError, match="above 0"):
        Window("deny", "0 9 * * *", timedelta(0))
    with pytest.raises(ValueError, match="kind"):
        Window("maybe", "0 9 * * *", timedelta(hours=1))  # type: ignore[arg-type]


# --- the property: the rule against a minute-by-minute reference --------------------------------

SPAN = timedelta(days=3)  # how far past `at` the reference looks
STARTS = [utc(2026, 3, 6), utc(2026, 3, 27), utc(2026, 10, 23), utc(2026, 10, 30), utc(2026, 6, 1)]


@st.composite
def windows(draw: st.DrawFn) -> Window:
    minute = draw(st.sampled_from(["0", "30", "*/20", "0,45", "15-20"]))
    hour = draw(st.sampled_from(["*", "1", "2", "9", "22", "1-3", "*/6", "9-17"]))
    day = draw(st.sampled_from(["*", "*", "*", "1-10", "8,25,29"]))
    weekday = draw(st.sampled_from(["*", "*", "mon-fri", "sat,sun", "0", "fri"]))
    return Window(
        draw(st.sampled_from(["allow", "deny"])),
        f"{minute} {hour} {day} * {weekday}",
        timedelta(minutes=draw(st.integers(1, 12 * 60))),
        draw(st.sampled_from(["Europe/Berlin", "America/New_York"])),
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[Rules, datetime]:
    base = draw(st.sampled_from(STARTS))
    freezes = []
    for _ in range(draw(st.integers(0, 2))):
        start = base + timedelta(minutes=draw(st.integers(-2 * 1440, 3 * 1440)))
        length = timedelta(minutes=draw(st.integers(1, 1440)))
        freezes.append(Freeze(start, start + length, "because"))
    rules = Rules(tuple(draw(st.lists(windows(), max_size=3))), tuple(freezes))
    at = base + timedelta(minutes=draw(st.integers(0, 3 * 1440)))
    return rules, at


def reference_fires(window: Window, start: datetime, end: datetime) -> list[datetime]:
    """Every minute in [start, end) the window opens at, found minute by minute: a minute whose
    wall-clock time matches the cron, unless it is the repeat of a time the fall-back repeats
    (fold 1); or the first minute after a spring-forward gap that skipped a matching time."""
    tz = ZoneInfo(window.timezone)
    cron = window.parsed

    def matches(wall: datetime) -> bool:
        return cron.on(wall.date()) and wall.hour in cron.hours and wall.minute in cron.minutes

    found = []
    previous = (start - MINUTE).astimezone(tz)
    moment = start
    while moment < end:
        local = moment.astimezone(tz)
        wall, before = local.replace(tzinfo=None), previous.replace(tzinfo=None)
        hit = local.fold == 0 and matches(wall)
        skipped = before + MINUTE
        while not hit and skipped < wall:  # only in a gap: wall-clock times nobody lived
            hit = matches(skipped)
            skipped += MINUTE
        if hit:
            found.append(moment)
        previous = local
        moment += MINUTE
    return found


def reference_open(rules: Rules, fires: dict[Window, list[datetime]], at: datetime) -> bool:
    def inside(window: Window) -> bool:
        opened = fires[window]
        i = bisect.bisect_right(opened, at)
        return i > 0 and at < opened[i - 1] + window.duration

    if any(f.start <= at < f.until for f in rules.freezes):
        return False
    if any(inside(w) for w in rules.deny):
        return False
    return not rules.allow or any(inside(w) for w in rules.allow)


@settings(max_examples=80, deadline=None)
@given(cases())
def test_the_verdict_agrees_with_a_minute_by_minute_reference(case: tuple[Rules, datetime]):
    rules, at = case
    end = at + SPAN
    fires = {w: reference_fires(w, at - w.duration - MINUTE, end + MINUTE) for w in rules.windows}
    v = verdict(rules, at)
    assert v.open == reference_open(rules, fires, at), v
    if v.open:
        assert v.opens_at == at
        return
    last = min(v.opens_at, end) if v.opens_at is not None else end
    moment = at
    while moment < last:
        assert not reference_open(rules, fires, moment), (moment, v)
        moment += MINUTE
    if v.opens_at is not None and v.opens_at <= end:
        assert v.opens_at.second == 0 and v.opens_at.microsecond == 0
        assert reference_open(rules, fires, v.opens_at), v
        assert verdict(rules, v.opens_at).open


@settings(max_examples=60, deadline=None)
@given(cases(), st.booleans())
def test_no_deploy_starts_closed_without_an_approved_override(
    case: tuple[Rules, datetime], overridden: bool
) -> None:
    """The rule every deploy and promotion start obeys (bot.services.deploy_windows): never
    inside a freeze or a deny window, nor outside every allow window, unless an approved
    EMERGENCY override covers it; and never stopped while it is open."""
    rules, at = case
    fires = {w: reference_fires(w, at - w.duration - MINUTE, at + MINUTE) for w in rules.windows}
    stopped = may_start(rules, at, overridden=overridden)
    if stopped is None:
        assert overridden or reference_open(rules, fires, at)
    else:
        assert not overridden and not reference_open(rules, fires, at)
        assert not stopped.open and stopped.why
