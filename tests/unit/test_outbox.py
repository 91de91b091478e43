"""What one message of an outbox says: coalesced replies, one incident, or a summary."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.blocks.health import group_line, group_text, incident_summary
from bot.devtools.slack_stand_in import validate_blocks
from bot.domain.health.incidents import OUTAGE_CHECK, Incident, Trouble
from bot.domain.outbox import (
    GROUP_AT,
    MAX_BLOCKS,
    Entry,
    IncidentGroup,
    IncidentNews,
    OneIncident,
    Replies,
    Reply,
    consumed,
    decode,
    encode,
    next_send,
    summarize,
)


def reply(thread: str = "1.1", text: str = "hi", blocks: int = 1) -> Reply:
    return Reply(
        thread,
        tuple({"type": "section", "text": {"type": "mrkdwn", "text": text}} for _ in range(blocks)),
        text,
    )


def news(check: str, what: str = "open", environment: str = "production") -> IncidentNews:
    incident = Incident(
        id=f"id-{environment}-{check}",
        environment=environment,
        check=check,
        severity="critical",
        opened_at=100.0,
        problem="HTTP 500",
        thread_ts="9.9",
    )
    return IncidentNews(what, incident, "1.2.3", 130.0)


def test_replies_to_one_thread_become_one_message_in_order():
    entries: list[Entry] = [reply(text="a"), reply(text="b"), reply("2.2", "c"), reply(text="d")]
    send = next_send(entries)
    assert isinstance(send, Replies) and consumed(send) == 2
    assert send.text == "a\nb" and send.thread_ts == "1.1"
    assert validate_blocks(send.blocks) == []


def test_a_reply_with_buttons_or_block_ids_goes_alone():
    button = Reply("1.1", ({"type": "actions", "elements": []},), "ask")
    assert consumed(next_send([button, reply()])) == 1
    assert consumed(next_send([reply(), button])) == 1


def test_a_coalesced_reply_stays_within_slacks_block_limit():
    entries: list[Entry] = [reply(blocks=20) for _ in range(5)]
    send = next_send(entries)
    assert isinstance(send, Replies) and len(send.blocks) <= MAX_BLOCKS and consumed(send) == 2


def test_a_few_incident_changes_are_said_one_by_one_many_as_one_summary():
    few: list[Entry] = [news(f"c{n}") for n in range(GROUP_AT - 1)]
    assert isinstance(next_send(few), OneIncident) and consumed(next_send(few)) == 1
    many: list[Entry] = [news(f"c{n}") for n in range(312)] + [reply()]
    send = next_send(many)
    assert isinstance(send, IncidentGroup) and consumed(send) == 312
    assert send.thread_ts == "9.9"
    lines = summarize(send)
    assert [(line.what, line.count) for line in lines] == [("open", 312)]
    assert group_text(lines) == "312 checks failing in production"
    assert group_line(lines[0]).endswith("and 302 more")
    blocks = incident_summary(lines, ("U0ONCALL",), "g1", 312)
    assert validate_blocks(blocks) == []
    assert "Acknowledge all 312" in str(blocks)


def test_redraws_of_one_incident_in_a_row_are_said_by_the_last_and_never_grouped():
    redraws: list[Entry] = [news("a", "change") for _ in range(5)] + [news("b", "change")]
    send = next_send(redraws)
    assert isinstance(send, OneIncident) and consumed(send) == 5 and send.news is redraws[4]
    mixed: list[Entry] = [news(f"c{n}") for n in range(GROUP_AT)] + [news("a", "change")]
    mixed.insert(2, news("x", "change"))
    assert isinstance(next_send(mixed), OneIncident) and consumed(next_send(mixed)) == 1


def test_a_summary_counts_the_checks_of_each_outage():
    outages = []
    for environment, failing in (("production", 40), ("staging", 3)):
        incident = news("outage", "open", environment).incident
        incident.check, incident.failing_count = OUTAGE_CHECK, failing
        incident.failing = {
            f"svc-{n}": Trouble("critical", "HTTP 500", 1.0) for n in range(min(failing, 10))
        }
        outages.append(IncidentNews("open", incident, "1.2.3", 130.0))
    lines = summarize(IncidentGroup((*outages, news("a", "resolve"), news("b", "remind"))))
    assert [(line.what, line.environment, line.count) for line in lines] == [
        ("open", "production", 40),
        ("open", "staging", 3),
        ("remind", "production", 1),
        ("resolve", "production", 1),
    ]
    assert group_text(lines).startswith("40 checks failing in production")


def test_a_summary_names_each_kind_of_change_per_environment():
    group = IncidentGroup(
        (
            news("a", "resolve"),
            news("b", "open"),
            news("c", "open", "staging"),
            news("d", "remind"),
        )
    )
    assert [(line.what, line.environment) for line in summarize(group)] == [
        ("open", "production"),
        ("open", "staging"),
        ("remind", "production"),
        ("resolve", "production"),
    ]


@given(
    st.lists(
        st.one_of(
            st.builds(reply, st.sampled_from(["1.1", "2.2", ""]), st.text(max_size=20)),
            st.builds(
                news,
                st.sampled_from(["a", "b", "c"]),
                st.sampled_from(["open", "change", "resolve"]),
            ),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_every_entry_is_said_once_in_order(entries: list[Entry]):
    """Sending the head until the outbox is empty says every entry exactly once, in order."""
    said: list[Entry] = []
    left = [decode(encode(e)) for e in entries]
    assert left == entries  # what Redis holds reads back as it was put
    while left:
        send = next_send(left)
        n = consumed(send)
        assert n >= 1
        said += left[:n]
        left = left[n:]
    assert said == entries
