"""The sessions panel (Ctrl+O): saved sessions newest first, and full-text search.

With the search box empty the list holds the sessions, most recently updated first; typing
searches every message of every session (SQLite FTS5) and lists the matches with the
matching words highlighted. Enter (or a click) opens the session, at the matching message
for a search hit. A query starting with `~` (Ctrl+S toggles it) searches by meaning
instead: the screen asks the engine (the encoder, as `/find` does) and hands the hits back
to `show_meaning`. On the list: r renames, d deletes (after asking), n starts a new chat.
Esc closes the panel.

The panel only reads the store; the screen does the opening, renaming and deleting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from chatapp.engine.protocol import SearchHit as MeaningHit
from chatapp.sanitize import sanitize
from chatapp.store import SearchHit, Session, Store, StoreError
from chatapp.store.recall import found_messages

LIST_LIMIT = 200
SEARCH_LIMIT = 50
MEANING_LIMIT = 20
MEANING_PREFIX = "~"


def _when(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp)
    if moment.date() == datetime.now().date():
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d")


def session_prompt(session: Session, *, current: bool) -> Text:
    text = Text()
    text.append("● " if current else "  ", style="bold")
    text.append(sanitize(session.title or "(untitled)"), style="bold")
    details = f"{_when(session.updated_at)} · {session.message_count} msgs"
    if session.model:
        details += f" · {session.model}"
    text.append("\n  " + sanitize(details), style="dim")
    return text


def hit_prompt(hit: SearchHit) -> Text:
    text = Text()
    text.append(sanitize(hit.title or "(untitled)"), style="bold")
    text.append(f" · {hit.role} · {_when(hit.created_at)}", style="dim")
    text.append("\n")
    one_line = dataclasses.replace(hit, snippet=" ".join(hit.snippet.split()))
    text.append_text(one_line.to_rich())
    return text


class SessionList(OptionList):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r,f2", "rename", "Rename session", id="sessions.rename"),
        Binding("d,delete", "delete", "Delete session", id="sessions.delete"),
        Binding("n", "new", "New chat", id="sessions.new"),
    ]

    def _session_id(self) -> int | None:
        index = self.highlighted
        if index is None:
            return None
        option_id = self.get_option_at_index(index).id or ""
        kind, _, rest = option_id.partition(":")
        return int(rest.split(":")[0]) if kind in ("s", "m") else None

    def action_rename(self) -> None:
        session_id = self._session_id()
        if session_id is not None:
            self.post_message(SessionsPanel.Rename(session_id))

    def action_delete(self) -> None:
        session_id = self._session_id()
        if session_id is not None:
            self.post_message(SessionsPanel.Delete(session_id))

    def action_new(self) -> None:
        self.post_message(SessionsPanel.New())


class SessionsPanel(Vertical):
    DEFAULT_CSS = """
    SessionsPanel {
        dock: left;
        width: 42;
        max-width: 60%;
        height: 1fr;
        background: $panel;
        border-right: tall $primary-darken-2;
        display: none;
    }
    SessionsPanel.-open {
        display: block;
    }
    SessionsPanel #sessions-title {
        height: 1;
        padding: 0 1;
        text-style: bold;
    }
    SessionsPanel #sessions-search {
        margin: 0;
    }
    SessionsPanel SessionList {
        height: 1fr;
        border: none;
        background: $panel;
    }
    SessionsPanel #sessions-hint {
        height: auto;
        padding: 0 1;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close sessions", id="sessions.close"),
        Binding("down", "focus_list", "Results", show=False, id="sessions.results"),
        Binding("ctrl+s", "toggle_meaning", "Words/meaning", id="sessions.meaning"),
    ]

    @dataclass
    class Open(Message):
        session_id: int
        message_id: int | None = None
        """The search hit to show, if the session was opened from one."""

    @dataclass
    class Rename(Message):
        session_id: int

    @dataclass
    class Delete(Message):
        session_id: int

    @dataclass
    class Meaning(Message):
        """Search by meaning for `query` (the screen answers with `show_meaning`)."""

        query: str

    class New(Message):
        pass

    class Closed(Message):
        pass

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.store: Store | None = None
        self.current_session_id: int | None = None

    def compose(self) -> ComposeResult:
        yield Static("Sessions", id="sessions-title")
        yield Input(placeholder="Search all messages… (~ by meaning)", id="sessions-search")
        yield SessionList(id="sessions-list")
        yield Static("enter open · r rename · d delete · n new · esc close", id="sessions-hint")

    @property
    def is_open(self) -> bool:
        return self.has_class("-open")

    @property
    def search_input(self) -> Input:
        return self.query_one("#sessions-search", Input)

    @property
    def option_list(self) -> SessionList:
        return self.query_one(SessionList)

    def open(self, store: Store, current_session_id: int | None, query: str | None = None) -> None:
        self.store = store
        self.current_session_id = current_session_id
        self.add_class("-open")
        search = self.search_input
        if query is not None and search.value != query:
            search.value = query  # Input.Changed refreshes too; refresh now for a sync view
        self.refresh_items()
        search.focus()

    def close(self, *, quiet: bool = False) -> None:
        """Hide the panel; `Closed` tells the screen (not when ``quiet``: it knows)."""
        if self.is_open:
            self.remove_class("-open")
            if not quiet:
                self.post_message(self.Closed())

    def action_close(self) -> None:
        self.close()

    def action_toggle_meaning(self) -> None:
        """Switch the query between words (FTS5) and meaning (the encoder)."""
        search = self.search_input
        value = search.value
        search.value = value[1:] if value.startswith(MEANING_PREFIX) else MEANING_PREFIX + value
        search.cursor_position = len(search.value)
        search.focus()

    @property
    def meaning_query(self) -> str | None:
        """The query to search by meaning, when the box holds `~WORDS`."""
        value = self.search_input.value.strip()
        return value[1:].strip() if value.startswith(MEANING_PREFIX) else None

    def action_focus_list(self) -> None:
        option_list = self.option_list
        option_list.focus()
        if option_list.highlighted is None and option_list.option_count:
            option_list.highlighted = 0

    # --- contents ------------------------------------------------------------------------

    def refresh_items(self) -> None:
        option_list = self.option_list
        previous = option_list.highlighted
        option_list.clear_options()
        if self.store is None:
            return
        query = self.search_input.value.strip()
        title = self.query_one("#sessions-title", Static)
        meaning = self.meaning_query
        if meaning is not None:
            title.update(Text("Meaning: searching…" if meaning else "Meaning"))
            if meaning:
                self.post_message(self.Meaning(meaning))
            else:
                hint = Text("Type what you mean; Ctrl+S for words.", style="dim")
                option_list.add_option(Option(hint, disabled=True))
            return
        try:
            if query:
                hits = self.store.search(query, limit=SEARCH_LIMIT)
                title.update(Text(f"Search: {len(hits)} match{'es' if len(hits) != 1 else ''}"))
                options = [
                    Option(hit_prompt(h), id=f"m:{h.session_id}:{h.message_id}") for h in hits
                ]
            else:
                sessions = self.store.list_sessions(limit=LIST_LIMIT)
                title.update(Text(f"Sessions ({self.store.count_sessions()})"))
                options = [
                    Option(
                        session_prompt(s, current=s.id == self.current_session_id), id=f"s:{s.id}"
                    )
                    for s in sessions
                ]
        except StoreError as error:
            title.update(Text("Sessions"))
            option_list.add_option(Option(Text(f"⚠ {error}"), disabled=True))
            return
        if not options:
            empty = "No messages match." if query else "No saved sessions yet."
            option_list.add_option(Option(Text(empty, style="dim"), disabled=True))
            return
        option_list.add_options(options)
        if previous is not None and not query:
            option_list.highlighted = min(previous, len(options) - 1)
        else:
            option_list.highlighted = 0

    def show_meaning(self, query: str, result: tuple[MeaningHit, ...] | str | None) -> None:
        """The engine's answer to `Meaning(query)`: hits, or a one-line notice."""
        if self.store is None or self.meaning_query != query:
            return  # the query changed meanwhile: its own answer comes
        option_list = self.option_list
        option_list.clear_options()
        title = self.query_one("#sessions-title", Static)
        if not isinstance(result, tuple):
            title.update(Text("Meaning"))
            notice = result or "No answer from the model worker."
            option_list.add_option(Option(Text(f"⚠ {notice}"), disabled=True))
            return
        options = []
        for hit, session, message in found_messages(self.store, result):
            text = Text()
            text.append(sanitize(session.title or "(untitled)"), style="bold")
            text.append(f" · {message.role} · {hit.score:.2f}", style="dim")
            text.append("\n" + sanitize(" ".join(message.content.split())[:200]))
            options.append(Option(text, id=f"m:{hit.session_id}:{hit.message_id}"))
        title.update(Text(f"Meaning: {len(options)} match{'es' if len(options) != 1 else ''}"))
        if not options:
            empty = Text("No messages match (vectors still being computed?).", style="dim")
            option_list.add_option(Option(empty, disabled=True))
            return
        option_list.add_options(options)
        option_list.highlighted = 0

    @on(Input.Changed, "#sessions-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.refresh_items()

    @on(Input.Submitted, "#sessions-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        option_list = self.option_list
        index = option_list.highlighted
        if index is None and option_list.option_count:
            index = 0
        if index is not None:
            self._open_option(option_list.get_option_at_index(index))

    @on(OptionList.OptionSelected, "#sessions-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._open_option(event.option)

    def _open_option(self, option: Option) -> None:
        kind, _, rest = (option.id or "").partition(":")
        if kind == "s":
            self.post_message(self.Open(int(rest)))
        elif kind == "m":
            session_id, _, message_id = rest.partition(":")
            self.post_message(self.Open(int(session_id), int(message_id)))
