"""The delivery figures (bot.domain.delivery) from what the bot recorded: the audit trail
of the period, production's history, and git for the commit times of what shipped. For
`/release report`, `releasebot report` and `/metrics`."""

from __future__ import annotations

import logging
from typing import Protocol

from bot.blocks import report as texts
from bot.domain import delivery
from bot.domain.audit import parse_since
from bot.services.ports import HasChat, HasClock, HasConfig, HasRepository, HasStore

log = logging.getLogger(__name__)

DEFAULT_SINCE = "30d"


class ReportNeeds(HasConfig, HasClock, HasStore, HasRepository, Protocol):
    """The trail and the history it reads, and the clone for commit times."""


class AnswerNeeds(ReportNeeds, HasChat, Protocol):
    """…and the chat to answer in."""


async def delivery_report(
    services: ReportNeeds, since: float, until: float | None = None
) -> delivery.Report:
    until = services.clock() if until is None else until
    production = services.config.last_environment.name
    entries = [entry async for entry in services.store.audit_since(since)]
    shipped = delivery.shipped(await services.store.environment_history(production), since, until)
    commit_times: dict[str, list[float]] = {}
    if shipped:
        try:
            await services.git.sync_tags()  # once: every shipped version's commits are fetched
        except Exception:
            log.warning("fetching the repository failed; lead times come from the clone as is")
    for deploy in shipped:
        try:
            commit_times[deploy.sha] = await services.git.commit_times(deploy.base_sha, deploy.sha)
        except Exception:  # the repository unreachable: the other figures still stand
            log.warning(
                "reading the commits of %s failed; its lead times are left out", deploy.version
            )
    return delivery.measure(
        entries,
        production,
        since,
        until,
        services.config.monitoring.window_seconds,
        delivery.lead_times(shipped, commit_times),
    )


def since_of(text: str | None, now: float) -> float:
    """`--since` as a time; ValueError naming the forms it may take."""
    return parse_since(text or DEFAULT_SINCE, now)


async def answer_report(
    services: AnswerNeeds, response_url: str | None, since_text: str | None
) -> None:
    """`/release report [--since 30d]`, privately, after the ack (git is asked)."""
    now = services.clock()
    try:
        since = since_of(since_text, now)
    except ValueError as exc:
        text = f"`--since`: {exc}"
        await services.chat.answer(response_url, texts.problem(text), text)
        return
    report = await delivery_report(services, since, now)
    environments = [e.name for e in services.config.environments]
    await services.chat.answer(
        response_url, texts.delivery_report(report, environments), "Delivery report"
    )
