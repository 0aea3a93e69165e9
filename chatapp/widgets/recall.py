"""Under a reply: "recalled N earlier messages", and, expanded, which ones with scores.

Each recalled row can be pinned (always in the context) or excluded (never) with p / x
when focused, or by clicking its [pin] / [exclude] marks. The widget only says what was
asked (`RecallSummary.Mark`); the screen stores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

from chatapp.sanitize import sanitize

SNIPPET = 90


@dataclass(frozen=True)
class RecallEntry:
    """One row: what was recalled, its score, and a snippet of it."""

    kind: str  # "recalled" | "pinned" | "chunk"
    score: float | None
    role: str
    snippet: str
    message_id: int | None = None
    chunk_id: int | None = None
    mode: str | None = None  # "pinned" | "excluded" | None: what the user chose since


def summary_text(entries: list[RecallEntry], expanded: bool) -> str:
    messages = sum(e.kind != "chunk" for e in entries)
    chunks = len(entries) - messages
    parts = []
    if messages:
        parts.append(f"recalled {messages} earlier message{'s' * (messages != 1)}")
    if chunks:
        parts.append(f"{chunks} file excerpt{'s' * (chunks != 1)}")
    return f"{'▾' if expanded else '▸'} " + " · ".join(parts)


class RecallRow(Static, can_focus=True):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "mark('pinned')", "Pin (always in context)", id="recall.pin"),
        Binding("x", "mark('excluded')", "Exclude from context", id="recall.exclude"),
        Binding("u", "mark('')", "Clear pin/exclusion", id="recall.clear"),
    ]

    def __init__(self, entry: RecallEntry) -> None:
        super().__init__(classes="recall-row")
        self.entry = entry

    def render_text(self) -> Text:
        e = self.entry
        text = Text()
        score = f"{e.score:.2f}" if e.score is not None else " -- "
        text.append(f"{score} ", style="bold")
        label = "file" if e.kind == "chunk" else e.role
        if e.kind == "pinned":
            label += " · pinned"
        text.append(f"{label}: ", style="italic")
        snippet = " ".join(sanitize(e.snippet).split())
        text.append(snippet[:SNIPPET] + ("…" if len(snippet) > SNIPPET else ""))
        if e.message_id is not None:
            text.append("  ")
            text.append("[pin]", style="reverse" if e.mode == "pinned" else "underline")
            text.append(" ")
            text.append("[exclude]", style="reverse" if e.mode == "excluded" else "underline")
        return text

    def on_mount(self) -> None:
        self.update(self.render_text())

    def set_mode(self, mode: str | None) -> None:
        self.entry = RecallEntry(**{**self.entry.__dict__, "mode": mode})
        self.update(self.render_text())

    def action_mark(self, mode: str) -> None:
        if self.entry.message_id is None:
            self.notify("Only messages can be pinned or excluded.", markup=False)
            return
        chosen = mode or None
        if chosen == self.entry.mode:
            chosen = None  # pressing it again clears it
        self.post_message(RecallSummary.Mark(self.entry.message_id, chosen, self))

    def on_click(self, event: events.Click) -> None:
        # The marks sit at the end of the line: the last 17 cells are "[pin] [exclude]".
        width = len(self.render_text().plain)
        if self.entry.message_id is None or event.x < width - 15:
            return
        event.stop()
        self.action_mark("pinned" if event.x < width - 9 else "excluded")


class RecallSummary(Vertical):
    """The collapsible recall line under a reply."""

    DEFAULT_CSS = """
    RecallSummary { height: auto; color: $text-muted; }
    RecallSummary .recall-head { height: 1; }
    RecallSummary .recall-row { height: auto; padding-left: 2; }
    RecallSummary .recall-row:focus { background: $primary 15%; }
    """

    class Mark(Message):
        """The user pinned, excluded or cleared (`mode` None) a message."""

        def __init__(self, message_id: int, mode: str | None, row: RecallRow) -> None:
            super().__init__()
            self.message_id = message_id
            self.mode = mode
            self.row = row

    def __init__(self, entries: list[RecallEntry], *, expanded: bool = False) -> None:
        super().__init__(classes="recall")
        self.entries = entries
        self.expanded = expanded

    def compose(self) -> ComposeResult:
        yield Static(summary_text(self.entries, self.expanded), classes="recall-head")
        for entry in self.entries:
            row = RecallRow(entry)
            row.display = self.expanded
            yield row

    def toggle(self) -> None:
        self.expanded = not self.expanded
        self.query_one(".recall-head", Static).update(summary_text(self.entries, self.expanded))
        for row in self.query(RecallRow):
            row.display = self.expanded

    def on_click(self, event: events.Click) -> None:
        if event.widget is not None and event.widget.has_class("recall-head"):
            event.stop()
            self.toggle()
