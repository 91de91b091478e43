"""Slash-command text into words, for `/release` and `/flag` alike.

Words are separated by whitespace; a quoted part keeps its spaces. Straight quotes work as in a
shell (a backslash escapes the next character outside quotes, and `"` or `\\` inside double
quotes). Phones turn quotes curly, so curly ones work too: “…”, „…“, ”…”, «…», »…« and the
single ones (U+2018, U+2019), taken literally inside (no escapes). A single quote inside a word
is an apostrophe, not a quote: `don't` is a word as typed (curly too), and so is `'it's done'`
once opened.
"""

from __future__ import annotations

# A double quote that opens, and the characters that close it.
_DOUBLE: dict[str, str] = {
    '"': '"',
    "\u201c": "\u201d\u201c",
    "\u201e": "\u201c\u201d",
    "\u201d": "\u201d",
    "\u00ab": "\u00bb",
    "\u00bb": "\u00ab",
}
_SINGLE = "'\u2018\u2019"


class UnclosedQuote(ValueError):
    """A quote was opened and never closed; the message names it and where it opened."""

    def __init__(self, quote: str, after: str) -> None:
        # On one line and without backticks, so it shows inside the answer's code span.
        shown = " ".join(after.replace("`", "'").split())
        shown = shown if len(shown) <= 30 else shown[:30] + "…"
        super().__init__(f"A quote is not closed (the {quote} before `{shown}`).")
        self.quote = quote


def split_words(text: str) -> list[str]:
    """The words of `text`; raises UnclosedQuote."""
    words: list[str] = []
    word: list[str] = []
    in_word = False  # a word has started, even if it is empty so far (`""`)
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
        elif char == "\\":
            # As in a shell; a backslash at the very end is kept rather than refused.
            word.append(text[i + 1] if i + 1 < n else char)
            in_word = True
            i += 2
        elif char in _DOUBLE:
            i = _double(text, i, word)
            in_word = True
        elif char in _SINGLE and not (i > 0 and text[i - 1].isalnum()):
            i = _single(text, i, word)
            in_word = True
        else:
            word.append(char)
            in_word = True
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def _double(text: str, start: int, word: list[str]) -> int:
    """Append the quoted part opened at `start`; returns the index after its closing quote."""
    opener, closers = text[start], _DOUBLE[text[start]]
    i = start + 1
    while i < len(text):
        char = text[i]
        if char in closers:
            return i + 1
        if opener == '"' and char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            word.append(text[i + 1])
            i += 2
            continue
        word.append(char)
        i += 1
    raise UnclosedQuote(opener, text[start + 1 :])


def _single(text: str, start: int, word: list[str]) -> int:
    """Like _double for a single quote: it closes where no letter or digit follows, so an
    apostrophe inside (`'it's done'`) stays part of the text."""
    i = start + 1
    while i < len(text):
        char = text[i]
        if char in _SINGLE and not (i + 1 < len(text) and text[i + 1].isalnum()):
            return i + 1
        word.append(char)
        i += 1
    raise UnclosedQuote(text[start], text[start + 1 :])
