"""The Textual app: bindings and the default screen. The chat screen does the work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType

from chatapp import export_ui, recall_ui, ux
from chatapp.config import Settings
from chatapp.engine.client import Engine
from chatapp.engine.protocol import GenerationSettings, ModelSpec
from chatapp.palette import ChatCommands
from chatapp.sanitize import sanitize
from chatapp.screens.chat import DEFAULT_SETTINGS, ChatScreen
from chatapp.screens.help import HelpScreen
from chatapp.store import Store, StoreError
from chatapp.themes import ThemeLoadResult
from chatapp.theming import setup_themes


class ChatApp(App):
    """A local-first chat TUI. The caller owns `engine`: it starts and closes it."""

    TITLE = "chatapp"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ChatCommands}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True, id="app.quit"),
        Binding("f1", "help", "Help: keys and commands", id="app.help"),
    ]

    def __init__(
        self,
        engine: Engine,
        model: ModelSpec | None,
        settings: GenerationSettings = DEFAULT_SETTINGS,
        *,
        system_prompt: str | None = None,
        model_error: str | None = None,
        theme: str | None = None,
        missing_model: str | None = None,
        store: Store | None = None,
        session_id: int | None = None,
        store_error: StoreError | None = None,
        config: Settings | None = None,
        config_problems: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.config = config
        """The config's settings: per-model generation defaults and `[[models]]` for
        switching (None: `settings` is used for every model, as tests do)."""
        self.store = store
        """The sessions database (None: chats are kept in memory only). The caller opens
        and closes it; a fresh database the user starts after `store_error` replaces it."""
        self.session_id = session_id
        """The saved session to open at start (`chatapp -c`, `--session ID`)."""
        self.store_error = store_error
        """Why the database could not be opened: the chat screen offers a fresh one."""
        self.configured_theme = theme
        """The config's theme; a theme chosen in the app (state.json) wins over it."""
        self.missing_model = missing_model
        """A catalogue model that is not pulled: the chat screen offers to pull it."""
        self.config_problems = tuple(config_problems)
        """Problems in the config file or CHATAPP_* variables, shown once at start."""
        self.loaded_themes: ThemeLoadResult | None = None
        self.engine = engine
        self.model = model
        self.settings = settings
        self.system_prompt = system_prompt
        self.model_error = model_error

    def on_mount(self) -> None:
        self.loaded_themes = setup_themes(self, configured=self.configured_theme)
        for problem in self.config_problems:
            self.notify(problem, title="config", severity="warning", markup=False, timeout=10)

    def get_default_screen(self) -> ChatScreen:
        screen = ChatScreen(
            self.engine,
            self.model,
            self.settings,
            system_prompt=self.system_prompt,
            model_error=self.model_error,
            store=self.store,
            session_id=self.session_id,
            store_error=self.store_error,
        )
        ux.install(screen)  # /theme, /copy, /pull, /keys
        recall_ui.install(screen)  # /attach, /pin, /exclude, /recall, /find
        export_ui.install(screen)  # /export
        return screen

    def notify(self, message: str, *, title: str = "", **kwargs: Any) -> None:
        """Every notification (screens and widgets call this one) is made inert: Textual
        keeps ESC in a toast's text, so a title or file name could reach the terminal."""
        super().notify(sanitize(str(message)), title=sanitize(str(title)), **kwargs)

    def action_help(self) -> None:
        """F1: the keys and commands of the current screen (F1 again closes it)."""
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
        else:
            self.push_screen(HelpScreen(self.screen))

    @property
    def chat(self) -> ChatScreen:
        screen = self.screen
        assert isinstance(screen, ChatScreen)
        return screen
