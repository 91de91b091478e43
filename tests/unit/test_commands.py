import pytest

from bot.commands.release import (
    CancelCommand,
    CommandError,
    HelpCommand,
    RcCommand,
    StatusCommand,
    parse_release_command,
)


def test_rc_with_all_options():
    cmd = parse_release_command(
        'rc --description "Infrastructure changes" --issue pw-bua --bump patch --dry-run'
    )
    assert cmd == RcCommand(
        description="Infrastructure changes", issue="pw-bua", bump="patch", dry_run=True
    )


def test_rc_plain_and_equals_form():
    assert parse_release_command("rc") == RcCommand()
    assert parse_release_command("rc --description=fixes").description == "fixes"


def test_curly_quotes_from_phones_work():
    assert (
        parse_release_command("rc --description \u201cnew infra\u201d").description == "new infra"
    )


@pytest.mark.parametrize("text", ["", "help", "  help  ", "--help"])
def test_help(text):
    assert parse_release_command(text) == HelpCommand()


def test_status():
    assert parse_release_command("status") == StatusCommand()
    assert parse_release_command("STATUS") == StatusCommand()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("deploy prod", "don't know `/release deploy`"),
        ("rc --force", "no option `--force`"),
        ("rc --description", "needs a value"),
        ("rc --description --dry-run", "needs a value"),
        ("rc --bump huge", "--bump major"),
        ("rc --issue 'a b'", "not an issue ID"),
        ('rc --description "unclosed', "quote is not closed"),
        ("rc stray", "Unexpected `stray`"),
        ("rc --dry-run --dry-run", "given twice"),
        ("rc --dry-run=yes", "takes no value"),
        ("status now", "takes no arguments"),
    ],
)
def test_bad_input_names_the_problem(text, fragment):
    with pytest.raises(CommandError) as info:
        parse_release_command(text)
    assert fragment in str(info.value)


def test_description_over_1000_characters_is_refused():
    parse_release_command(f"rc --description {'x' * 1000}")
    with pytest.raises(CommandError, match="1,001 characters"):
        parse_release_command(f"rc --description {'x' * 1001}")


@pytest.mark.parametrize(
    "text",
    ['rc --issue "pw-bua\n"', 'audit "v0.15.0-rc.1\n"', 'rollback --to "v0.14.1\n" --reason x'],
)
def test_ids_and_versions_take_no_trailing_newline(text):
    """`$` matches before a trailing newline: an id that ends with one slipped through."""
    with pytest.raises(CommandError):
        parse_release_command(text)


def test_cancel_takes_an_optional_version_and_a_reason():
    assert parse_release_command('cancel --reason "wrong branch"') == CancelCommand(
        reason="wrong branch"
    )
    assert parse_release_command("cancel v0.15.0-rc.2 --reason x") == CancelCommand(
        reason="x", version="v0.15.0-rc.2"
    )
    for text, words in (
        ("cancel", "needs a reason"),
        ("cancel v0.15.0-rc.2", "needs a reason"),
        ('cancel "v1 two" --reason x', "is not a version"),
        ("cancel --reason x --force", "--force"),
    ):
        with pytest.raises(CommandError, match=words):
            parse_release_command(text)
