"""One line at the bottom: model, state, live speed, context used/window."""

from __future__ import annotations

import time
from typing import Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label

from chatapp.sanitize import sanitize

State = Literal["loading", "ready", "generating", "error", "no model"]


class StatusBar(Horizontal):
    """Shows the engine's state. The screen sets the reactives; the bar only displays."""

    model_name: reactive[str] = reactive("")
    state: reactive[State] = reactive[State]("loading")
    detail: reactive[str] = reactive("")
    """Extra words after the state: "40%", the error, the last reply's speed."""
    tokens_per_second: reactive[float | None] = reactive[float | None](None)
    context_used: reactive[int | None] = reactive[int | None](None)
    context_window: reactive[int | None] = reactive[int | None](None)
    settings_text: reactive[str] = reactive("")
    """The key generation settings, "temp 0.2 · max 512" (set by the screen)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._first_token_at: float | None = None
        self._tokens = 0

    def compose(self) -> ComposeResult:
        yield Label(id="status-model")
        yield Label(id="status-settings")
        yield Label(id="status-state")
        yield Label(id="status-speed")
        yield Label(id="status-context")

    def on_mount(self) -> None:
        self._refresh_labels()

    # --- live speed --------------------------------------------------------------------

    def begin_stream(self) -> None:
        self._first_token_at = None
        self._tokens = 0
        self.tokens_per_second = None

    def count_token(self, tokens: int = 1) -> None:
        """Tokens arrived: update the live tokens/s (counted from the first token)."""
        now = time.monotonic()
        self._tokens += tokens
        if self._first_token_at is None:
            self._first_token_at = now
            return
        elapsed = now - self._first_token_at
        if elapsed > 0:
            self.tokens_per_second = (self._tokens - 1) / elapsed

    @property
    def tokens_counted(self) -> int:
        return self._tokens

    # --- display -----------------------------------------------------------------------

    def watch_model_name(self) -> None:
        self._refresh_labels()

    def watch_state(self) -> None:
        self._refresh_labels()

    def watch_detail(self) -> None:
        self._refresh_labels()

    def watch_tokens_per_second(self) -> None:
        self._refresh_labels()

    def watch_context_used(self) -> None:
        self._refresh_labels()

    def watch_context_window(self) -> None:
        self._refresh_labels()

    def watch_settings_text(self) -> None:
        self._refresh_labels()

    @property
    def context_text(self) -> str:
        if self.context_window is None:
            return ""
        used = "–" if self.context_used is None else str(self.context_used)
        return f"ctx {used}/{self.context_window} tokens"

    @property
    def state_text(self) -> str:
        if self.state == "loading":
            name = sanitize(self.model_name) or "model"
            return f"loading {name}… {self.detail}".rstrip()
        return f"{self.state} {self.detail}".rstrip()

    def _refresh_labels(self) -> None:
        if not self.is_mounted:
            return
        model = self.query_one("#status-model", Label)
        model.update(Text(sanitize(self.model_name)))
        model.display = bool(self.model_name) and self.state != "loading"
        state = self.query_one("#status-state", Label)
        state.update(Text(sanitize(self.state_text)))
        for name in ("loading", "ready", "generating", "error"):
            state.set_class(self.state == name, f"-{name}")
        speed = "" if self.tokens_per_second is None else f"{self.tokens_per_second:.1f} tok/s"
        self.query_one("#status-speed", Label).update(Text(speed))
        self.query_one("#status-context", Label).update(Text(self.context_text))
        settings = self.query_one("#status-settings", Label)
        settings.update(Text(sanitize(self.settings_text)))
        settings.display = model.display and bool(self.settings_text)
