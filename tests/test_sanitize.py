"""`sanitize` makes terminal controls, escape sequences and bidi overrides inert."""

from __future__ import annotations

import unicodedata

from hypothesis import assume, given
from hypothesis import strategies as st

from chatapp.sanitize import BIDI_CONTROLS, REPLACEMENT, is_safe, sanitize


def is_forbidden(char: str) -> bool:
    code = ord(char)
    if char in "\n\t":
        return False
    return (
        unicodedata.category(char) in ("Cc", "Cs") or code in BIDI_CONTROLS or 0x80 <= code <= 0x9F
    )


HOSTILE_CHARS = st.sampled_from(
    [
        "\x1b",
        "\x9b",
        "\x9d",
        "\x90",
        "\x00",
        "\x07",
        "\x08",
        "\r",
        "\x7f",
        "\u202e",
        "\u2066",
        "\ud800",
        "\n",
        "\t",
    ]
)
ANY_TEXT = st.text(alphabet=st.one_of(st.characters(), HOSTILE_CHARS))
PLAIN_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cc", "Cs"),
        blacklist_characters=[chr(c) for c in BIDI_CONTROLS],
    )
    | st.sampled_from("\n\t")
)


@given(ANY_TEXT)
def test_output_never_holds_a_control(text: str) -> None:
    cleaned = sanitize(text)
    assert not any(is_forbidden(char) for char in cleaned)
    assert is_safe(cleaned)


@given(ANY_TEXT)
def test_idempotent(text: str) -> None:
    once = sanitize(text)
    assert sanitize(once) == once


@given(PLAIN_TEXT)
def test_plain_text_unchanged(text: str) -> None:
    assert sanitize(text) == text
    assert sanitize(text) is text  # no copy in the common case


@given(ANY_TEXT, ANY_TEXT)
def test_streamed_deltas_match_the_whole(a: str, b: str) -> None:
    """Sanitising a stream delta by delta gives the same text as sanitising it whole."""
    assume(not (a.endswith("\r") and b.startswith("\n")))
    assert sanitize(a) + sanitize(b) == sanitize(a + b)


def test_escape_sequences_become_visible_and_inert() -> None:
    assert sanitize("\x1b[31mred\x1b[0m") == "␛[31mred␛[0m"
    # OSC 52 (write the clipboard), terminated by BEL and by ST.
    assert sanitize("\x1b]52;c;aGVsbG8=\x07") == "␛]52;c;aGVsbG8=␇"
    assert sanitize("\x1b]52;c;aGVsbG8=\x1b\\") == "␛]52;c;aGVsbG8=␛\\"
    # OSC 8 hyperlink.
    assert sanitize("\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\") == (
        "␛]8;;http://evil␛\\click␛]8;;␛\\"
    )
    # DCS, and 8-bit CSI/OSC introducers (C1).
    assert sanitize("\x1bP1$r\x1b\\") == "␛P1$r␛\\"
    assert sanitize("\x9b31m\x9d0;x\x9c") == f"{REPLACEMENT}31m{REPLACEMENT}0;x{REPLACEMENT}"


def test_c0_del_nul_and_newlines() -> None:
    assert sanitize("a\x00b") == "a␀b"
    assert sanitize("bell\x07 back\x08") == "bell␇ back␈"
    assert sanitize("x\x7fy") == "x␡y"
    assert sanitize("keep\n\tthese") == "keep\n\tthese"
    assert sanitize("windows\r\nline") == "windows\nline"
    assert sanitize("overwrite\rme") == "overwrite␍me"


def test_bidi_overrides_and_isolates() -> None:
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        assert sanitize(f"a{chr(code)}b") == f"a{REPLACEMENT}b"


def test_markup_is_left_as_text() -> None:
    """Markup is not interpreted anywhere text reaches the screen, so it stays as typed."""
    assert sanitize("[bold red]markup[/]") == "[bold red]markup[/]"


def test_unicode_is_kept() -> None:
    text = "Café naïve 日本語 🙂 עברית العربية"
    assert sanitize(text) == text
