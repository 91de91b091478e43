"""`/release audit` in Slack: the newest entries of the trail, one line each, within Slack's
limits."""

from __future__ import annotations

from collections.abc import Mapping

from bot.blocks.release import (
    Block,
    context,
    escape,
    escape_keeping_mentions,
    header,
    mention,
    section,
    slack_time,
)
from bot.domain.outbox import MAX_BLOCKS

# Slack: at most MAX_BLOCKS blocks, section text at most 3000 characters.
SECTION_LIMIT = 3000


REASON_LIMIT = 200


def audit_message(
    version: str | None,
    entries: list[dict[str, str]],
    *,
    max_entries: int = 100,
    total: int | None = None,
) -> list[Block]:
    """`/release audit [VERSION]`: the newest entries (oldest of them first), one per line.

    At most `max_entries` lines, 50 blocks and 3000 characters a section; what does not fit is
    counted in a context line pointing at `releasebot audit export`. `total` is how many
    there are in all when `entries` holds only the newest of them.
    """
    title = "latest" if not version else (version if version.startswith("v") else f"v{version}")
    blocks: list[Block] = [header(f"Audit trail · {title}")]
    if not entries:
        where = f"release {escape(version)}" if version else "any release"
        return [*blocks, section(f"There is no audit entry for {where} yet.")]
    budget = MAX_BLOCKS - 2  # the header and the "older entries" context line
    chunks: list[list[str]] = []  # newest first, each newest line first
    size = 0
    shown = 0
    for entry in reversed(entries[-max_entries:] if max_entries > 0 else []):
        line = audit_line(entry, with_release=not version)
        if chunks and size + 1 + len(line) <= SECTION_LIMIT:
            chunks[-1].append(line)
            size += 1 + len(line)
        elif len(chunks) < budget:
            chunks.append([line])
            size = len(line)
        else:
            break
        shown += 1
    hidden = (len(entries) if total is None else max(total, len(entries))) - shown
    if hidden:
        noun = "entry" if hidden == 1 else "entries"
        blocks.append(
            context(f"{hidden} older {noun} not shown: `releasebot audit export` has them all.")
        )
    blocks.extend(section("\n".join(reversed(chunk))) for chunk in reversed(chunks))
    return blocks


def audit_line(entry: Mapping[str, str], *, with_release: bool = False) -> str:
    """time · who · action · outcome · environment · reason (empty parts left out)."""
    try:
        when = slack_time(float(entry.get("at", "")))
    except (ValueError, OverflowError, OSError):
        when = "?"

    def part(name: str, limit: int) -> str:
        return escape(_one_line(entry.get(name, ""), limit))

    user_id = entry.get("user_id", "")
    who = mention(user_id) if user_id else ""
    if not who.startswith("<@"):
        who = part("user_name", 60) or part("user_id", 60) or "?"
    action = part("action", 60)
    if with_release and entry.get("release"):
        action = f"{action} {part('release', 60)}".strip()
    parts = [
        when,
        who,
        f"*{action}*" if action else "",
        part("outcome", 40),
        part("environment", 60),
        escape_keeping_mentions(_one_line(entry.get("reason", ""), REASON_LIMIT)),
    ]
    return " · ".join(p for p in parts if p)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
