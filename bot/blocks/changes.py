"""Block Kit for what is in a release: the thread message that lists its changes.

`changes_blocks(changeset, *, pr_url="", show=20, max_blocks=50) -> list[Block]` renders a
`bot.domain.changes.Changeset` for a phone: the summary line (and the changeset's note), the
changes under their headings (`bot.domain.changes.group`), one short line each (`• add login
#123 — Ann · abc1234`, the PR number linked when `pr_url` is a template with `{n}`), the risks
in a section of their own, and "…and N more changes" for what does not fit. At most `show`
changes are listed, and the message stays within Slack's limits: `max_blocks` blocks (50 in
a message; less when the caller adds its own) and 3,000 characters a section, lines never
split across sections. `changes_text(changeset)` is the message's notification text.
"""

from __future__ import annotations

from bot.blocks.release import Block, context, escape, section
from bot.domain.changes import PLAIN_HEADING, Change, Changeset, group, pr_link, risks
from bot.domain.changes import summary_line as _summary_line

SECTION_CHARS = 2900  # of Slack's 3,000 a section holds, with room to spare
MAX_RISKS = 10  # risks listed; the rest are counted
_SUBJECT_CHARS = 150  # a line's subject is cut here: two lines on a phone, no more
_AUTHOR_CHARS = 40
_LINK_CHARS = 300  # a longer PR URL is not linked (a line must stay short)


def changes_text(changeset: Changeset) -> str:
    """The message's plain text (notifications, screen readers)."""
    return f"What is in it: {_summary_line(changeset)}"


def change_line(change: Change, pr_url: str = "", titled: bool = True) -> str:
    """One change as a mrkdwn line: `• subject #123 — author · abc1234`."""
    text = change.title if titled else change.subject
    text = escape(_cut(text, _SUBJECT_CHARS))
    if change.breaking and not titled:
        text = f"*breaking:* {text}"
    if change.pr is not None:
        link = pr_link(pr_url, change.pr)
        text += f" <{link}|#{change.pr}>" if link and len(link) <= _LINK_CHARS else f" #{change.pr}"
    author = escape(_cut(change.author, _AUTHOR_CHARS))
    return f"• {text} — {author} · `{change.short_sha}`"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _more(count: int) -> str:
    return f"…and {count:,} more change{'' if count == 1 else 's'}"


def changes_blocks(
    changeset: Changeset, *, pr_url: str = "", show: int = 20, max_blocks: int = 50
) -> list[Block]:
    """The thread message listing `changeset`'s changes (see the module's docstring)."""
    head = f"*{escape(_summary_line(changeset))}*"
    if changeset.note:
        head += f"\n_{escape(changeset.note)}_"
    blocks: list[Block] = [section(head)]
    if not changeset.changes:
        return blocks
    risk_blocks = _risk_blocks(changeset)
    # Room for the changes: what the summary and risks take, and the "…and N more" line.
    room = max(max_blocks - len(blocks) - len(risk_blocks) - 1, 1)
    listed, shown = _pack(changeset, pr_url, max(show, 1), room)
    blocks += listed
    rest = changeset.total - shown
    if rest > 0:
        blocks.append(context(_more(rest)))
    return blocks + risk_blocks


def _pack(changeset: Changeset, pr_url: str, show: int, room: int) -> tuple[list[Block], int]:
    """At most `show` changes, under their headings, in at most `room` sections; and how many
    changes that is. A heading starts a paragraph, not a section: fewer blocks to scroll."""
    chunks: list[list[str]] = [[]]
    size = 0
    shown = 0

    def add(line: str) -> bool:
        nonlocal size
        if chunks[-1] and size + 1 + len(line) > SECTION_CHARS:
            if len(chunks) == room:
                return False
            chunks.append([])
            size = 0
        size += len(line) + (1 if chunks[-1] else 0)
        chunks[-1].append(line)
        return True

    full = False
    for heading, changes in group(changeset):
        if shown >= show or full:
            break
        titled = heading != PLAIN_HEADING
        opening = ("\n" if chunks[-1] else "") + f"*{heading}*"
        full = not add(opening)
        for change in changes:
            if full or shown >= show:
                break
            full = not add(change_line(change, pr_url, titled))
            shown += 0 if full else 1
    # A heading whose first change did not fit is not left hanging at the end.
    if chunks[-1] and chunks[-1][-1].lstrip("\n").startswith("*"):
        chunks[-1].pop()
    return [section("\n".join(chunk)) for chunk in chunks if chunk], shown


def _risk_blocks(changeset: Changeset) -> list[Block]:
    """The risks in a section of their own (at most MAX_RISKS, the rest counted), each with the
    change that names it."""
    found = risks(changeset)
    if not found:
        return []
    lines = ["*Risks* ⚠️"]
    size = len(lines[0])
    listed = 0
    for risk, change in found[:MAX_RISKS]:
        line = f"• {escape(_cut(risk, 200))} (`{change.short_sha}`)"
        if size + 1 + len(line) > SECTION_CHARS:
            break
        lines.append(line)
        size += 1 + len(line)
        listed += 1
    blocks = [section("\n".join(lines))]
    if len(found) > listed:
        rest = len(found) - listed
        blocks.append(context(f"…and {rest} more risk{'' if rest == 1 else 's'}"))
    return blocks
