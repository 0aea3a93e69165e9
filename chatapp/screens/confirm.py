"""Small modal dialogs: a yes/no question, a line of text, and the unusable-database choice."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from chatapp.sanitize import sanitize

_DIALOG_CSS = """
{name} {{
    align: center middle;
}}
{name} > Vertical {{
    width: 72;
    max-width: 95%;
    height: auto;
    padding: 1 2;
    background: $surface;
    border: thick $primary 60%;
}}
{name} .question {{
    height: auto;
    margin: 0 0 1 0;
}}
{name} Horizontal {{
    height: auto;
    align-horizontal: right;
}}
{name} Button {{
    margin: 0 0 0 1;
}}
"""


class ConfirmScreen(ModalScreen[bool]):
    """Ask before doing something that cannot be undone. y / Enter on the button; n or Esc
    cancels (the focus starts on Cancel)."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="ConfirmScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "Cancel", id="confirm.cancel"),
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
    ]

    def __init__(self, question: str, *, yes: str = "Delete", no: str = "Cancel") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(sanitize(self.question)), classes="question")
            with Horizontal():
                yield Button(self.yes, variant="error", id="yes")
                yield Button(self.no, id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class TextInputScreen(ModalScreen[str | None]):
    """One line of text (a new title): Enter accepts, Esc cancels (None)."""

    DEFAULT_CSS = _DIALOG_CSS.format(name="TextInputScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="input.cancel"),
    ]

    def __init__(self, question: str, value: str = "", *, placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(sanitize(self.question)), classes="question")
            yield Input(self.value, placeholder=self.placeholder, id="answer")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


DatabaseChoice = Literal["fresh", "unsaved", "quit"]


class DatabaseErrorScreen(ModalScreen[DatabaseChoice]):
    """The sessions database cannot be used: say why (naming the file, which is left
    untouched) and offer a fresh database beside it, a chat that is not saved, or quitting."""

    DEFAULT_CSS = (
        _DIALOG_CSS.format(name="DatabaseErrorScreen")
        + """
    DatabaseErrorScreen > Vertical {
        border: thick $error 70%;
    }
    DatabaseErrorScreen Horizontal {
        align-horizontal: left;
    }
    DatabaseErrorScreen Vertical > Button {
        width: 100%;
        margin: 0 0 1 0;
    }
    """
    )
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "choose('fresh')", "Fresh database", id="database.fresh"),
        Binding("u", "choose('unsaved')", "Continue without saving", id="database.unsaved"),
        Binding("q", "choose('quit')", "Quit", id="database.quit"),
    ]

    def __init__(self, error: str, fresh_path: Path) -> None:
        super().__init__()
        self.error = error
        self.fresh_path = fresh_path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Text(sanitize(f"The sessions database cannot be used.\n\n{self.error}")),
                classes="question",
            )
            yield Static(
                Text("The file was left as it is; nothing was deleted.", style="dim"),
                classes="question",
            )
            yield Button(
                sanitize(f"Start with a fresh database at {self.fresh_path}"),
                variant="primary",
                id="fresh",
            )
            yield Button("Continue without saving", id="unsaved")
            yield Button("Quit", variant="error", id="quit")

    def on_mount(self) -> None:
        self.query_one("#fresh", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose(event.button.id or "quit")

    def action_choose(self, choice: str) -> None:
        if choice in ("fresh", "unsaved", "quit"):
            self.dismiss(choice)  # type: ignore[arg-type]
