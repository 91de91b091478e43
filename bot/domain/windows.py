"""Deploy windows and change freezes (issue 19): when an environment may change, as pure rules.

A `Window` recurs: it opens at each fire time of a 5-field cron expression, read as wall-clock
time in its IANA time zone, and lasts `duration` (elapsed time, as Argo CD's sync windows do).
`allow` windows: changes only inside one of them; `deny` windows: never inside. A `Freeze` is
dated: closed from `start` until `until`. `verdict` says whether an environment's `Rules` let a
change through at an instant, why not, and when they next do.

Cron, as Vixie cron and cronie read it: `minute hour day-of-month month day-of-week`; each field
`*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (a to the end), or a list of
those; months `jan`-`dec` and days `sun`-`sat` by name too, Sunday is 0 or 7. When both day
fields are restricted (neither starts with `*`), a day matches either one, else both.

Daylight-saving changes, as cron does for jobs at a fixed time:
- a wall-clock time that a spring-forward skips (02:30 in Europe/Berlin on the last Sunday of
  March) opens the window at the first instant after the gap (03:00 there), for its full
  duration;
- a wall-clock time that a fall-back repeats (02:30 on the last Sunday of October) opens the
  window once, at its first occurrence (02:30 summer time).
So a window fires once per matching wall-clock time a day, never twice and never not at all.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

HORIZON = timedelta(days=400)
"""How far `verdict` looks for the next opening: past it, `opens_at` is None ("not within 400
days": a yearly window, or rules that are never open)."""

MAX_DURATION = timedelta(days=366)
DASH = "\u2013"  # an en dash, between the ends of a span

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's 0-6
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # at most (29: leap years)


class CronError(ValueError):
    """A cron expression that is not one; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression: the values each field allows."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]  # of the month, 1-31
    months: frozenset[int]  # 1-12
    weekdays: frozenset[int]  # Python's: Monday 0 .. Sunday 6
    any_day: bool  # the day-of-month field starts with `*`
    any_weekday: bool  # the day-of-week field starts with `*`

    def on(self, day: date) -> bool:
        """Whether it fires on `day` (at its hours and minutes)."""
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = day.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week


_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _CRON_DAYS),
)


def parse_cron(text: str) -> Cron:
    """`text` parsed, or a CronError that says what is wrong in which field."""
    parts = text.split()
    if len(parts) != 5:
        raise CronError(
            f'"{text}" has {len(parts)} field{"" if len(parts) == 1 else "s"}; a cron expression '
            'has 5: minute hour day-of-month month day-of-week, like "0 9 * * mon-fri"'
        )
    found = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    minutes, hours, days, months, cron_days = found
    cron = Cron(
        text=" ".join(parts),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset((d - 1) % 7 for d in cron_days),
        any_day=parts[2].startswith("*"),
        any_weekday=parts[4].startswith("*"),
    )
    if (
        not cron.any_day
        and cron.any_weekday
        and not any(d <= _DAYS_IN_MONTH[m - 1] for m in cron.months for d in cron.days)
    ):
        raise CronError(f'"{text}" never fires: none of its months has such a day')
    return cron


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise CronError(f'{name}: the step in "{item}" must be a whole number above 0')
            step = int(step_text)
        if base == "*":
            start, end = low, high
        else:
            first, dash, last = base.partition("-")
            start = _number(first, name, low, high, names)
            if dash:
                end = _number(last, name, low, high, names)
                if names is _CRON_DAYS and end == 0 and start > 0:
                    end = 7  # sat-sun: Sunday as 7
            else:
                end = high if slash else start
            if end < start:
                raise CronError(f'{name}: the range "{base}" runs backwards')
        values.update(range(start, end + 1, step))
    return values


def _number(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    word = text.lower()
    if word in names:
        return names.index(word) + (1 if names is _MONTHS else 0)
    if not (word.isascii() and word.isdigit() and len(word) <= 2):
        known = f" or a name ({names[0]}-{names[-1]})" if names else ""
        raise CronError(f'{name}: "{text}" is not a number ({low}-{high}){known}')
    value = int(word)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is out of range ({low}-{high})")
    return value


_DURATION = re.compile(r"^\s*(?:(\d{1,3})\s*d)?\s*(?:(\d{1,4})\s*h)?\s*(?:(\d{1,6})\s*m)?\s*$")


def parse_duration(text: str) -> timedelta:
    """ "30m", "8h", "2d", "1h30m" (days, hours, minutes, in that order) as a timedelta above
    zero and at most 366 days; else a ValueError saying so."""
    match = _DURATION.fullmatch(text)
    if not match or not any(match.groups()):
        raise ValueError(f'"{text}" is no duration: write it like "30m", "8h", "2d" or "1h30m"')
    days, hours, minutes = (int(g) if g else 0 for g in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if not timedelta(0) < duration <= MAX_DURATION:
        raise ValueError(f'"{text}" must be above 0 and at most 366 days')
    return duration


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or a ValueError saying it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f'"{name}" is no IANA time zone; like "Europe/Berlin", "America/New_York" or "UTC"'
        ) from None


# --- instants -----------------------------------------------------------------------------------


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (UTC) a window at wall-clock `wall` opens: its first occurrence when a
    fall-back repeats it, the end of the gap when a spring-forward skips it."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 reads `wall` with the offset before the change (an instant after it),
    # fold=1 with the one after (an instant before it): the change lies between them.
    before = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    after = first
    offset = after.astimezone(tz).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        middle = middle.replace(microsecond=0)
        if middle.astimezone(tz).utcoffset() == offset:
            after = middle
        else:
            before = middle
    return after


@functools.lru_cache(maxsize=8192)
def _fires_on(cron: Cron, timezone: str, day: date) -> tuple[datetime, ...]:
    """The instants (UTC, ascending) at which `cron` fires on the local date `day`."""
    if not cron.on(day):
        return ()
    tz = ZoneInfo(timezone)
    instants = {
        _instant(datetime(day.year, day.month, day.day, hour, minute), tz)
        for hour in cron.hours
        for minute in cron.minutes
    }
    return tuple(sorted(instants))


def _aware(at: datetime, name: str = "at") -> datetime:
    """`at` in UTC, where adding a timedelta adds elapsed time (in a ZoneInfo zone it adds
    wall-clock time), or a ValueError when it is naive."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got {at!r}")
    return at.astimezone(UTC)


# --- the rules ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """A recurring window: opens at each fire time of `cron` in `timezone`, lasts `duration`."""

    kind: Literal["allow", "deny"]
    cron: str
    duration: timedelta
    timezone: str = "UTC"
    parsed: Cron = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("allow", "deny"):
            raise ValueError(f'kind must be "allow" or "deny", got {self.kind!r}')
        if not timedelta(0) < self.duration <= MAX_DURATION:
            raise ValueError("duration must be above 0 and at most 366 days")
        zone(self.timezone)
        object.__setattr__(self, "parsed", parse_cron(self.cron))

    def _local_date(self, at: datetime) -> date:
        return at.astimezone(ZoneInfo(self.timezone)).date()

    def fires(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The instants (UTC) it opens at in [start, end), in order."""
        start, end = _aware(start, "start"), _aware(end, "end")
        day, last = self._local_date(start) - timedelta(days=1), self._local_date(end)
        while day <= last:
            for instant in _fires_on(self.parsed, self.timezone, day):
                if start <= instant < end:
                    yield instant
            day += timedelta(days=1)

    def occurrence(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The span [opens, closes) of it that holds `at` (the one that opened last), if any."""
        at = _aware(at)
        earliest = at - self.duration
        day, first = self._local_date(at) + timedelta(days=1), self._local_date(earliest)
        while day >= first - timedelta(days=1):
            for instant in reversed(_fires_on(self.parsed, self.timezone, day)):
                if instant <= at:
                    return (instant, instant + self.duration) if instant > earliest else None
            day -= timedelta(days=1)
        return None

    def next_opening(self, after: datetime, until: datetime) -> datetime | None:
        """The first instant it opens at in [after, until], if any."""
        return next(self.fires(after, until + timedelta(microseconds=1)), None)

    def describe(self) -> str:
        """Like "Mon-Fri 09:00-17:00 Europe/Berlin" (with en dashes), or its cron when it is
        no such simple one ('"*/30 9-17 * * *" for 15 min UTC')."""
        cron = self.parsed
        simple = (
            len(cron.minutes) == 1
            and len(cron.hours) == 1
            and cron.any_day
            and len(cron.months) == 12
        )
        if not simple:
            return f'"{cron.text}" for {duration_text(self.duration)} {self.timezone}'
        start = datetime.combine(date(2001, 1, 1), time(cron.hours[0], cron.minutes[0]))
        end = start + self.duration  # 2001-01-01 is a Monday
        if self.duration < timedelta(days=1):
            span = f"{start:%H:%M}{DASH}{end:%H:%M}"
            return f"{_weekdays_text(cron.weekdays)} {span} {self.timezone}"
        if len(cron.weekdays) == 1:
            (day,) = cron.weekdays
            ends = (day + (end.date() - start.date()).days) % 7
            return (
                f"{_DAY_NAMES[day][:3]} {start:%H:%M}{DASH}{_DAY_NAMES[ends][:3]} {end:%H:%M} "
                f"{self.timezone}"
            )
        return (
            f"{_weekdays_text(cron.weekdays)} {start:%H:%M} for {duration_text(self.duration)} "
            f"{self.timezone}"
        )


def _weekdays_text(days: frozenset[int]) -> str:
    """Mon-Fri, "daily", "Sat, Sun", "Mon, Wed-Fri" (en dashes)."""
    if len(days) == 7:
        return "daily"
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [_DAY_NAMES[d][:3] for d in range(7)]
    parts = [
        names[r[0]] if len(r) == 1 else f"{names[r[0]]}{DASH if len(r) > 2 else ', '}{names[r[-1]]}"
        for r in runs
    ]
    return ", ".join(parts)


@dataclass(frozen=True)
class Freeze:
    """A dated freeze: closed from `start` until `until` (aware datetimes), for `reason`, set by
    `who` (a Slack user ID; "" for one in the config file)."""

    start: datetime
    until: datetime
    reason: str
    who: str = ""

    def __post_init__(self) -> None:
        _aware(self.start, "start")
        _aware(self.until, "until")
        if self.until <= self.start:
            raise ValueError("a freeze's until must be after its start")

    def holds(self, at: datetime) -> bool:
        return self.start <= at < self.until

    def describe(self, shown: Callable[[str], str] = str) -> str:
        """Like "frozen until 2027-01-04 09:00 Europe/Berlin: holidays (by <@U1>)". `shown`
        renders the reason, which someone typed (escaped for Slack: bot.services.
        deploy_windows.why_shown); who set it is the user ID of a signed request."""
        by = f" (by <@{self.who}>)" if self.who else ""
        return f"frozen until {_when(self.until)}: {shown(self.reason)}{by}"


def _when(at: datetime) -> str:
    name = getattr(at.tzinfo, "key", None) or at.strftime("%Z") or at.strftime("UTC%z")
    return f"{at:%Y-%m-%d %H:%M} {name}"


@dataclass(frozen=True)
class Rules:
    """The windows and freezes of one environment."""

    windows: tuple[Window, ...] = ()
    freezes: tuple[Freeze, ...] = ()

    @property
    def allow(self) -> tuple[Window, ...]:
        return tuple(w for w in self.windows if w.kind == "allow")

    @property
    def deny(self) -> tuple[Window, ...]:
        return tuple(w for w in self.windows if w.kind == "deny")


@dataclass(frozen=True)
class Verdict:
    """Whether a change may go at an instant; why (or why not), for people; and the next moment
    it may: the instant itself when open, None when it does not open within HORIZON."""

    open: bool
    why: str
    opens_at: datetime | None
    # What `why` is made of, for rendering it elsewhere: the freezes holding, and the windows'
    # reasons (from the config).
    freezes: tuple[Freeze, ...] = ()
    window_reasons: tuple[str, ...] = ()


def _blocked_until(rules: Rules, at: datetime) -> datetime | None:
    """When the deny windows and freezes that hold `at` end (the last of them), if any do."""
    ends = [_aware(f.until) for f in rules.freezes if f.holds(at)]
    ends += [span[1] for w in rules.deny if (span := w.occurrence(at)) is not None]
    return max(ends, default=None)


def _is_open(rules: Rules, at: datetime) -> bool:
    if _blocked_until(rules, at) is not None:
        return False
    allow = rules.allow
    return not allow or any(w.occurrence(at) is not None for w in allow)


def next_open(rules: Rules, at: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first instant from `at` on (itself included) at which `rules` are open, or None when
    there is none within `horizon`. In UTC."""
    at = _aware(at)
    limit = at + horizon
    moment = at
    while moment <= limit:
        blocked = _blocked_until(rules, moment)
        if blocked is not None:
            moment = blocked  # everything before is closed: the blocker holds all of it
            continue
        allow = rules.allow
        if not allow or any(w.occurrence(moment) is not None for w in allow):
            return moment
        # Outside every allow window: nothing opens before the next of them does.
        openings = [o for w in allow if (o := w.next_opening(moment, limit)) is not None]
        if not openings:
            return None
        moment = min(openings)
    return None


def next_change(
    windows: Sequence[Window], at: datetime, horizon: timedelta = HORIZON
) -> datetime | None:
    """The first instant after `at` at which one of `windows` opens or closes (what a verdict
    of them says can change only then), or None within `horizon`."""
    at = _aware(at)
    moments = []
    for window in windows:
        if (span := window.occurrence(at)) is not None:
            moments.append(span[1])
        if (opens := window.next_opening(at + timedelta(microseconds=1), at + horizon)) is not None:
            moments.append(opens)
    return min(moments, default=None)


def freezes_change(freezes: Iterable[Freeze], at: datetime) -> datetime | None:
    """The first instant after `at` at which one of `freezes` starts or ends."""
    at = _aware(at)
    moments = [f.until if f.holds(at) else f.start for f in freezes if f.until > at]
    return min(moments, default=None)


def rules_change(rules: Rules, at: datetime, horizon: timedelta = HORIZON) -> datetime | None:
    """The first instant after `at` at which a verdict of `rules` can change: one of its
    windows opens or closes, or one of its freezes starts or ends."""
    moments = [freezes_change(rules.freezes, at), next_change(rules.windows, at, horizon)]
    return min((m for m in moments if m is not None), default=None)


def verdict(rules: Rules, at: datetime) -> Verdict:
    """Whether `rules` let a change through at `at` (aware): closed inside any freeze or deny
    window (deny wins over allow), and outside every allow window when there are any."""
    at = _aware(at)
    holding = tuple(f for f in rules.freezes if f.holds(at))
    windows = [f"inside the deny window {w.describe()}" for w in rules.deny if w.occurrence(at)]
    allow = rules.allow
    inside = [w for w in allow if w.occurrence(at) is not None]
    if allow and not inside:
        plural = "s" if len(allow) > 1 else ""
        listed = " and ".join(w.describe() for w in allow)
        windows.append(f"outside the allow window{plural} {listed}")
    if holding or windows:
        why = "; ".join([*(f.describe() for f in holding), *windows])
        return Verdict(False, why, next_open(rules, at), holding, tuple(windows))
    if inside:
        return Verdict(True, f"inside the allow window {inside[0].describe()}", at)
    return Verdict(True, "no freeze or deny window holds", at)


# --- for people ---------------------------------------------------------------------------------


def duration_text(duration: timedelta) -> str:
    """ "30 min", "8 h", "1 h 30 min", "2 days", "2 days 3 h 5 min" (to the minute)."""
    minutes = math.ceil(duration.total_seconds() / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} day{'s' if days != 1 else ''}"] if days else []
    parts += [f"{hours} h"] if hours else []
    parts += [f"{minutes} min"] if minutes else []
    return " ".join(parts) or "0 min"


def _relative(delta: timedelta) -> str:
    """ "in 35 min", "in 3 h 10 min", "in 2 days 14 h": minutes rounded up (it never opens
    sooner than said); past a day, to the nearest hour."""
    seconds = delta.total_seconds()
    if seconds <= 0:
        return "now"
    minutes = math.ceil(seconds / 60)
    if minutes < 24 * 60:
        return "in " + duration_text(timedelta(minutes=minutes))
    days, hours = divmod((minutes + 30) // 60, 24)
    return f"in {days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")


def may_start(rules: Rules, at: datetime, *, overridden: bool = False) -> Verdict | None:
    """The one rule every deploy and promotion start obeys: None when it may start at `at`
    (its environment is open, or an approved EMERGENCY override covers it), else the closed
    verdict that stops it."""
    if overridden:
        return None
    found = verdict(rules, at)
    return None if found.open else found


def describe_opening(opens_at: datetime, now: datetime, timezone: str) -> str:
    """Like "opens Monday 09:00 Europe/Berlin, in 2 days 14 h": the day (today, tomorrow, a
    weekday within the week, else the date) and time in `timezone`, and how long from `now`."""
    opens_at, now = _aware(opens_at, "opens_at"), _aware(now, "now")
    tz = zone(timezone)
    local = opens_at.astimezone(tz)
    today = now.astimezone(tz).date()
    ahead = (local.date() - today).days
    if ahead == 0:
        day = "today"
    elif ahead == 1:
        day = "tomorrow"
    elif 1 < ahead < 7:
        day = _DAY_NAMES[local.weekday()]
    else:
        day = f"{_DAY_NAMES[local.weekday()]} {local.day} {_MONTH_NAMES[local.month - 1]}"
        if local.year != today.year:
            day += f" {local.year}"
    return f"opens {day} {local:%H:%M} {timezone}, {_relative(opens_at - now)}"
