"""How listeners answer in time, whatever the state store does.

Before an ack, every Redis call of a command runs inside one budget, so Slack hears back within
its 3 seconds even when Redis hangs; after the ack, a click's work is bounded too, and an
unreachable Redis is an answer ("nothing was recorded"), not silence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from slack_bolt.async_app import AsyncRespond

from bot.blocks import release as messages
from bot.runtime.container import STORE_UNREACHABLE

T = TypeVar("T")
log = logging.getLogger(__name__)

# Redis work before the ack gets this long, so Slack always hears back within its 3 seconds.
BEFORE_ACK_BUDGET = 2.0
# A click is acked at once; what it then does may take this long before the person is told.
AFTER_ACK_BUDGET = 5.0

STORE_DOWN = (
    "I cannot reach my state store (Redis) right now, so nothing was started or "
    "changed. Try again in a minute; if it persists, tell whoever runs releasebot."
)
AFTER_ACK_STORE_DOWN = (
    "My state store (Redis) stopped answering before I could finish: what my first answer "
    "said is done is recorded, the rest is not. Try again in a minute; if it persists, tell "
    "whoever runs releasebot."
)
CLICK_STORE_DOWN = (
    "I cannot reach my state store (Redis) right now, so I cannot confirm your "
    "click; if the message does not show it in a minute, click again."
)
# Past the budget the work goes on (it may be queued behind other writes, or Redis may hang):
# the answer says what is known, no more.
CLICK_SLOW = (
    f"I could not confirm your click within {AFTER_ACK_BUDGET:g} seconds: my state "
    "store (Redis) is slow or not answering. It is still being recorded; if the "
    "message does not show it within a minute, click again."
)
# What a click's work that outlived CLICK_SLOW says when it ends: an accepted click is never
# dropped with only a log line. Its work may have failed after recording the decision (while
# posting the thread reply), so the message is where the truth is.
CLICK_LATE_FAILED = (
    "I could not finish working on your click (my state store, Redis, failed or did not "
    "answer). Look at the message: if it does not show your click, click again."
)
CLICK_LATE_PREFIX = "Your click from a moment ago: "


async def before_ack(work: Awaitable[T]) -> T:
    """`work` within the before-ack budget (raises TimeoutError past it).

    Run in the caller's task, not in one of its own (asyncio.wait_for): work that needs no
    I/O, a status served from its snapshot, then answers in the listener's first step instead
    of two loop iterations later, and costs a third of the CPU."""
    async with asyncio.timeout(BEFORE_ACK_BUDGET):
        return await work


async def answer_click(respond: AsyncRespond, work: Awaitable[str]) -> None:
    """Tell the person who clicked what their click did, within the after-ack budget ("" is
    no answer: the click opened a form, which is its answer). Work that outlives the budget
    is waited for here, after the first answer, and its end is a second answer."""
    task = asyncio.ensure_future(work)
    late = False
    try:
        # Shielded: past the budget the person is told, but the work is not cut off half way
        # (a decision recorded whose thread reply is still being posted, say).
        text = await asyncio.wait_for(asyncio.shield(task), AFTER_ACK_BUDGET)
    except TimeoutError:
        if task.done():  # the work itself timed out (a Redis call past its deadline)
            text = CLICK_STORE_DOWN
        else:
            text, late = CLICK_SLOW, True
    except STORE_UNREACHABLE:
        text = CLICK_STORE_DOWN
    try:
        if text:
            await say_privately(respond, text)
    finally:
        if late:
            await _answer_late(respond, task)


async def _answer_late(respond: AsyncRespond, task: asyncio.Future[str]) -> None:
    """The end of a click's work that outlived its first answer: the person hears how."""
    try:
        text = await task
    except Exception as exc:  # Redis failed or timed out, or the work broke
        log.warning("a click's work failed after its first answer: %s", exc)
        text = CLICK_LATE_FAILED
    else:
        if not text:
            return  # it opened a form: that is its answer
        text = CLICK_LATE_PREFIX + text
    try:
        await say_privately(respond, text)
    except Exception:  # the response_url may have expired (30 min) or Slack may refuse
        log.warning("the late answer to a click could not be sent", exc_info=True)


async def say_privately(respond: AsyncRespond, text: str) -> None:
    await respond(
        response_type="ephemeral", replace_original=False, text=text, blocks=messages.note(text)
    )
