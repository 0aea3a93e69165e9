"""The Textual app: bindings and the default screen. The chat screen does the work."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from chatapp.engine.client import Engine
from chatapp.engine.protocol import GenerationSettings, ModelSpec
from chatapp.screens.chat import DEFAULT_SETTINGS, ChatScreen


class ChatApp(App):
    """A local-first chat TUI. The caller owns `engine`: it starts and closes it."""

    TITLE = "chatapp"
    CSS_PATH = "app.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
    ]

    def __init__(
        self,
        engine: Engine,
        model: ModelSpec | None,
        settings: GenerationSettings = DEFAULT_SETTINGS,
        *,
        system_prompt: str | None = None,
        model_error: str | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.model = model
        self.settings = settings
        self.system_prompt = system_prompt
        self.model_error = model_error

    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(
            self.engine,
            self.model,
            self.settings,
            system_prompt=self.system_prompt,
            model_error=self.model_error,
        )

    @property
    def chat(self) -> ChatScreen:
        screen = self.screen
        assert isinstance(screen, ChatScreen)
        return screen
