"""What waits to be said in a channel, and how much of it one message says.

Slack takes about one message per second per channel. The bot says things in bursts (a
thousand checks failing in one tick, two hundred approvals in a minute), so what it says after
an ack goes into a channel's outbox and is sent from there, one message at a time, paced. A
run of replies to one thread becomes one reply; a run of incident changes becomes one summary
("312 checks failing in production: …") once it is GROUP_AT long. Plain data and rules here;
the outbox in Redis and its sender are adapters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bot.domain.health.incidents import Incident

GROUP_AT = 4  # incident changes waiting together that are said in one summary message
GROUP_MAX = 1000  # the most incident changes one summary message stands for
MERGE_MAX = 20  # the most replies one coalesced reply stands for
MAX_BLOCKS = 50  # Slack's limit for one message
MAX_TEXT = 3000  # of a coalesced reply's fallback text (notifications show far less)

# What happened to an incident, in the words `outage_step` and the Acknowledge click use.
# "change" (checks joined or recovered) only redraws its message.
NEWS = ("open", "escalate", "remind", "resolve", "acknowledged", "change")
Block = dict[str, Any]


@dataclass(frozen=True)
class Reply:
    """A message for the thread `thread_ts` of the channel ("" for the channel itself)."""

    thread_ts: str
    blocks: tuple[Block, ...]
    text: str

    @property
    def mergeable(self) -> bool:
        """Whether it can share a message with others: no buttons, no block IDs (a message's
        block IDs must differ, and a button's answer names its message)."""
        return all(b.get("type") != "actions" and "block_id" not in b for b in self.blocks)


@dataclass(frozen=True)
class IncidentNews:
    """One change of an incident, as the monitor decided it: `what` is one of NEWS. The
    incident is as it was then (what the message shows must not be a later state's)."""

    what: str
    incident: Incident
    deployed_version: str
    at: float
    by: str = ""  # who acknowledged it, for "acknowledged"


Entry = Reply | IncidentNews


def encode(entry: Entry) -> bytes:
    if isinstance(entry, Reply):
        return orjson.dumps(
            {"k": "reply", "t": entry.thread_ts, "b": list(entry.blocks), "x": entry.text}
        )
    return orjson.dumps(
        {
            "k": "incident",
            "w": entry.what,
            "i": entry.incident.to_dict(),
            "v": entry.deployed_version,
            "at": entry.at,
            "by": entry.by,
        }
    )


def decode(raw: bytes | str) -> Entry:
    """The entry `encode` wrote; raises ValueError for anything else."""
    try:
        data = orjson.loads(raw)
        if data["k"] == "reply":
            return Reply(str(data["t"]), tuple(data["b"]), str(data["x"]))
        if data["k"] == "incident" and data["w"] in NEWS:
            return IncidentNews(
                data["w"],
                Incident.from_dict(data["i"]),
                str(data["v"]),
                float(data["at"]),
                data["by"],
            )
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not an outbox entry: {exc}") from None
    raise ValueError("not an outbox entry: unknown kind")


@dataclass(frozen=True)
class Replies:
    """One message for several replies to one thread, in the order they were made."""

    entries: tuple[Reply, ...]

    @property
    def thread_ts(self) -> str:
        return self.entries[0].thread_ts

    @property
    def blocks(self) -> list[Block]:
        return [block for entry in self.entries for block in entry.blocks]

    @property
    def text(self) -> str:
        return "\n".join(entry.text for entry in self.entries)[:MAX_TEXT]


@dataclass(frozen=True)
class OneIncident:
    """One incident change; `skipped` changes of the same incident before it, each only a
    redraw that it makes stale, are said by it too."""

    news: IncidentNews
    skipped: int = 0


@dataclass(frozen=True)
class IncidentGroup:
    """Many incident changes at once: one summary message instead of one message each."""

    news: tuple[IncidentNews, ...]

    @property
    def thread_ts(self) -> str:
        """The thread they all belong in, or "" (the channel) if they do not share one."""
        threads = {n.incident.thread_ts for n in self.news}
        return threads.pop() if len(threads) == 1 else ""


Send = Replies | OneIncident | IncidentGroup


def consumed(send: Send) -> int:
    """How many entries from the head of the outbox `send` says."""
    if isinstance(send, Replies):
        return len(send.entries)
    if isinstance(send, OneIncident):
        return 1 + send.skipped
    return len(send.news)


def next_send(entries: Sequence[Entry], group_at: int = GROUP_AT) -> Send:
    """The next message for the outbox whose oldest entries are `entries` (at least one)."""
    head = entries[0]
    if isinstance(head, Reply):
        taken = [head]
        if head.mergeable:
            blocks = len(head.blocks)
            for entry in entries[1:MERGE_MAX]:
                if (
                    not isinstance(entry, Reply)
                    or entry.thread_ts != head.thread_ts
                    or not entry.mergeable
                    or blocks + len(entry.blocks) > MAX_BLOCKS
                ):
                    break
                taken.append(entry)
                blocks += len(entry.blocks)
        return Replies(tuple(taken))
    if head.what == "change":
        # Redraws of one incident in a row: the news after them (every news after its
        # opening redraws the message) says them all.
        latest, skipped = head, 0
        for entry in entries[1:]:
            if not (
                isinstance(entry, IncidentNews)
                and entry.incident.id == head.incident.id
                and entry.what != "open"
            ):
                break
            latest, skipped = entry, skipped + 1
            if entry.what != "change":
                break
        return OneIncident(latest, skipped)
    run: list[IncidentNews] = []
    for entry in entries[:GROUP_MAX]:
        if not isinstance(entry, IncidentNews) or entry.what == "change":
            break
        run.append(entry)
    if len(run) >= group_at:
        return IncidentGroup(tuple(run))
    return OneIncident(head)


@dataclass(frozen=True)
class GroupLine:
    """One line of a summary: `count` checks of `environment` to which `what` happened."""

    what: str
    environment: str
    count: int
    checks: tuple[str, ...]  # the first few, by name
    critical: bool


def summarize(group: IncidentGroup, names: int = 10) -> list[GroupLine]:
    """The lines of a group's summary, news kinds in NEWS order, environments by name."""
    found: dict[tuple[str, str], dict[str, IncidentNews]] = {}
    for news in group.news:  # an incident's latest news of each kind stands for it
        found.setdefault((news.what, news.incident.environment), {})[news.incident.id] = news
    lines = []
    for (what, environment), items in sorted(
        found.items(), key=lambda kv: (NEWS.index(kv[0][0]), kv[0][1])
    ):
        count, checks = 0, set()
        for news in items.values():
            many, named = news.incident.checks
            count += many
            checks.update(named)
        lines.append(
            GroupLine(
                what,
                environment,
                count,
                tuple(sorted(checks)[:names]),
                any(n.incident.critical for n in items.values()),
            )
        )
    return lines


@dataclass(frozen=True)
class Place:
    """Where the message about an incident is: its own (`group` "") or a summary's."""

    channel: str
    ts: str
    group: str = ""


@dataclass(frozen=True)
class Group:
    """A summary message, and the incidents it stands for (environment, check, incident)."""

    channel: str
    ts: str
    members: tuple[tuple[str, str, str], ...]
