"""The one escaping rule (sre_space.safe_text), over a table of hostile strings.

Each row is text a hostile or broken system could send as a span, service or
status message, with what an operator must see instead. The markup and
Markdown rows are checked by the real parsers (Rich, Textual, markdown-it).
"""

from __future__ import annotations

import unicodedata

import pytest
from markdown_it import MarkdownIt
from rich.text import Text
from textual.content import Content

from sre_space.safe_text import (
    markdown_code,
    markdown_safe,
    markup_safe,
    printable,
    printable_lines,
)

OSC8 = "\x1b]8;;https://evil.example\x1b\\pay\x1b]8;;\x1b\\"

# (what arrives, what printable shows)
HOSTILE: list[tuple[str, str]] = [
    ("cart[bold]", "cart[bold]"),
    ("[link=https://evil.example]pay[/link]", "[link=https://evil.example]pay[/link]"),
    ("GET /items/[id]", "GET /items/[id]"),
    ("a[/]b", "a[/]b"),
    ("[@click=app.quit]x[/]", "[@click=app.quit]x[/]"),
    ("trailing\\", "trailing\\"),
    ("\x1b[2J\x1b[31mred", "?[2J?[31mred"),  # clear the screen, colour
    (OSC8, "?]8;;https://evil.example?\\pay?]8;;?\\"),  # a hyperlink labelled "pay"
    ("\x1b]0;owned\x07title", "?]0;owned?title"),  # set the window title
    ("\x9b31mC1 CSI", "?31mC1 CSI"),
    ("\x9d8;;x\x9c", "?8;;x?"),  # OSC 8 with C1 introducer and terminator
    ("line\nbreak\rback\x08space\x7f", "line?break?back?space?"),
    ("nul\x00bell\x07", "nul?bell?"),
    ("tab\there", "tab here"),
    ("pay\u202egnp.exe", "pay<U+202E>gnp.exe"),  # right-to-left override
    ("iso\u2066late\u2069", "iso<U+2066>late<U+2069>"),
    ("zero\u200bwidth", "zero<U+200B>width"),
    ("join\u200dner\u200c", "join<U+200D>ner<U+200C>"),
    ("\ufeffbom", "<U+FEFF>bom"),
    ("soft\u00adhyphen", "soft<U+00AD>hyphen"),
    ("para\u2029sep\u2028", "para<U+2029>sep<U+2028>"),
    ("blank\u3164name", "blank<U+3164>name"),
    ("lone \ud800 surrogate", "lone <U+D800> surrogate"),
    ("ünïcødé 名前 ok", "ünïcødé 名前 ok"),
    ("nbsp\u00a0kept", "nbsp\u00a0kept"),
    ("", ""),
]


@pytest.mark.parametrize(("hostile", "shown"), HOSTILE)
def test_printable_replaces_controls_and_shows_invisibles(hostile: str, shown: str) -> None:
    out = printable(hostile)
    assert out == shown
    # Nothing left for a terminal to act on, nothing invisible.
    assert not [c for c in out if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")]
    out.encode("utf-8")  # a lone surrogate would raise here


@pytest.mark.parametrize(("hostile", "shown"), HOSTILE)
def test_markup_safe_renders_literally_in_rich_and_textual(hostile: str, shown: str) -> None:
    escaped = markup_safe(hostile)
    rich_text = Text.from_markup(escaped)
    assert rich_text.plain == shown
    assert not rich_text.spans  # no style, no link applied
    content = Content.from_markup(escaped)
    assert content.plain == shown
    assert not content.spans


@pytest.mark.parametrize(("hostile", "shown"), HOSTILE)
def test_markdown_safe_renders_as_plain_text(hostile: str, shown: str) -> None:
    md = MarkdownIt("commonmark").enable("table")
    for doc in (markdown_safe(hostile), f"| a |\n|---|\n| {markdown_safe(hostile)} |"):
        tokens = [t for block in md.parse(doc) for t in (block.children or [block])]
        kinds = {t.type for t in tokens}
        assert not kinds & {"link_open", "em_open", "strong_open", "html_inline", "image"}, doc
        assert not kinds & {"code_inline", "s_open"}, doc
    cells = [
        t for t in md.parse(f"| a |\n|---|\n| {markdown_safe(hostile)} |") if t.type == "td_open"
    ]
    assert len(cells) == 1  # a | in the text does not split the cell


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven chars", 10, "eleven ch…"),
        ("ab\u202ecdef", 6, "ab…"),  # never half a <U+202E>
        ("ab\u202ecdef", 11, "ab<U+202E>…"),
        ("ab\u202ecdef", 12, "ab<U+202E>c…"),
        ("x" * 10_000, 80, "x" * 79 + "…"),
        ("", 1, ""),
    ],
)
def test_length_is_capped_with_an_ellipsis(text: str, limit: int, shown: str) -> None:
    assert printable(text, limit) == shown
    assert len(printable(text, limit)) <= limit


def test_markdown_escapes_links_emphasis_and_html() -> None:
    md = MarkdownIt("commonmark")
    html = md.render(markdown_safe("[x](https://evil.example) *em* <b>hi</b> &#x202E; `c`"))
    assert "<a " not in html and "<em>" not in html and "<b>" not in html
    assert "<code>" not in html and "&amp;#x202E;" in html


def test_lines_keep_their_breaks_and_lose_their_escapes() -> None:
    assert printable_lines("one\x1b[1m\ntwo\u202e") == "one?[1m\ntwo<U+202E>"
    assert printable(None) == "" and printable(42) == "42"


@pytest.mark.parametrize("text", ["plain", "a`b", "``x``", "`edge`", "[link=x]y[/link] *z*"])
def test_markdown_code_spans_hold_any_text_literally(text: str) -> None:
    html = MarkdownIt("commonmark").render(markdown_code(text))
    literal = printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert html.strip() == f"<p><code>{literal}</code></p>"
