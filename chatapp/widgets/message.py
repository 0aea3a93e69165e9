"""One chat message: a role label, a body, and a footer for status and stats.

Every piece of text that enters this widget goes through `sanitize` here, so the widget
is the one place where untrusted text meets the screen. Labels and footers take `Text`
objects (never markup strings); the assistant's body is a Markdown widget, which does not
interpret Rich markup, and links in it are not opened on click.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Markdown, Static
from textual.widgets.markdown import MarkdownStream

from chatapp.code_blocks import copy_block, fence_at
from chatapp.engine.protocol import GenerationStats, Role
from chatapp.sanitize import sanitize


def format_stats(stats: GenerationStats) -> str:
    """ "12.3 tok/s · 0.41 s to first token · 87 tokens"."""
    parts = []
    if stats.tokens_per_second > 0:
        parts.append(f"{stats.tokens_per_second:.1f} tok/s")
    parts.append(f"{stats.time_to_first_token:.2f} s to first token")
    parts.append(f"{stats.new_tokens} token{'' if stats.new_tokens == 1 else 's'}")
    return " · ".join(parts)


class MessageWidget(Vertical, can_focus=True):
    """A message in the chat view.

    User messages show their text as typed (plain text); assistant messages render
    Markdown and can be streamed into with `append` and finished with `finalize`.
    `message_id` is the stored message's id (None for a message that is not stored);
    a message is focusable, and the screen's keys act on the focused one.
    """

    def __init__(
        self,
        role: Role,
        text: str = "",
        *,
        label: str | None = None,
        message_id: int | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.role = role
        self.message_id = message_id
        self.add_class(f"-{role}")
        self._text = text
        self._label = label if label is not None else {"user": "you"}.get(role, role)
        self._stream: MarkdownStream | None = None
        self._footer_text = ""

    def compose(self) -> ComposeResult:
        yield Label(Text(sanitize(self._label)), classes="role")
        if self.role == "assistant":
            yield Markdown(sanitize(self._text), classes="body", open_links=False)
        else:
            yield Static(Text(sanitize(self._text)), classes="body")
        footer = Static(Text(""), classes="footer")
        footer.display = False
        yield footer

    # --- reading ---------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The message's raw (unsanitised) text so far."""
        return self._text

    @property
    def footer(self) -> str:
        return self._footer_text

    # --- writing ---------------------------------------------------------------------

    async def append(self, delta: str) -> None:
        """Stream `delta` onto the end of the body (batched by Markdown's stream)."""
        self._text += delta
        if self.role != "assistant":
            self.query_one(".body", Static).update(Text(sanitize(self._text)))
            return
        if self._stream is None:
            self._stream = Markdown.get_stream(self.query_one(".body", Markdown))
        await self._stream.write(sanitize(delta))

    async def finalize(self, text: str | None = None) -> None:
        """Stop streaming and render the whole text once (`text` replaces it if given)."""
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.stop()
        if text is not None:
            self._text = text
        if self.role == "assistant":
            await self.query_one(".body", Markdown).update(sanitize(self._text))
        else:
            self.query_one(".body", Static).update(Text(sanitize(self._text)))

    def set_footer(self, text: str, *, variant: str | None = None) -> None:
        """Show one line of status or stats under the message."""
        self._footer_text = text
        footer = self.query_one(".footer", Static)
        footer.update(Text(sanitize(text)))
        footer.display = bool(text)
        footer.set_class(variant == "error", "-error")
        footer.set_class(variant == "muted", "-muted")

    def on_click(self, event: events.Click) -> None:
        """A click on a code block copies its code (see `chatapp.code_blocks`)."""
        fence = fence_at(event.widget)
        if fence is not None:
            event.stop()
            copy_block(self.app, fence)

    def on_markdown_link_clicked(self, event: Markdown.LinkClicked) -> None:
        """Links in model output are not opened; show where they point instead."""
        event.stop()
        self.notify(sanitize(event.href), title="link (not opened)", markup=False)


class Notice(Static):
    """A one-line notice in the chat view (no model, load failed, ...)."""

    def __init__(self, text: str, *, variant: str = "warning") -> None:
        super().__init__(Text(sanitize(text)), classes=f"notice -{variant}")
