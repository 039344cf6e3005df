"""Text from outside, made safe to show: the one escaping rule.

Span and service names, status messages, exception texts, memory entries and
imported files come from systems we do not control. Shown as they are, they
could rewrite the operator's screen (ESC and CSI sequences), plant a link
(OSC 8), reorder what is read (bidi overrides), hide characters (zero-width),
style themselves (Rich markup such as ``[bold]`` or ``[link=...]``) or run on
for pages. Every place that shows such text passes it through one of:

- ``printable``: one line for a terminal. Control characters (C0, DEL, C1, so
  ESC and the OSC 8 introducer) become ``?`` (a tab, a space); format characters (bidi
  controls, zero-width spaces and joiners, the BOM), line separators and lone
  surrogates are shown as ``<U+202E>``; ``limit`` caps the length with ``…``.
- ``printable_lines``: the same, line by line, for a multi-line rendering.
- ``markup_safe``: ``printable`` with Rich/Textual markup escaped, for a place
  that takes a whole markup string. Do not glue it before a tag (a trailing
  backslash would escape the tag); the TUI builds ``rich.text.Text`` instead,
  which is never parsed as markup.
- ``markdown_safe``: ``printable`` with Markdown's punctuation escaped, for
  Markdown reports (``review --md``), table cells included; ``markdown_code``
  the same as an inline code span (a fence longer than any backtick run in it).

JSON output is data, not display: ``json.dumps`` escapes control characters
by itself and nothing here is applied to it.

Outside text kept for matching rather than shown (memory entries, signatures,
the fault classifier) has its control characters removed with the patterns
here, the only spelling of them: ``one_line`` makes any run of C0, DEL and C1
one space; ``message_template`` also masks ids and numbers, so recurrences
share a signature.
"""

from __future__ import annotations

import re
import unicodedata

ELLIPSIS = "…"
NAME_LIMIT = 160  # a name, an id, a table cell: one line on any terminal
TEXT_LIMIT = 4000  # a message, an attribute value, a summary: a few wrapped lines
REPLACEMENT = "?"

# Every control character (C0, DEL, C1), in runs: text kept on one line.
CONTROL_RUN = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
# The same but tab and newline, one at a time: the fault classifier has always
# read a message with its line breaks (a stack trace as it came); kept apart so
# what it matches stays exactly what it matched.
CONTROL_BUT_TAB_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Ids and numbers in a message, masked for signatures (most specific first).
_MASKS = [
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<id>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]
TEMPLATE_LIMIT = 300

# Tag-like brackets, as Rich and Textual parse them ([bold], [/], [link=...], [@click]).
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-zA-Z#/@][^[]*?\])")
# Markdown's inline punctuation (links, emphasis, code, HTML and entities), | for tables.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>|~&])")
# Letters that draw nothing (Hangul fillers), a favourite of look-alike names.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


def _shown(char: str) -> str:
    """How one character is shown: itself, ``?`` for a control, ``<U+XXXX>`` if invisible."""
    if char.isprintable() and char not in _BLANK_LETTERS:
        return char
    if char == "\t":
        return " "  # one cell, so columns and widths stay predictable
    category = unicodedata.category(char)
    if category == "Cc":
        return REPLACEMENT
    if category in ("Cf", "Zl", "Zp", "Cs") or char in _BLANK_LETTERS:
        return f"<U+{ord(char):04X}>"
    # Unassigned and private-use code points are printable enough; Zs is a space.
    return char


def _cap(pieces: list[str], limit: int | None) -> str:
    text = "".join(pieces)
    if limit is None or len(text) <= limit:
        return text
    out: list[str] = []
    room = max(0, limit - 1)
    for piece in pieces:
        if len(piece) > room:  # never cut a <U+...> in half
            break
        out.append(piece)
        room -= len(piece)
    return "".join(out) + ELLIPSIS


def printable(text: object, limit: int | None = None) -> str:
    """One line safe for a terminal: controls as ``?``, invisibles as ``<U+XXXX>``, capped."""
    text = "" if text is None else str(text)
    if limit is None and text.isprintable() and _BLANK_LETTERS.isdisjoint(text):
        return text  # the common case: nothing to do
    return _cap([_shown(c) for c in text], limit)


def printable_lines(text: str, limit: int | None = None) -> str:
    """``printable`` for each line of a multi-line rendering (newlines kept)."""
    return "\n".join(printable(line, limit) for line in text.split("\n"))


def markup_safe(text: object, limit: int | None = None) -> str:
    """``printable``, then Rich/Textual markup escaped: ``[bold]`` shows as ``[bold]``."""
    safe = printable(text, limit)

    def escape(match: re.Match[str]) -> str:
        backslashes, tag = match.groups()
        return f"{backslashes}{backslashes}\\{tag}"

    return _MARKUP_TAG.sub(escape, safe)


def markdown_safe(text: object, limit: int | None = None) -> str:
    """``printable``, then Markdown's punctuation escaped (safe in a table cell too)."""
    return _MARKDOWN.sub(r"\\\1", printable(text, limit))


def markdown_code(text: object, limit: int | None = None) -> str:
    """``printable`` as an inline code span: backslashes do not escape inside one, so the
    fence is one backtick longer than the longest run in the text (not for table cells)."""
    safe = printable(text, limit)
    longest = max((len(run) for run in re.findall(r"`+", safe)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if safe.startswith("`") or safe.endswith("`") else ""
    return f"{fence}{pad}{safe}{pad}{fence}"


def one_line(text: str) -> str:
    """Control characters (terminal escapes, line breaks) as one space, ends stripped."""
    return CONTROL_RUN.sub(" ", text).strip()


def message_template(message: str) -> str:
    """The message with ids and numbers masked, so recurrences share a signature.

    For signatures and matching only: people are shown the original message.
    Control characters (terminal escapes, line breaks) become one space.
    """
    message = one_line(message)
    for pattern, mask in _MASKS:
        message = pattern.sub(mask, message)
    return message[:TEMPLATE_LIMIT]
