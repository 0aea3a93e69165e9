"""The multi-line prompt: Enter sends, Ctrl+J (or Shift+Enter) adds a newline.

Terminals without the kitty keyboard protocol send the same bytes for Enter and
Shift+Enter, so Ctrl+J (a bare line feed) is the newline key that always works.
Up on an empty input recalls earlier messages; Down walks forward again.

Pasting is cheap for text with ordinary lines. What freezes a `TextArea` is soft
wrapping a giant line (a megabyte on one line costs seconds per keystroke), so a paste
with a very long line turns soft wrap off until the input is cleared, and a paste over
`MAX_PASTE_CHARS` is cut there with a notification.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widgets import TextArea

from chatapp import completion

MAX_PASTE_CHARS = 1_000_000
LONG_LINE_CHARS = 2_000


class PromptInput(TextArea):
    """A `TextArea` that posts `PromptInput.Submitted` on Enter."""

    NEWLINE_KEYS = frozenset({"ctrl+j", "shift+enter"})
    """Handled in `_on_key`, not as bindings: a binding runs only once the key has
    bubbled up to the app, after keys typed just behind it (a fast typist, or a terminal
    multiplexer sending a burst) were already inserted, so the newline landed late."""

    @dataclass
    class Submitted(Message):
        """The user pressed Enter on a non-blank prompt. The input is not cleared:
        the receiver calls `commit()` when it accepts the text."""

        prompt_input: PromptInput
        text: str

        @property
        def control(self) -> PromptInput:
            return self.prompt_input

    def __init__(self, *, id: str | None = None, placeholder: str = "") -> None:
        super().__init__(
            id=id,
            soft_wrap=True,
            tab_behavior="focus",
            show_line_numbers=False,
            placeholder=placeholder,
        )
        self.sent_history: list[str] = []
        self._history_index: int | None = None

    # --- keys --------------------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        if self.read_only:
            return
        if event.key == "enter":
            self._consume(event)
            if self.text.strip():
                self.post_message(self.Submitted(self, self.text))
        elif event.key in self.NEWLINE_KEYS:
            self._consume(event)
            self.action_newline()
        elif event.key == "up" and self._may_recall(backwards=True):
            self._consume(event)
            self._recall(-1)
        elif event.key == "down" and self._may_recall(backwards=False):
            self._consume(event)
            self._recall(+1)
        elif event.key == "tab" and self.suggestion:
            self._consume(event)
            self.insert(self.suggestion)
        # Anything else falls through to TextArea's own handler and bindings.

    @staticmethod
    def _consume(event: events.Key) -> None:
        event.stop()
        event.prevent_default()

    def action_newline(self) -> None:
        self.insert("\n")

    # --- slash command completion -------------------------------------------------------

    def update_suggestion(self) -> None:
        """While a slash command is typed: ghost text that Tab (or →) accepts, and a hint
        naming the matching commands in the top border (see `chatapp.completion`)."""
        commands = getattr(self.screen, "slash_commands", None) if self.is_attached else None
        document = self.document
        text = document.get_line(0) if document.line_count == 1 else ""
        at_end = self.selection.is_empty and self.cursor_location == (0, len(text))
        if commands is None or not text.startswith("/"):
            self.suggestion = ""
            self.border_title = None
            return
        self.suggestion = completion.suggestion(commands, self.screen, text) if at_end else ""
        line = completion.hint(commands, self.screen, text)
        self.border_title = Text(line) if line else None

    def watch_selection(self) -> None:
        self.update_suggestion()

    # --- history -----------------------------------------------------------------------

    def _browsing(self) -> bool:
        index = self._history_index
        return (
            index is not None
            and index < len(self.sent_history)
            and self.text == self.sent_history[index]
        )

    def _may_recall(self, *, backwards: bool) -> bool:
        if not self.sent_history:
            return False
        if backwards:
            return self.text == "" or (self._browsing() and self.cursor_location[0] == 0)
        return self._browsing() and self.cursor_location[0] == self.document.line_count - 1

    def _recall(self, step: int) -> None:
        index = len(self.sent_history) if self._history_index is None else self._history_index
        index += step
        if index >= len(self.sent_history):
            self._history_index = None
            self.load_text("")
            return
        self._history_index = max(0, index)
        self.load_text(self.sent_history[self._history_index])
        self.move_cursor(self.document.end)

    def commit(self, text: str | None = None) -> None:
        """Accept a submitted `text`: remember it for Up and take it out of the input.

        Keys typed after Enter but before the submission was handled stay in the input.
        """
        current = self.text
        text = current if text is None else text
        if text.strip() and (not self.sent_history or self.sent_history[-1] != text):
            self.sent_history.append(text)
        self._history_index = None
        rest = current[len(text) :] if current.startswith(text) else ""
        self.load_text(rest)
        self.move_cursor(self.document.end)
        if max(map(len, rest.splitlines()), default=0) <= LONG_LINE_CHARS:
            self.soft_wrap = True

    # --- pasting -----------------------------------------------------------------------

    async def _on_paste(self, event: events.Paste) -> None:
        event.prevent_default()  # replaces TextArea's handler
        event.stop()
        if self.read_only:
            return
        text = event.text
        if len(text) > MAX_PASTE_CHARS:
            text = text[:MAX_PASTE_CHARS]
            self.notify(
                f"The paste was cut to its first {MAX_PASTE_CHARS:,} characters.",
                severity="warning",
                markup=False,
            )
        if self.soft_wrap and max(map(len, text.splitlines()), default=0) > LONG_LINE_CHARS:
            self.soft_wrap = False  # wrapping a giant line would stall every keystroke
        result = self.replace(text, *self.selection)
        self.move_cursor(result.end_location)
        self.focus()
