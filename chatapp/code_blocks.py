"""Copying the code blocks of replies: click one, `/copy [N]`, or the palette.

Code blocks are the `MarkdownFence`s inside the assistant's messages. Copying goes
through `App.copy_to_clipboard` (OSC 52, which most terminals honour) and says so with
a notification naming what was copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

from textual.app import App
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets.markdown import MarkdownFence

from chatapp.palette import PaletteEntry

__all__ = ["code_blocks", "copy_block", "fence_at", "palette_entries", "slash_copy"]


def code_blocks(screen: Screen) -> list[MarkdownFence]:
    """The code blocks on `screen`, oldest first."""
    return list(screen.query(MarkdownFence))


def fence_at(widget: Widget | None) -> MarkdownFence | None:
    """The code block `widget` is part of (what a click landed on), if any."""
    node: DOMNode | None = widget
    while node is not None and not isinstance(node, Screen):
        if isinstance(node, MarkdownFence):
            return node
        node = node.parent
    return None


def _describe(fence: MarkdownFence) -> str:
    lines = fence.code.rstrip("\n").count("\n") + 1
    language = f"{fence.lexer} " if fence.lexer else ""
    return f"{lines} line{'' if lines == 1 else 's'} of {language}code"


def copy_block(app: App, fence: MarkdownFence) -> None:
    app.copy_to_clipboard(fence.code.rstrip("\n"))
    app.notify(f"Copied {_describe(fence)} to the clipboard.", markup=False, timeout=3)


def slash_copy(screen: Screen, argument: str) -> None:
    """/copy: the last code block; /copy N: the Nth from the end (1 is the last)."""
    blocks = code_blocks(screen)
    if not blocks:
        screen.notify("There is no code block to copy yet.", markup=False)
        return
    try:
        back = int(argument) if argument.strip() else 1
    except ValueError:
        back = 0
    if not 1 <= back <= len(blocks):
        screen.notify(
            f"/copy N takes a number from 1 (the last code block) to {len(blocks)}.",
            severity="warning",
            markup=False,
        )
        return
    copy_block(screen.app, blocks[-back])


def palette_entries(screen: Screen) -> Iterator[PaletteEntry]:
    """'Copy code block' for the last one, and a searchable entry for each of them."""
    blocks = code_blocks(screen)
    for back, fence in enumerate(reversed(blocks), start=1):
        first = next((line.strip() for line in fence.code.splitlines() if line.strip()), "")
        title = "Copy last code block" if back == 1 else f"Copy code block -{back}"
        help_text = f"{_describe(fence)}: {first[:60]}"
        yield PaletteEntry(title, help_text, partial(copy_block, screen.app, fence), back == 1)
