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


async def before_ack(work: Awaitable[T]) -> T:
    """`work` within the before-ack budget (raises TimeoutError past it).

    Run in the caller's task, not in one of its own (asyncio.wait_for): work that needs no
    I/O, a status served from its snapshot, then answers in the listener's first step instead
    of two loop iterations later, and costs a third of the CPU."""
    async with asyncio.timeout(BEFORE_ACK_BUDGET):
        return await work


async def answer_click(respond: AsyncRespond, work: Awaitable[str]) -> None:
    """Tell the person who clicked what their click did, within the after-ack budget ("" is
    no answer: the click opened a form, which is its answer)."""
    task = asyncio.ensure_future(work)
    try:
        # Shielded: past the budget the person is told, but the work is not cut off half way
        # (a decision recorded whose thread reply is still being posted, say).
        text = await asyncio.wait_for(asyncio.shield(task), AFTER_ACK_BUDGET)
    except TimeoutError:
        if task.done():  # the work itself timed out (a Redis call past its deadline)
            text = CLICK_STORE_DOWN
        else:
            text = CLICK_SLOW
            task.add_done_callback(_forget)
    except STORE_UNREACHABLE:
        text = CLICK_STORE_DOWN
    if text:
        await say_privately(respond, text)


def _forget(task: asyncio.Future[str]) -> None:
    """A click's work that outlived its answer: its end is in the logs, not in an error."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("a click's work failed after its answer: %s", task.exception())


async def say_privately(respond: AsyncRespond, text: str) -> None:
    await respond(
        response_type="ephemeral", replace_original=False, text=text, blocks=messages.note(text)
    )
