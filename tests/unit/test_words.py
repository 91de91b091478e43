"""The one word splitter of `/release` and `/flag`: shell quoting, curly quotes from phones,
apostrophes, and a clear answer for a quote left open."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.commands.flag import ChangeFlag, parse_flag_command
from bot.commands.release import CommandError, RcCommand, parse_release_command
from bot.commands.words import UnclosedQuote, split_words


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", []),
        ("   ", []),
        ("rc --dry-run", ["rc", "--dry-run"]),
        ("  rc\t --dry-run \n", ["rc", "--dry-run"]),
        ('rc --description "new infra"', ["rc", "--description", "new infra"]),
        ("rc --description 'new infra'", ["rc", "--description", "new infra"]),
        ("rc --description \u201cnew infra\u201d", ["rc", "--description", "new infra"]),  # “…”
        ("rc --description \u201enew infra\u201c", ["rc", "--description", "new infra"]),  # „…“
        ("rc --description \u201dnew infra\u201d", ["rc", "--description", "new infra"]),  # ”…”
        ("rc --description \u00abnew infra\u00bb", ["rc", "--description", "new infra"]),  # «…»
        ("rc --description \u2018new infra\u2019", ["rc", "--description", "new infra"]),
        ('rc --description="new infra"', ["rc", "--description=new infra"]),
        ("rc --description='new infra'", ["rc", "--description=new infra"]),
        ('a "" b', ["a", "", "b"]),
        ('say "a \\"quoted\\" word"', ["say", 'a "quoted" word']),
        ('say \u201ca "quoted" word\u201d', ["say", 'a "quoted" word']),  # literal inside curly
        ("back\\ slash", ["back slash"]),
        ("trailing\\", ["trailing\\"]),
        # Apostrophes are letters of a word, straight or curly, also inside a single-quoted part.
        ("rc --description don't", ["rc", "--description", "don't"]),
        ("rc --description don\u2019t", ["rc", "--description", "don\u2019t"]),
        ("rc --description 'it's done'", ["rc", "--description", "it's done"]),
        ("rc --description \u2018it\u2019s done\u2019", ["rc", "--description", "it\u2019s done"]),
        (
            "rc --description \u201cit's \u2018done\u2019\u201d",
            ["rc", "--description", "it's \u2018done\u2019"],
        ),
        ("a\u00a0b", ["a", "b"]),  # a no-break space, as pasted text has
    ],
)
def test_words(text: str, words: list[str]):
    assert split_words(text) == words


@pytest.mark.parametrize(
    ("text", "quote"),
    [
        ('rc --description "unclosed', '"'),
        ("rc --description \u201cunclosed", "\u201c"),
        ("rc --description 'unclosed", "'"),
        ("rc --description \u2018it\u2019s", "\u2018"),
        ("rc --description \u00abnot closed\u00ab", "\u00ab"),
    ],
)
def test_an_unclosed_quote_is_named(text: str, quote: str):
    with pytest.raises(UnclosedQuote) as info:
        split_words(text)
    assert info.value.quote == quote
    assert f"the {quote} before `" in str(info.value)


def test_the_unclosed_part_is_shown_short_on_one_line():
    with pytest.raises(UnclosedQuote) as info:
        split_words('rc --description "first line\nsecond `line` ' + "x" * 40)
    assert "`first line second 'line' xxxxx…`)" in str(info.value)


# Straight double quotes and backslashes are a shell's: the same words as shlex, or both refuse.
@given(st.text(alphabet='ab "\\\t', max_size=30))
def test_double_quotes_and_backslashes_split_as_in_a_shell(text: str):
    if text.endswith("\\") and (len(text) - len(text.rstrip("\\"))) % 2:
        return  # a lone backslash at the end: kept here, refused by shlex
    try:
        expected = shlex.split(text)
    except ValueError:
        with pytest.raises(UnclosedQuote):
            split_words(text)
        return
    assert split_words(text) == expected


QUOTINGS = [
    '"new infra"',
    "'new infra'",
    "\u201cnew infra\u201d",
    "\u201enew infra\u201c",
    "\u00abnew infra\u00bb",
    "\u2018new infra\u2019",
]


@pytest.mark.parametrize("quoted", QUOTINGS)
def test_both_commands_accept_the_same_quoting(quoted: str):
    release = parse_release_command(f"rc --description {quoted}")
    flag = parse_flag_command(f"create dark_mode --description {quoted}")
    assert release == RcCommand(description="new infra")
    assert isinstance(flag, ChangeFlag) and flag.change.description == "new infra"


@pytest.mark.parametrize("quoted", ["\u201cnew infra", "'new infra", '"new infra'])
def test_both_commands_answer_an_unclosed_quote(quoted: str):
    for parse, command in ((parse_release_command, "rc"), (parse_flag_command, "create x")):
        with pytest.raises(CommandError, match="A quote is not closed") as info:
            parse(f"{command} --description {quoted}")
        assert "--description" in str(info.value)  # and how to write it
