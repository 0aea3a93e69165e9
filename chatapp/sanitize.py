"""Make untrusted text (model output, pasted input) inert before it reaches the screen.

A model can emit anything, including bytes that a terminal would act on: ESC starting
CSI/OSC/DCS sequences (colours, cursor moves, OSC 52 clipboard writes, OSC 8 links),
C1 controls (8-bit CSI is U+009B), BEL, backspace, carriage return, NUL, and bidi
overrides that reorder what the reader sees ("Trojan Source").

`sanitize` replaces every such character with a visible, inert stand-in:

- C0 controls other than ``\\n`` and ``\\t`` -> their control picture, U+2400 + code
  (ESC -> "␛", NUL -> "␀", BEL -> "␇", CR -> "␍"); a CR LF pair becomes a plain LF.
- DEL -> "␡" (U+2421).
- C1 controls (U+0080-U+009F), bidi embeddings/overrides (U+202A-U+202E), bidi isolates
  (U+2066-U+2069) and lone surrogates -> "�" (U+FFFD).

Without its ESC (or 8-bit introducer) no escape sequence can start, so the rest of a
sequence is left as harmless visible text, e.g. ``"\\x1b[31m"`` -> ``"␛[31m"``.

The mapping works character by character (apart from CR LF), so sanitising the deltas
of a stream one by one gives the same text as sanitising the whole: streamed tokens can
be cleaned as they arrive. The function is idempotent and leaves ordinary text alone.
It does not escape Rich/Textual markup: callers put text on screen as `Text`/`Content`
or Markdown, never as a markup string.
"""

from __future__ import annotations

import re

REPLACEMENT = "\ufffd"

BIDI_CONTROLS = frozenset([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in range(0x20):
        if chr(code) not in "\n\t":
            table[code] = chr(0x2400 + code)
    table[0x7F] = "\u2421"
    for code in range(0x80, 0xA0):
        table[code] = REPLACEMENT
    for code in BIDI_CONTROLS:
        table[code] = REPLACEMENT
    return table


_TABLE = _build_table()
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATES = re.compile("[\ud800-\udfff]")


def sanitize(text: str) -> str:
    """Return `text` with every terminal control and bidi override made visible and inert."""
    if not _UNSAFE.search(text):
        return text  # the common case: nothing to do, no copy
    text = text.replace("\r\n", "\n").translate(_TABLE)
    return _SURROGATES.sub(REPLACEMENT, text)


def is_safe(text: str) -> bool:
    """True when `text` holds nothing that `sanitize` would change."""
    return _UNSAFE.search(text) is None
