"""A mixed burst of 600 signed requests at one replica at once (no client-side limit): every
request is answered, every accepted click is applied or its clicker told it was not, and
every audit entry is written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from handlers.answers import CLICK_LATE_PREFIX, CLICK_SLOW, CLICK_STORE_DOWN
from tests.helpers.config import make_config
from tests.helpers.signing import sign
from tests.helpers.slack_requests import click_payload, interaction_body
from tests.helpers.steps import candidate

GATES = 20
CLICKS_PER_GATE = 5  # the same click, again and again (a double-clicker, a retrying client)


async def test_a_burst_of_600_loses_nothing(start_bot, git_remote, tmp_path: Path):
    gates = "".join(
        f'\n[[gates]]\nid = "m{n}"\nname = "Check {n}"\nstage = "staging"\nmanual = true\n'
        for n in range(GATES)
    )
    bot = await start_bot(make_config(git_remote, tmp_path, extra=gates))
    slack = bot.slack
    message = await candidate(bot)
    await bot.services.chat.sender.settled()
    buttons = {
        json.loads(e["value"])["g"]: (block, e)
        for block in message.blocks
        if block.get("type") == "actions"
        for e in block["elements"]
        if e.get("action_id") == "gate_approve"
    }
    bodies: list[str] = []
    for n in range(GATES):
        block, element = buttons[f"m{n}"]
        payload = click_payload(message, block, element, slack.response_url("U0BOB"))
        bodies += [interaction_body(payload)] * CLICKS_PER_GATE
    commands = 600 - len(bodies)
    for n in range(commands):
        user = f"U0USER{n:03d}"
        text = "status" if n % 2 else "health"
        bodies.append(bot.command_body(text, user=user, user_name=f"u{n}"))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def send(body: str) -> tuple[int, str]:
            async with http.post(f"{bot.url}/slack/events", data=body, headers=sign(body)) as r:
                return r.status, await r.text()

        answered = await asyncio.gather(*(send(b) for b in bodies))
    assert all(status == 200 for status, _ in answered), [s for s, _ in answered if s != 200]
    assert all(text for _, text in answered[len(bodies) - commands :])  # each command acked

    def click_answers() -> list[str]:
        return [
            slack.text_of(c.params)
            for c in slack.calls_to("response_url")
            if c.params.get("_id", "").startswith("U0BOB")
        ]

    clicks = GATES * CLICKS_PER_GATE
    await slack.wait_for(lambda: len(click_answers()) >= clicks, timeout=60)
    told_not_applied = (CLICK_STORE_DOWN, CLICK_SLOW, CLICK_LATE_PREFIX)
    for text in click_answers():
        assert text.startswith(("You approved", "Nothing changed")) or text in told_not_applied, (
            text
        )
    applied = [t for t in click_answers() if t.startswith("You approved")]
    release = await bot.services.store.get_release("0.15.0-rc.1")
    assert release is not None
    approved = {g.id for g in release.gates if g.approvals}
    assert approved == {f"m{n}" for n in range(GATES)}  # sized for it: every gate applied
    assert len(applied) == GATES
    entries = [
        e
        for e in await bot.services.store.audit_entries("0.15.0-rc.1")
        if e["action"] == "gate.approve"
    ]
    assert len(entries) == clicks  # one per click: applied or a duplicate, none lost
    assert sorted(e["outcome"] for e in entries).count("ok") == GATES
