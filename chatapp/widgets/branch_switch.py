"""“‹ 2/3 ›” at the top right of a message that has alternatives (edits, regenerations).

Clicking the left half shows the previous version, the right half the next; the screen
does the switching (`BranchSwitch.Moved`), and the keys [ and ] do the same on a focused
message.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import Static


class BranchSwitch(Static):
    DEFAULT_CSS = """
    BranchSwitch {
        dock: right;
        width: auto;
        height: 1;
        padding: 0 0 0 1;
        color: $text-muted;
    }
    BranchSwitch:hover {
        color: $text;
        text-style: bold;
    }
    """

    @dataclass
    class Moved(Message):
        """Show the version ``step`` places away from ``message_id``."""

        message_id: int
        step: int

    def __init__(self, message_id: int, position: int, count: int) -> None:
        super().__init__(classes="branch-switch")
        self.message_id = message_id
        self.position = position
        self.count = count
        self.tooltip = "previous / next version ([ and ] on a focused message)"

    def render(self) -> Text:
        left = "‹" if self.position > 1 else " "
        right = "›" if self.position < self.count else " "
        return Text(f"{left} {self.position}/{self.count} {right}")

    def on_click(self, event: events.Click) -> None:
        event.stop()
        step = -1 if event.x < self.size.width / 2 else 1
        self.post_message(self.Moved(self.message_id, step))
