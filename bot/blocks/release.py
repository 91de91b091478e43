"""Block Kit for every message the bot sends: plain dicts built from plain data.

Kept short for phones: a header, the facts as fields, the checklist, a context line.
Slack limits respected here: header 150 chars, section text 3000, at most 50 blocks.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.blocks.actions import (
    DEPLOY_RETRY,
    GATE_APPROVE,
    GATE_REJECT,
    GATE_REJECT_REASON,
    GATE_RERUN,
    GATE_WAIVE,
    GATE_WAIVE_APPROVE,
    GATE_WAIVE_REASON,
    OVERRIDE_APPROVE,
    ROLLBACK_APPROVE,
    ROLLBACK_CANCEL,
    ROLLBACK_REASON,
    ROLLBACK_START,
)
from bot.commands.release import USAGE
from bot.domain.approval_policy import approvals_text
from bot.domain.approvals import readiness, retry_refusal
from bot.domain.command_results import CommandResult
from bot.domain.config import Config
from bot.domain.locks import LockInfo, format_age
from bot.domain.outbox import MAX_BLOCKS
from bot.domain.releases import Deploy, Gate, Release, rerun_refusal
from bot.domain.rollbacks import RollbackRequest
from bot.domain.windows import Freeze, zone

Block = dict[str, Any]

GATE_ICONS = {"pending": "⬜", "running": "⏳", "passed": "✅", "failed": "❌", "waived": "☑️"}
DEPLOY_ICONS = {"queued": "🕒", "running": "⏳", "succeeded": "✅", "failed": "❌", "blocked": "⛔"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
WAITING_CHARS = 200  # of what a running gate waits for, on its checklist line


def _text(text: str, limit: int = 3000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": _text(text, 150), "emoji": True},
    }


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _text(text)}}


def sections(lines: list[str]) -> list[Block]:
    """Lines over as many sections as their length needs (a section holds 3,000 chars)."""
    blocks: list[Block] = []
    chunk: list[str] = []
    for line in lines:
        if chunk and sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    if chunk:
        blocks.append(section("\n".join(chunk)))
    return blocks


def fields(pairs: list[tuple[str, str]]) -> Block:
    # A section holds at most 10 fields of at most 2000 characters each.
    return {
        "type": "section",
        "fields": [
            {"type": "mrkdwn", "text": _text(f"*{name}*\n{value}", 2000)}
            for name, value in pairs[:10]
        ],
    }


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _text(text)}]}


def escape(text: str) -> str:
    """User text inside mrkdwn: no accidental mentions or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ESCAPED_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,})&gt;")


def escape_keeping_mentions(text: str) -> str:
    """`escape`, but a user mention (`<@U0BOB>`, as the bot writes them into reasons) shows as
    Slack shows a mention, not as `&lt;@U0BOB&gt;`. Nothing else comes through: no channel or
    group broadcast (`<!channel>`), no link."""
    return _ESCAPED_MENTION.sub(r"<@\1>", escape(text))


def mention(user: str) -> str:
    return f"<@{user}>" if _USER_ID.fullmatch(user) else escape(user)


_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


def mention_all(people: tuple[str, ...]) -> str:
    """User and user-group IDs as Slack mentions, for a sentence: "<@U1>, <@U2> and
    <!subteam^S1>"."""
    said = [f"<!subteam^{p}>" if _GROUP_ID.fullmatch(p) else mention(p) for p in people]
    return " and ".join(filter(None, (", ".join(said[:-1]), said[-1]))) if said else ""


def slack_time(at: float) -> str:
    fallback = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))
    return f"<!date^{int(at)}^{{date_short_pretty}} {{time}}|{fallback}>"


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.1f}s" if value < 60 else format_age(value)


def code_block(text: str, limit: int = 2800) -> str:
    text = text.replace("```", "`\u200b``")
    if len(text) > limit:
        text = "…" + text[-limit:]
    return f"```{text}```" if text.strip() else "_(no output)_"


# --- the release message -----------------------------------------------------------------------


def gate_line(gate: Gate) -> str:
    icon = GATE_ICONS[gate.status]
    if gate.rejection is not None:
        r = gate.rejection
        state = f"rejected by {mention(r.user_id)} {slack_time(r.at)}: {escape(r.reason)}"
    elif not gate.automatic:
        if gate.approvals:
            state = "approved by " + ", ".join(
                f"{mention(a.user_id)} {slack_time(a.at)}" for a in gate.approvals
            )
        else:
            icon, state = "👤", "waiting for approval"
    elif gate.status in ("passed", "failed"):
        state = f"{gate.status} in {seconds(gate.duration)}"
    elif gate.status == "running" and gate.detail:
        # What it waits for (a CI gate: "waiting for ci/e2e"), one short line of the checklist.
        state = escape(_text(" ".join(gate.detail.split()), WAITING_CHARS))
    else:
        state = gate.status
    if gate.automatic and gate.waiver is not None:
        w = gate.waiver
        approved = ", ".join(mention(a.user_id) for a in w.approvals)
        if w.granted:
            state = (
                f"waived: {escape(w.reason)} (asked by {mention(w.user_id)}, approved by "
                f"{approved})"
            )
        else:
            state += f" · waiver asked by {mention(w.user_id)}: {escape(w.reason)}"
            if approved:
                state += f" (approved by {approved})"
    return f"{icon} {escape(gate.name)} — {state}"


def gate_value(release: Release, gate: Gate) -> str:
    return json.dumps({"v": release.version, "g": gate.id}, separators=(",", ":"))


def retry_button(release: Release, environment: str) -> Block:
    """Retry deploy, under a deploy that failed, was blocked or was lost."""
    value = json.dumps({"v": release.version, "e": environment}, separators=(",", ":"))
    return {
        "type": "actions",
        "block_id": f"retry:{environment}"[:255],
        "elements": [
            {
                "type": "button",
                "action_id": DEPLOY_RETRY,
                "value": value,
                "text": {"type": "plain_text", "text": f"Retry deploy to {environment}"[:75]},
                "confirm": confirm_dialog(
                    f"Retry the deploy to {environment}?",
                    f"The deploy of {release.final_tag or release.tag} to *{environment}* runs "
                    "again, then its gates.",
                    "Retry",
                ),
            }
        ],
    }


def failed_gate_buttons(release: Release, gate: Gate, last_environment: str) -> Block | None:
    """Under a failed automatic gate: Re-run it, Waive it (asks for a reason), or approve a
    waiver someone asked for. None when none of them may be used now."""
    value = gate_value(release, gate)
    elements: list[dict[str, Any]] = []
    if rerun_refusal(release, gate, last_environment) is None:
        elements.append(
            {
                "type": "button",
                "action_id": GATE_RERUN,
                "value": value,
                "text": {"type": "plain_text", "text": f"Re-run {gate.name}"[:75]},
                "confirm": confirm_dialog(
                    f"Re-run {gate.name}?",
                    f"*{escape(gate.name)}* runs again against what *{gate.stage}* runs "
                    f"({release.tag}).",
                    "Re-run",
                ),
            }
        )
    open_here = release.phase == "active" and not release.superseded_by and not release.final_tag
    if open_here and gate.status == "failed" and gate.waiver is None:
        elements.append(
            {
                "type": "button",
                "action_id": GATE_WAIVE,
                "value": value,
                "text": {"type": "plain_text", "text": "Waive"},
            }
        )
    elif open_here and gate.waiver is not None and not gate.waiver.granted:
        elements.append(
            {
                "type": "button",
                "action_id": GATE_WAIVE_APPROVE,
                "style": "primary",
                "value": value,
                "text": {"type": "plain_text", "text": f"Approve waiver of {gate.name}"[:75]},
                "confirm": confirm_dialog(
                    f"Approve the waiver of {gate.name}?",
                    f"*{escape(gate.name)}* then counts as passed for {release.tag}. Your "
                    "name and the time are recorded, and listed in the final tag.",
                    "Approve",
                ),
            }
        )
    if not elements:
        return None
    return {"type": "actions", "block_id": f"failed:{gate.id}"[:255], "elements": elements}


def confirm_dialog(title: str, text: str, yes: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": title[:100]},
        "text": {"type": "mrkdwn", "text": text[:300]},
        "confirm": {"type": "plain_text", "text": yes},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def gate_buttons(release: Release, gate: Gate, target: str) -> Block:
    value = gate_value(release, gate)
    return {
        "type": "actions",
        "block_id": f"gate:{gate.id}",
        "elements": [
            {
                "type": "button",
                "action_id": GATE_APPROVE,
                "style": "primary",
                "value": value,
                "text": {"type": "plain_text", "text": f"Approve {gate.name}"[:75]},
                "confirm": confirm_dialog(
                    f"Approve {gate.name}?",
                    f"You approve *{escape(gate.name)}* of {release.tag} for "
                    f"*{target}*. Your name and the time are recorded.",
                    "Approve",
                ),
            },
            {
                "type": "button",
                "action_id": GATE_REJECT,
                "style": "danger",
                "value": value,
                "text": {"type": "plain_text", "text": "Reject"},
                "confirm": confirm_dialog(
                    f"Reject {gate.name}?",
                    f"This stops {release.tag}; you will be asked why.",
                    "Reject",
                ),
            },
        ],
    }


def rollback_button(release: Release, environment: str) -> Block:
    value = json.dumps({"e": environment, "v": release.final_version or release.version})
    return {
        "type": "actions",
        "block_id": f"rollback:{environment}",
        "elements": [
            {
                "type": "button",
                "action_id": ROLLBACK_START,
                "style": "danger",
                "value": value,
                "text": {"type": "plain_text", "text": f"Roll back {environment}"[:75]},
                "confirm": confirm_dialog(
                    f"Roll back {environment}?",
                    f"{environment} goes back to the version before "
                    f"{release.final_tag}, and stays locked until someone "
                    "unlocks it. You will be asked why.",
                    "Roll back",
                ),
            }
        ],
    }


def rollback_view(environment: str, version: str, ticket: str) -> dict[str, Any]:
    """`ticket` binds the form to the click that opened it (bot.services.clicks.open_form)."""
    return {
        "type": "modal",
        "callback_id": ROLLBACK_REASON,
        "private_metadata": json.dumps({"t": ticket}),
        "title": {"type": "plain_text", "text": "Roll back"},
        "submit": {"type": "plain_text", "text": "Roll back"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(
                f"Roll *{environment}* back from `{version}` to the version "
                "before it. The reason is shown and recorded."
            ),
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 500,
                },
            },
        ],
    }


def _reason_view(
    callback_id: str, ticket: str, title: str, submit: str, intro: str, label: str
) -> dict[str, Any]:
    """A form that asks for a reason; `ticket` binds it to the click that opened it
    (bot.services.clicks.open_form)."""
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": json.dumps({"t": ticket}),
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": submit},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            section(intro),
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": label},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "reason",
                    "multiline": True,
                    "max_length": 500,
                },
            },
        ],
    }


def reject_view(release: Release, gate: Gate, ticket: str) -> dict[str, Any]:
    return _reason_view(
        GATE_REJECT_REASON,
        ticket,
        "Reject",
        "Reject",
        f"Reject *{escape(gate.name)}* of {release.tag}. The reason is shown on the release "
        "and recorded.",
        "Reason",
    )


def waive_view(release: Release, gate: Gate, ticket: str) -> dict[str, Any]:
    """The reason a failed gate may count as passed (approved by others: [waivers])."""
    return _reason_view(
        GATE_WAIVE_REASON,
        ticket,
        "Waive a gate",
        "Ask to waive",
        f"Ask that *{escape(gate.name)}* of {release.tag} count as passed although it failed. "
        "Someone else approves it; the reason is shown on the release, recorded, and listed "
        "in the final tag.",
        "Why it may go on",
    )


def notice_view(title: str, text: str) -> dict[str, Any]:
    """A form's answer shown in the form itself (it is replaced by this)."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": title[:24]},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [section(text)],
    }


def deploy_line(env: str, deploy: Deploy | None, now: float | None = None, latest: str = "") -> str:
    """A deploy's line; a running one says how long it has run and its latest output line."""
    if deploy is None:
        return f"*{env}* — not deployed"
    icon = DEPLOY_ICONS[deploy.status]
    if deploy.status in ("succeeded", "failed"):
        state = f"deploy {deploy.status} in {seconds(deploy.duration)}"
    elif deploy.status == "blocked":
        state = "deploy blocked: environment locked"
    elif deploy.status == "running" and deploy.started_at is not None and now is not None:
        state = f"deploy running for {seconds(max(0.0, now - deploy.started_at))}"
        if latest:
            # One line, short, no backtick of its own to break out of the code span.
            shown = escape(" ".join(latest.split())[:120]).replace("`", "'")
            state += f" · `{shown}`"
    else:
        state = f"deploy {deploy.status}"
    return f"{icon} *{env}* — {state}"


def release_title(release: Release) -> str:
    """What the release is now, in its header: a candidate, a release, or why it is neither
    any more. A hotfix says HOTFIX whatever else it says."""
    hotfix = "HOTFIX " if release.kind == "hotfix" else ""
    if release.final_tag:
        source = f"(from {release.tag})"
        if release.superseded_by:  # overtaken before it went live
            return f"⏭️ {hotfix}{release.final_tag} · overtaken by {release.superseded_by} {source}"
        if release.rolled_back_to:
            return f"⏪ {hotfix}{release.final_tag} · release, rolled back {source}"
        icon = "🚑" if hotfix else "🚀"
        emergency = (
            "EMERGENCY " if release.override is not None and release.override.granted else ""
        )
        return f"{icon} {emergency}{hotfix}{release.final_tag} · release (from {release.tag})"
    if release.cancelled is not None:
        return f"🚫 {hotfix}{release.tag} · cancelled"
    if release.superseded_by:
        return f"⏭️ {hotfix}{release.tag} · superseded"
    if any(gate.rejection is not None for gate in release.gates):
        return f"❌ {hotfix}{release.tag} · rejected"
    if hotfix:
        return f"🚑 HOTFIX {release.tag} · candidate"
    return f"🚀 {release.tag} · release candidate"


def release_message(
    release: Release,
    config: Config,
    now: float | None = None,
    *,
    can_roll_back: bool = True,
    progress: dict[str, str] | None = None,
) -> list[Block]:
    """`can_roll_back`: whether the last environment has a version to go back to (no Roll
    back button otherwise: it could only be refused). `progress`: the latest output line of
    each running deploy, by environment."""
    now = time.time() if now is None else now
    facts = [("Requested by", mention(release.requester)), ("Commit", f"`{release.sha[:10]}`")]
    if release.issue:
        facts.append(("Issue", escape(release.issue)))
    if release.final_tag:
        facts.append(("Promoted as", f"`{release.final_tag}`"))
    blocks: list[Block] = [header(release_title(release)), fields(facts)]
    if release.description:
        blocks.append(section(escape(release.description)))
    if release.changes:  # the list is in the thread
        blocks.append(context(f"📦 {escape(release.changes)} (listed in the thread)"))
    blocks.append({"type": "divider"})
    state = readiness(release, config, now)
    is_open = release.phase == "active" and not release.superseded_by and not release.final_tag
    target = config.last_environment.name
    for env in config.environments:
        deploy = release.deploys.get(env.name)
        gates = release.gates_of(env.name)
        if deploy is None and not gates:
            continue
        latest = (progress or {}).get(env.name, "")
        lines = [deploy_line(env.name, deploy, now, latest)] + [
            gate_line(g) for g in gates if g.automatic
        ]
        blocks.append(section("\n".join(lines)))
        if deploy is not None and retry_refusal(release, env.name, config, now) is None:
            blocks.append(retry_button(release, env.name))
        for gate in gates:
            if gate.automatic and gate.status == "failed":
                buttons = failed_gate_buttons(release, gate, config.last_environment.name)
                if buttons is not None:
                    blocks.append(buttons)
        for gate in gates:
            if gate.automatic:
                continue
            blocks.append(section(gate_line(gate)))
            if is_open and gate.rejection is None and env.name != target:
                blocks.append(gate_buttons(release, gate, target))
    live = release.deploys.get(target)
    if release.rolled_back_to:
        blocks.append(section(f"⏪ *{target}* was rolled back to `{release.rolled_back_to}`."))
    elif release.final_tag and live is not None and live.status == "succeeded" and can_roll_back:
        blocks.append(rollback_button(release, target))
    if release.override is not None:
        blocks += override_blocks(release, config, is_open)
    if release.cancelled is not None:
        blocks.append(
            section(
                f"🚫 Cancelled by {mention(release.cancelled.user_id)}: "
                f"{escape(release.cancelled.reason)}. It can no longer be promoted; its tag stays."
            )
        )
    elif release.superseded_by:
        blocks.append(
            section(f"⏭️ Superseded by `{release.superseded_by}`: approvals here no longer count.")
        )
    elif is_open and state.ready:
        blocks.append(section(f"✅ *Ready for {target}*: `/release final` promotes it."))
    elif is_open:
        blocks.append(section(f"*Before {target}:* " + "; ".join(state.missing)))
    blocks.append(context(f"Created {slack_time(release.created_at)} · details in the thread"))
    return blocks[:50]


def override_blocks(release: Release, config: Config, is_open: bool) -> list[Block]:
    """An EMERGENCY override asked for: who, why, its approvals, and the button to approve it
    while it waits (bound to this message, as every approval is)."""
    override = release.override
    assert override is not None
    policy = config.override_policy()
    got = ", ".join(mention(a.user_id) for a in override.approvals) or "none yet"
    state = (
        "is approved: the promotion goes through the closure"
        if override.granted
        else f"needs {policy.required} approval{'s' if policy.required != 1 else ''}, never "
        f"the asker's; so far: {got}"
    )
    blocks: list[Block] = [
        section(
            f"🚨 *EMERGENCY override* of *{config.last_environment.name}*'s closure, asked by "
            f"{mention(override.user_id)}: {escape(override.reason)}. It {state}."
        )
    ]
    if is_open and not override.granted:
        blocks.append(
            {
                "type": "actions",
                "block_id": "override",
                "elements": [
                    {
                        "type": "button",
                        "action_id": OVERRIDE_APPROVE,
                        "style": "danger",
                        "value": json.dumps({"v": release.version}),
                        "text": {"type": "plain_text", "text": "Approve emergency override"},
                        "confirm": confirm_dialog(
                            "Approve the EMERGENCY override?",
                            f"{release.tag} goes to *{config.last_environment.name}* although "
                            "it is closed. Your name and the time are recorded.",
                            "Approve",
                        ),
                    }
                ],
            }
        )
    return blocks


def release_fallback_text(release: Release) -> str:
    # The header without its icon: what notifications and screen readers say.
    return f"{release_title(release).split(' ', 1)[1]} by {release.requester_name}"


# --- thread replies and answers ---------------------------------------------------------------


def note(text: str) -> list[Block]:
    return [section(text)]


def problem(text: str) -> list[Block]:
    return [section(f":warning: {text}")]


def link(url: str, text: str) -> str:
    """A Slack link; a URL that could break out of one (`|`, `>`, blanks) is shown as text."""
    if not url.startswith(("https://", "http://")) or any(c in url for c in "|<> \n"):
        return escape(text)
    return f"<{url}|{escape(text)}>"


def deploy_outcome(tag: str, env: str, result: CommandResult) -> list[Block]:
    host = result.link.split("//", 1)[-1].split("/", 1)[0]
    where = f" ({link(result.link, f'details on {host}')})" if result.link else ""
    if result.ok:
        return [section(f"✅ Deployed {tag} to *{env}* in {seconds(result.duration)}{where}.")]
    kept = (
        [
            section(
                f"🔒 *{env}* stays locked: {escape(result.unsettled)}. Check GitHub, then "
                f"`/release unlock {env}` once nothing deploys there."
            )
        ]
        if result.unsettled
        else []
    )
    if result.error:
        nothing = " Nothing was run." if not result.link and not result.unsettled else ""
        return [
            section(
                f"❌ Deploy of {tag} to *{env}* failed: {escape(result.error)}{where}.{nothing}"
            ),
            *kept,
            section(code_block(result.tail)),
        ]
    return [
        section(
            f"❌ Deploy of {tag} to *{env}* {escape(result.summary())} after "
            f"{seconds(result.duration)}{where}. Last lines of its output:"
        ),
        *kept,
        section(code_block(result.tail)),
    ]


def gate_outcome(gate: Gate, result: CommandResult) -> list[Block]:
    if result.ok:
        return [section(f"✅ {escape(gate.name)} passed in {seconds(result.duration)}.")]
    return [
        section(
            f"❌ {escape(gate.name)} {result.summary()} after "
            f"{seconds(result.duration)}. Last lines of its output:"
        ),
        section(code_block(result.tail)),
    ]


def ci_gate_waiting(gate: Gate, detail: str, timeout: float) -> list[Block]:
    return [
        context(
            f"⏳ {escape(gate.name)}: {escape(detail)} (CI, re-checked until it reports, at "
            f"most {seconds(timeout)})"
        )
    ]


def ci_gate_outcome(gate: Gate, ok: bool, detail: str) -> list[Block]:
    """A CI gate decided: what CI said, with the failing check's link."""
    took = seconds(gate.duration or 0.0)
    if ok:
        return [section(f"✅ {escape(gate.name)} passed in {took}: {escape(detail)}")]
    return [section(f"❌ {escape(gate.name)} failed after {took}: {escape(detail)}")]


def lock_line(env: str, info: LockInfo, now: float | None = None) -> str:
    age = format_age((now or time.time()) - info.since)
    return (
        f"🔒 *{env}* — held by {mention(info.holder)} for {escape(info.reason)}, "
        f"since {slack_time(info.since)} ({age})"
    )


def environment_busy(env: str, info: LockInfo) -> list[Block]:
    return [
        section(
            f"⛔ *{env}* is busy, so this deploy did not start.\n"
            f"{lock_line(env, info)}\nTry again when it is free "
            "(`/release status` shows locks)."
        )
    ]


def dry_run(
    tag: str, sha: str, subject: str, branch: str, env: str, gates: list[str]
) -> list[Block]:
    gate_text = ", ".join(gates) if gates else "none"
    return [
        header("Dry run: nothing was changed"),
        section(
            f"I would tag `{tag}` on `{sha[:10]}` ({escape(subject)}), the head of "
            f"`{branch}`, push it, and deploy it to *{env}*.\nGates: {gate_text}."
        ),
    ]


def rc_started(branch: str, channel: str, dry_run: bool = False) -> list[Block]:
    if dry_run:
        return [
            section(
                f"⏳ Working out what a release candidate from `{branch}` would be "
                "(dry run: nothing will change)…"
            )
        ]
    return [
        section(
            f"⏳ Creating a release candidate from `{branch}`… "
            f"Follow along in {channel_ref(channel)}."
        )
    ]


def channel_ref(channel: str) -> str:
    if re.match(r"^[CG][A-Z0-9]{2,}$", channel):
        return f"<#{channel}>"
    return channel if channel.startswith("#") else f"#{channel}"


def help_message() -> list[Block]:
    return [header("releasebot"), section(USAGE)]


def local_time(at: datetime, timezone: str) -> str:
    """Like "2026-12-27 09:00 Europe/Berlin": `at` (aware) in `timezone`."""
    return f"{at.astimezone(zone(timezone)):%Y-%m-%d %H:%M} {timezone}"


def freeze_line(environment: str, freeze: Freeze, timezone: str) -> str:
    """🧊 *production* frozen until 2026-12-27 09:00 Europe/Berlin by @alice: holidays"""
    by = f" by {mention(freeze.who)}" if freeze.who else " by the config file"
    return (
        f"🧊 *{environment}* frozen until {local_time(freeze.until, timezone)}{by}: "
        f"{escape(freeze.reason)}"
    )


def short_freeze(environment: str, freezes: Sequence[Freeze], timezone: str) -> str:
    """🧊 production frozen until Dec 27 09:00 Europe/Berlin (Year-end), of the freezes that
    hold it now: all of them hold now, so it stays frozen until the last of them ends."""
    until = max(f.until for f in freezes).astimezone(zone(timezone))
    reasons = "; ".join(dict.fromkeys(escape(f.reason) for f in freezes))
    return (
        f"🧊 {environment} frozen until {until:%b} {until.day} {until:%H:%M} {timezone} ({reasons})"
    )


def status_message(
    config: Config,
    versions: dict[str, dict[str, str]],
    in_flight: list[Release],
    locks: dict[str, LockInfo],
    rollbacks_to: dict[str, str] | None = None,
    freezes: dict[str, list[Freeze]] | None = None,
    closed: dict[str, tuple[tuple[str, ...], str]] | None = None,
    freeze_requests: Sequence[str] = (),
    waiting: Sequence[str] = (),
) -> list[Block]:
    """`closed`: the environments a deploy window closes now, with why and when they open;
    `freeze_requests`: the lines of freezes waiting for their approvals; `waiting`: those of
    the rollbacks and flag changes that wait for theirs."""
    env_lines = []
    for env in config.environments:
        current = versions.get(env.name) or {}
        if current.get("version"):
            at = float(current.get("deployed_at", "0"))
            env_lines.append(
                f"*{env.name}* — `{current.get('tag', current['version'])}` since {slack_time(at)}"
            )
            if (rollback := (rollbacks_to or {}).get(env.name)) is not None:
                env_lines.append(f"      ↩️ _{rollback}_")
        else:
            env_lines.append(
                f"*{env.name}* — unknown: nothing deployed yet by the bot "
                f"(`/release adopt {env.name} VERSION --reason TEXT` tells me what runs there)"
            )
    blocks = [header("Release status"), section("\n".join(env_lines))]
    if in_flight:
        lines = []
        for release in in_flight[:15]:
            deploys = ", ".join(f"{env} {d.status}" for env, d in release.deploys.items())
            lines.append(
                f"• `{release.tag}` by {mention(release.requester)}"
                + (f" — {deploys}" if deploys else f" — {release.phase}")
            )
        blocks.append(section("*In flight*\n" + "\n".join(lines)))
    else:
        blocks.append(section("*In flight*\nNo releases in flight."))
    if locks:
        blocks.append(
            section("*Locks*\n" + "\n".join(lock_line(env, info) for env, info in locks.items()))
        )
    else:
        blocks.append(context("No environment is locked."))
    frozen = [
        freeze_line(env, freeze, config.freeze.timezone)
        for env, found in (freezes or {}).items()
        for freeze in found
    ]
    if frozen or freeze_requests:
        # Reasons are people's text, up to 500 characters each: as many sections as needed.
        blocks += sections(["*Freezes*", *frozen, *freeze_requests])
    shut = [
        f"⏸ *{env}* closed for changes: {escape('; '.join(why))}; it {opening}"
        for env, (why, opening) in (closed or {}).items()
    ]
    if shut:
        blocks += sections(["*Deploy windows*", *shut])
    if waiting:
        blocks += sections(["*Waiting for approvals*", *waiting])
    if len(blocks) > MAX_BLOCKS:
        # People's text (reasons of freezes and requests) filled it: Slack takes 50 blocks.
        cut = len(blocks) - MAX_BLOCKS + 1
        blocks = [*blocks[: MAX_BLOCKS - 1], context(f"…{cut} more parts left out: too long")]
    return blocks


def waiting_rollback_line(request: RollbackRequest, missing: int) -> str:
    """⏪ *production* back to `v1.4.1` from `v1.4.2`, asked by @bob …: why — needs 1 more
    approval: a rollback in `/release status`."""
    return (
        f"⏪ *{request.environment}* back to `{request.to_tag}` from `{request.from_shown}`, "
        f"asked by {mention(request.requester)} {slack_time(request.requested_at)}: "
        f"{escape(request.reason)} — {needs_text(missing)}"
    )


def at_most(lines: list[str], shown: int, one: str, many: str) -> list[str]:
    """The first `shown` lines, and how many more there are ("…and 1 more rollback"): each
    line may hold 500 characters of someone's text."""
    if len(lines) <= shown:
        return lines
    left = len(lines) - shown
    return [*lines[:shown], f"…and {left:,} more {one if left == 1 else many}"]


def needs_text(missing: int) -> str:
    """What a request waiting for approvals still needs: "needs 2 more approvals", or, with
    all it asks for (a worker that stopped before it started it), that it has them."""
    if missing:
        return f"needs {approvals_text(missing, more=True)}"
    return "approved, not started yet"


def rollback_request(request: RollbackRequest, required: int) -> tuple[str, list[Block]]:
    """The message that asks for a rollback's approvals, with its button; and its text."""
    text = (
        f"⏪ {mention(request.requester)} asks to roll back *{request.environment}* "
        f"from `{request.from_shown}` to `{request.to_tag}`: "
        f"{escape(request.reason)}\nNeeds {approvals_text(required)}; "
        f"{len(request.approvals)} so far."
    )
    value = json.dumps({"r": request.id})
    button = {
        "type": "button",
        "action_id": ROLLBACK_APPROVE,
        "style": "danger",
        "value": value,
        "text": {"type": "plain_text", "text": "Approve rollback"},
        "confirm": confirm_dialog(
            "Approve the rollback?",
            f"{request.environment} goes back to {request.to_tag} and stays locked "
            "until someone unlocks it.",
            "Roll back",
        ),
    }
    cancel = {
        "type": "button",
        "action_id": ROLLBACK_CANCEL,
        "value": value,
        "text": {"type": "plain_text", "text": "Cancel"},
        "confirm": confirm_dialog(
            "Cancel this rollback?",
            f"{request.environment} keeps running what it runs. Who asked for the rollback, "
            "or an approver of it, may cancel it.",
            "Cancel it",
        ),
    }
    blocks = [
        section(text),
        {"type": "actions", "block_id": f"rollback:{request.id}", "elements": [button, cancel]},
    ]
    return text, blocks


def rollback_cancelled(request: RollbackRequest) -> tuple[str, list[Block]]:
    """A rollback request's message once it was called off: no buttons."""
    text = (
        f"⏪ ~Rollback of *{request.environment}* to `{request.to_tag}`~: cancelled by "
        f"{escape(request.cancelled_by)}. *{request.environment}* keeps running "
        f"`{request.from_shown}`."
    )
    return text, [section(text)]
