"""F1: every key binding, the prompt's keys, the slash commands and the mouse, on one page.

The bindings are read from the live app, the screen below and its prompt, so a binding
another feature adds shows up here without touching this file. F1 or Esc closes it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.dom import DOMNode
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

KEY_WIDTH = 20
PROMPT_KEYS = (
    ("enter", "Send the message (or run the /command)"),
    ("ctrl+j, shift+enter", "New line in the message"),
    ("up, down", "Earlier messages, when the prompt is empty"),
    ("tab, →", "Complete the /command or its argument"),
)
MOUSE = (
    ("click a code block", "Copy its code to the clipboard"),
    ("click a link", "Show where it points (links are never opened)"),
    ("drag", "Select text; ctrl+c copies it"),
    ("wheel", "Scroll the conversation"),
)


DESCRIPTIONS = {
    "command_palette": "Command palette: find any command",
    "help_quit": "Says how to quit (ctrl+q)",
}
"""Better words for Textual's own bindings."""


def _describe(binding: Binding) -> str:
    action = binding.action.rpartition(".")[2]
    if action in DESCRIPTIONS:
        return DESCRIPTIONS[action]
    if binding.description:
        return binding.description
    return action.replace("_", " ").capitalize()


def binding_rows(app_node: DOMNode, nodes: Iterable[DOMNode]) -> list[tuple[str, str]]:
    """(keys, what they do) for each binding of `nodes`, one row per action."""
    app = app_node.app
    rows: dict[str, tuple[list[str], str]] = {}
    for node in nodes:
        for bindings in node._bindings.key_to_bindings.values():
            for binding in bindings:
                keys, _ = rows.setdefault(binding.action, ([], _describe(binding)))
                key = app.get_key_display(binding)
                if key not in keys:
                    keys.append(key)
    return [(", ".join(keys), what) for keys, what in rows.values()]


def _table(rows: Iterable[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True, width=KEY_WIDTH)
    table.add_column()
    for keys, what in rows:
        table.add_row(Text(keys), Text(what))
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and commands of the screen it was opened over."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "close", "Close help", id="help.close"),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 90%;
        max-width: 100;
        height: 90%;
        border: round $primary;
        border-title-color: $text-primary;
        border-subtitle-color: $text-muted;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen .section {
        margin: 1 0 0 0;
        text-style: bold;
        color: $text-accent;
    }
    HelpScreen Static {
        width: 1fr;
    }
    """

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.under = under

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        from chatapp.widgets.prompt import PromptInput

        under = self.under
        result = [
            ("Everywhere", binding_rows(self.app, [self.app])),
            ("Chat", binding_rows(self.app, [under])),
            ("Prompt", list(PROMPT_KEYS)),
        ]
        prompts = under.query(PromptInput)
        if prompts:
            editing = binding_rows(self.app, [prompts.first()])
            result.append(("Editing the prompt", editing))
        commands = getattr(under, "slash_commands", None)
        if commands is not None:
            slash = [(c.signature, c.summary) for c in commands]
            result.append(("Slash commands (type // to send a message starting with /)", slash))
        result.append(("Mouse", list(MOUSE)))
        return [(title, rows) for title, rows in result if rows]

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Keys and commands"
            box.border_subtitle = "esc or f1 closes · ctrl+p finds any command"
            with VerticalScroll():
                for title, rows in self.sections():
                    yield Label(Text(title), classes="section")
                    yield Static(_table(rows))

    def action_close(self) -> None:
        self.dismiss()
