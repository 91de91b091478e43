"""The closures `/release status` shows are judged once per span of time they hold for: rules
that open late (or never) take milliseconds to judge, and every status read of every service
asks; what is kept is dropped at the next window or freeze change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.domain.windows import Freeze, Rules, Window
from bot.services.show_status import closed_verdict

LUNCH = Window("deny", "0 12 * * *", timedelta(hours=1), "UTC")
MONDAY_NOON = datetime(2030, 6, 3, 12, 0, tzinfo=UTC).timestamp()


def test_a_closure_is_kept_until_its_window_ends():
    rules = Rules((LUNCH,))
    first = closed_verdict(rules, MONDAY_NOON + 60)
    assert first is not None and first.opens_at == datetime(2030, 6, 3, 13, 0, tzinfo=UTC)
    assert closed_verdict(rules, MONDAY_NOON + 3000) is first  # the same span: not judged again
    assert closed_verdict(rules, MONDAY_NOON + 3600) is None  # 13:00: open
    assert closed_verdict(rules, MONDAY_NOON - 60) is None  # before it: open


def test_a_freeze_that_starts_or_ends_ends_what_was_kept():
    start = datetime.fromtimestamp(MONDAY_NOON + 1800, UTC)
    freeze = Freeze(start, start + timedelta(hours=2), "migration")
    rules = Rules((LUNCH,), (freeze,))
    lunch = closed_verdict(rules, MONDAY_NOON + 60)
    assert lunch is not None and lunch.freezes == ()
    frozen = closed_verdict(rules, MONDAY_NOON + 1800)  # 12:30: the freeze starts
    assert frozen is not None and frozen is not lunch and frozen.freezes == (freeze,)
    assert frozen.opens_at == start + timedelta(hours=2)


def test_rules_that_never_open_are_judged_once_per_span():
    never = Rules((Window("allow", "0 8 * * mon-fri", timedelta(hours=10), "UTC"), LUNCH))
    never = Rules((*never.windows, Window("deny", "0 0 * * *", timedelta(days=1), "UTC")))
    first = closed_verdict(never, MONDAY_NOON + 60)
    assert first is not None and first.opens_at is None
    assert closed_verdict(never, MONDAY_NOON + 120) is first
