"""Saved sessions on the chat screen: `SessionScreen`, the base class of `ChatScreen`.

It owns the screen's `Conversation` and everything done to stored messages:

- the sessions panel (Ctrl+O, /sessions, /search): open, rename, delete, search;
- on a focused message (click it, or Shift+Tab from the prompt): e edits a user message
  and resubmits it as a new branch, r regenerates a reply (a new sibling), d deletes
  (after asking), c copies the message, b copies its code blocks one after another,
  [ and ] move between sibling versions (also by clicking “‹ 2/3 ›”);
- the reply's autosave: the chat screen calls `reply_grew` per token, and a timer
  flushes unsaved text, so a crash loses at most about a second of a reply;
- a database that cannot be opened: a dialog offers a fresh database beside it.

`ChatScreen` keeps the generation itself; this class never talks to the engine except
to cancel a reply it abandons.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget

from chatapp import recall_ui
from chatapp.conversation import Conversation, stats_of
from chatapp.engine.protocol import ChatMessage, GenerationStats, ModelSpec
from chatapp.screens.confirm import ConfirmScreen, DatabaseErrorScreen, TextInputScreen
from chatapp.store import Message, Status, Store, StoreError, fresh_database_path
from chatapp.widgets.branch_switch import BranchSwitch
from chatapp.widgets.message import MessageWidget, format_stats
from chatapp.widgets.sessions_panel import MEANING_LIMIT, SessionsPanel

if TYPE_CHECKING:
    from chatapp.engine.protocol import Generate
    from chatapp.widgets.chat_view import ChatView
    from chatapp.widgets.prompt import PromptInput

FLUSH_TICK = 0.25
"""How often the timer looks for reply text older than the save interval."""

MESSAGE_ACTIONS = frozenset(
    {"edit_message", "regenerate", "delete_message", "copy_message", "copy_code", "sibling"}
)

EDIT_HINT = "editing an earlier message · enter sends it as a new branch · esc cancels"


def footer_for(message: Message) -> tuple[str, str]:
    """The footer line (text, variant) of a stored reply."""
    stats = stats_of(message)
    line = format_stats(stats) if stats is not None else ""
    if message.status == "complete":
        return line, "muted"
    if message.status == "stopped":
        return (f"stopped · {line}" if line else "stopped"), "muted"
    if message.status == "interrupted":
        return "⚠ interrupted: the app stopped before this reply finished", "error"
    if message.status == "error":
        return "⚠ generation failed", "error"
    return "streaming elsewhere…", "muted"


class SessionScreen(Screen):
    """The saved-session behaviour of the chat screen (see the module's docstring)."""

    DEFAULT_CSS = """
    SessionScreen MessageWidget:focus {
        background: $primary 12%;
    }
    SessionScreen MessageWidget.-editing {
        border-left: wide $warning;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "toggle_sessions", "Sessions: open, search", id="chat.sessions"),
        Binding("e", "edit_message", "Edit and resend", id="message.edit"),
        Binding("r", "regenerate", "Regenerate reply", id="message.regenerate"),
        Binding("d,delete", "delete_message", "Delete message", id="message.delete"),
        Binding("c", "copy_message", "Copy message", id="message.copy"),
        Binding("b", "copy_code", "Copy code block", id="message.copy_code"),
        Binding(
            "left_square_bracket,less_than_sign",
            "sibling(-1)",
            "Previous version",
            id="message.previous",
        ),
        Binding(
            "right_square_bracket,greater_than_sign",
            "sibling(1)",
            "Next version",
            id="message.next",
        ),
    ]

    # Provided by ChatScreen.
    if TYPE_CHECKING:
        model: ModelSpec | None
        model_error: str | None
        model_ready: bool
        request: Generate | None
        engine: Any
        slash_commands: Any

        @property
        def chat_view(self) -> ChatView: ...

        @property
        def prompt_input(self) -> PromptInput: ...

        @property
        def generating(self) -> bool: ...

        async def start_reply(self) -> None: ...

    conversation: Conversation
    editing: int | None = None
    """The id of the user message being edited in the prompt, if any."""

    def init_sessions(
        self,
        store: Store | None,
        *,
        session_id: int | None = None,
        store_error: StoreError | None = None,
    ) -> None:
        """Called at the end of `ChatScreen.__init__`."""
        model = self.model
        self.conversation = Conversation(
            store,
            model=model.name if model else "",
            system_prompt=self.__dict__.get("_system_prompt"),
            settings={"model_path": model.path} if model else None,
        )
        self.initial_session_id = session_id
        self.store_error = store_error
        self._store_error_shown = ""
        self._fresh_path: Path | None = None
        self._code_block_turn: dict[int, int] = {}
        self._subtitle: str | None = None
        commands = self.slash_commands
        commands.add("sessions", "open the sessions panel (Ctrl+O)", SessionScreen._slash_sessions)
        commands.add(
            "search", "search every saved message", SessionScreen._slash_search, usage="WORDS"
        )
        commands.add(
            "rename", "set this session's title", SessionScreen._slash_rename, usage="[TITLE]"
        )

    # --- what ChatScreen reads ------------------------------------------------------------

    @property
    def system_prompt(self) -> str | None:
        conversation = self.__dict__.get("conversation")
        if conversation is None:
            return self.__dict__.get("_system_prompt")
        return conversation.system_prompt

    @system_prompt.setter
    def system_prompt(self, value: str | None) -> None:
        conversation = self.__dict__.get("conversation")
        if conversation is None:
            self.__dict__["_system_prompt"] = value
        else:
            conversation.system_prompt = value

    @property
    def history(self) -> list[ChatMessage]:
        """The current branch as chat messages (the reply streaming now is not in it)."""
        return self.conversation.history()

    @property
    def session_id(self) -> int | None:
        return self.conversation.session_id

    # --- start-up --------------------------------------------------------------------------

    async def on_mount(self) -> None:
        self.set_interval(FLUSH_TICK, self._flush_reply, name="autosave")
        if self.store_error is not None:
            error, path = self.store_error, self.store_error.path
            fresh = fresh_database_path(path) if path is not None else None
            self._fresh_path = fresh  # the very file the dialog names
            if fresh is not None:
                self.app.push_screen(DatabaseErrorScreen(str(error), fresh), self._database_choice)
            else:
                self.notify(f"{error}; this chat is not saved.", severity="error", markup=False)
        elif self.initial_session_id is not None:
            await self.open_session(self.initial_session_id)

    async def _database_choice(self, choice: str | None) -> None:
        error = self.store_error
        if choice == "quit":
            self.app.exit(return_code=1, message=str(error))
            return
        path = self._fresh_path
        if choice != "fresh" or path is None:
            self.notify("This chat is not saved.", severity="warning", markup=False)
            return
        if path.exists() and error is not None and error.path is not None:
            path = fresh_database_path(error.path)  # taken meanwhile: never reuse a file
        try:
            store = Store(path)
        except StoreError as second:
            self.notify(f"{second}; this chat is not saved.", severity="error", markup=False)
            return
        self.conversation.use_store(store)
        self.store_error = None
        if hasattr(self.app, "store"):
            self.app.store = store  # launch closes it
        self.notify(f"Saving sessions in a fresh database: {path}", markup=False)

    # --- saving ----------------------------------------------------------------------------

    def save(self, operation: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a store operation; a `StoreError` becomes one notification (not repeated)."""
        try:
            result = operation(*args, **kwargs)
        except StoreError as error:
            text = f"Not saved: {error}"
            if text != self._store_error_shown:
                self._store_error_shown = text
                self.notify(text, severity="error", markup=False, timeout=8)
            return None
        self._store_error_shown = ""
        return result

    def _flush_reply(self) -> None:
        if self.conversation.reply is not None:
            self.save(self.conversation.flush)

    def reply_grew(self, text: str) -> None:
        """A token arrived: keep the text (saved at most once per save interval)."""
        self.save(self.conversation.reply_grew, text)

    async def end_reply(
        self,
        widget: MessageWidget,
        status: Status,
        text: str | None = None,
        stats: GenerationStats | None = None,
    ) -> None:
        """Finalise the stored reply of ``widget`` (no-op if it was finalised already)."""
        conversation = self.conversation
        if conversation.reply is None or conversation.reply_id != _message_id(widget):
            return
        message = self.save(conversation.finish_reply, text, status, stats)
        if message is None:
            conversation.reply = None
            return
        if widget.is_attached:
            await self._show_position(widget, message)

    def settle_reply(self, widget: MessageWidget) -> None:
        """The reply's stream is over: if it ended without a final event, save what came
        as 'interrupted' (synchronous: this runs in the worker's ``finally``)."""
        conversation = self.conversation
        if conversation.reply is not None and conversation.reply_id == _message_id(widget):
            self.save(conversation.finish_reply, None, "interrupted")

    def abandon_reply(self) -> None:
        """Stop the reply in flight (a new chat, another session): saved as 'stopped'."""
        if self.request is not None:
            self.engine.cancel(self.request.request_id)
            self.request = None
            self.workers.cancel_group(self, "generate")
        if self.conversation.reply is not None:
            self.save(self.conversation.finish_reply, None, "stopped")

    def on_unmount(self) -> None:
        self.abandon_reply()

    # --- sending ---------------------------------------------------------------------------

    async def add_user_turn(self, text: str) -> bool:
        """Commit the user's message (an edit makes a new branch) and show it."""
        editing = self.editing
        self._store_error_shown = ""  # a refused message is always said (never deduplicated)
        message = self.save(self.conversation.add_user, text, replacing=editing)
        if message is None:
            return False
        if editing is not None:
            self.cancel_edit(clear=False)
            await self.show_branch()
        else:
            await self.chat_view.add_message(self.message_widget(message))
        return True

    def begin_reply(self, model: ModelSpec) -> int | None:
        """Commit the empty streaming reply; its id, or None when it cannot be saved."""
        conversation = self.conversation
        conversation.model = model.name
        conversation.settings = {**conversation.settings, "model_path": model.path}
        return self.save(conversation.begin_reply)

    def refusal(self) -> str | None:
        """Why a reply cannot be generated now (the same rules as sending), or None."""
        if self.model is None:
            return self.model_error or "No model is configured."
        if self.generating:
            return "Still replying: wait, or press Esc to stop."
        if not self.model_ready:
            state = getattr(self, "status_bar").state  # noqa: B009
            return "The model failed to load." if state == "error" else "The model is loading…"
        return None

    # --- showing the branch ---------------------------------------------------------------

    def message_widget(self, message: Message) -> MessageWidget:
        label = "you" if message.role == "user" else (message.model or message.role)
        return MessageWidget(message.role, message.content, label=label, message_id=message.id)

    async def show_branch(self, *, focus: int | None = None) -> None:
        """Show the conversation's current branch (replacing what is shown)."""
        view = self.chat_view
        await view.clear()
        self._code_block_turn.clear()
        branch = list(self.conversation.branch)
        widgets = [self.message_widget(m) for m in branch]
        if widgets:
            await view.mount_all(widgets)
        for widget, message in zip(widgets, branch, strict=True):
            if message.role == "assistant":
                text, variant = footer_for(message)
                widget.set_footer(text, variant=variant)
            await self._show_position(widget, message)
        target = next((w for w in widgets if _message_id(w) == focus), None)
        if target is not None:
            view.release_anchor()
            target.focus()
            view.scroll_to_widget(target, animate=False, top=True)
        else:
            view.scroll_end(animate=False)
            view.anchor()

    async def _show_position(self, widget: MessageWidget, message: Message) -> None:
        for old in widget.query(BranchSwitch):
            await old.remove()
        position, count = self.save(self.conversation.sibling_position, message) or (1, 1)
        if count > 1:
            await widget.mount(BranchSwitch(message.id, position, count))

    def _widget_for(self, message_id: int) -> MessageWidget | None:
        for widget in self.chat_view.messages:
            if _message_id(widget) == message_id:
                return widget
        return None

    # --- sessions --------------------------------------------------------------------------

    async def new_session(self) -> None:
        """Start a new, empty conversation (saved with its first message)."""
        self.abandon_reply()
        self.cancel_edit()
        self.conversation.new()
        self._code_block_turn.clear()

    async def open_session(self, session_id: int, message_id: int | None = None) -> None:
        self.abandon_reply()
        self.cancel_edit()
        session = self.save(self.conversation.open, session_id, message_id)
        if session is None:
            return
        await self.show_branch(focus=message_id)
        if message_id is None:
            self.prompt_input.focus()
        status = getattr(self, "status_bar", None)
        if status is not None:
            status.context_used = None
            status.tokens_per_second = None
        restore = getattr(self, "restore_session", None)  # ModelControls: model, /set values
        if restore is not None:
            restore(session.model, session.settings)
        elif self.model is not None and session.model and session.model != self.model.name:
            self.notify(
                f"This session was with {session.model}; replies now come from {self.model.name}.",
                markup=False,
            )

    def _panel(self) -> SessionsPanel | None:
        panels = self.query(SessionsPanel)
        return panels.first() if panels else None

    async def show_sessions(self, query: str | None = None) -> SessionsPanel:
        panel = self._panel()
        if panel is None:
            panel = SessionsPanel(id="sessions-panel")
            await self.mount(panel)
        panel.open(self.conversation.store, self.session_id, query)
        return panel

    async def action_toggle_sessions(self) -> None:
        panel = self._panel()
        if panel is not None and panel.is_open:
            panel.close()
        else:
            await self.show_sessions()

    async def on_sessions_panel_open(self, event: SessionsPanel.Open) -> None:
        event.stop()
        panel = self._panel()
        if panel is not None:
            panel.close(quiet=True)  # a picker: Ctrl+O brings it back, search kept
        if event.session_id == self.session_id and event.message_id is None:
            self.prompt_input.focus()
        else:
            await self.open_session(event.session_id, event.message_id)

    def on_sessions_panel_meaning(self, event: SessionsPanel.Meaning) -> None:
        event.stop()
        # Exclusive: a newer keystroke's search replaces the one still running.
        self.run_worker(
            self._panel_meaning(event.query),
            group="panel-meaning",
            exclusive=True,
            exit_on_error=False,
        )

    async def _panel_meaning(self, query: str) -> None:
        # The same request `/find` sends (semantic search, ranked in the worker).
        result = await recall_ui.semantic_search(self, query, limit=MEANING_LIMIT)
        panel = self._panel()
        if panel is not None and panel.is_open:
            panel.show_meaning(query, result)

    def on_sessions_panel_closed(self, event: SessionsPanel.Closed) -> None:
        event.stop()
        self.prompt_input.focus()

    async def on_sessions_panel_new(self, event: SessionsPanel.New) -> None:
        event.stop()
        await self.run_action("new_chat")
        panel = self._panel()
        if panel is not None:
            panel.close()

    def on_sessions_panel_rename(self, event: SessionsPanel.Rename) -> None:
        event.stop()
        self.ask_rename(event.session_id)

    def ask_rename(self, session_id: int | None) -> None:
        store = self.conversation.store
        title = ""
        if session_id is not None:
            session = self.save(store.get_session, session_id)
            if session is None:
                return
            title = session.title

        def done(answer: str | None) -> None:
            if answer is not None:
                self.rename_session(session_id, answer)

        self.app.push_screen(
            TextInputScreen("Title of this session:", title, placeholder="(automatic)"), done
        )

    def rename_session(self, session_id: int | None, title: str) -> None:
        conversation = self.conversation
        if session_id is None or session_id == conversation.session_id:
            session = self.save(conversation.rename, title)
        else:
            session = self.save(conversation.store.rename_session, session_id, title)
        if session is None:
            return
        self.notify(f"Renamed: {session.title or '(untitled)'}", markup=False)
        panel = self._panel()
        if panel is not None and panel.is_open:
            panel.current_session_id = self.session_id
            panel.refresh_items()

    def on_sessions_panel_delete(self, event: SessionsPanel.Delete) -> None:
        event.stop()
        session = self.save(self.conversation.store.get_session, event.session_id)
        if session is None:
            return
        question = (
            f"Delete the session “{session.title or '(untitled)'}” and its "
            f"{session.message_count} messages? This cannot be undone."
        )

        async def done(confirmed: bool | None) -> None:
            if confirmed:
                await self.delete_session(session.id)

        self.app.push_screen(ConfirmScreen(question), done)

    async def delete_session(self, session_id: int) -> None:
        if session_id == self.session_id:
            self.abandon_reply()
        try:
            self.conversation.store.delete_session(session_id)
        except StoreError as error:
            self.notify(str(error), severity="error", markup=False)
            return
        if session_id == self.session_id:
            await self.run_action("new_chat")
        self.notify("Session deleted.", markup=False)
        panel = self._panel()
        if panel is not None and panel.is_open:
            panel.current_session_id = self.session_id
            panel.refresh_items()
            panel.option_list.focus()

    # --- slash commands --------------------------------------------------------------------

    async def _slash_sessions(self, _argument: str) -> None:
        await self.show_sessions()

    async def _slash_search(self, argument: str) -> None:
        await self.show_sessions(argument)

    def _slash_rename(self, argument: str) -> None:
        if argument:
            self.rename_session(None, argument)
        else:
            self.ask_rename(self.session_id)

    # --- actions on a focused message ------------------------------------------------------

    @property
    def focused_message(self) -> MessageWidget | None:
        node: Widget | None = self.focused
        while node is not None and not isinstance(node, MessageWidget):
            parent = node.parent
            node = parent if isinstance(parent, Widget) else None
        return node

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MESSAGE_ACTIONS:
            widget = self.focused_message
            if widget is None or _message_id(widget) is None:
                return False
            if action == "edit_message":
                return widget.role == "user"
            if action in ("regenerate", "copy_code"):
                return widget.role == "assistant"
        return super().check_action(action, parameters)

    def _target(self) -> MessageWidget | None:
        widget = self.focused_message
        return widget if widget is not None and _message_id(widget) is not None else None

    def action_edit_message(self) -> None:
        widget = self._target()
        if widget is None or widget.role != "user":
            return
        self.cancel_edit()
        self.editing = _message_id(widget)
        widget.add_class("-editing")
        prompt = self.prompt_input
        if self._subtitle is None:
            self._subtitle = str(prompt.border_subtitle or "")
        prompt.border_subtitle = EDIT_HINT
        prompt.add_class("-editing")
        prompt.load_text(widget.text)
        prompt.move_cursor(prompt.document.end)
        prompt.focus()

    def escape_idle(self) -> None:
        """Esc with no reply to stop: cancel an edit, else go back to the prompt."""
        if not self.cancel_edit() and self.focused_message is not None:
            self.prompt_input.focus()

    def cancel_edit(self, *, clear: bool = True) -> bool:
        """Leave edit mode; True if there was an edit to cancel."""
        if self.editing is None:
            return False
        widget = self._widget_for(self.editing)
        if widget is not None:
            widget.remove_class("-editing")
        self.editing = None
        prompt = self.prompt_input
        prompt.remove_class("-editing")
        if self._subtitle is not None:
            prompt.border_subtitle = self._subtitle
            self._subtitle = None
        if clear:
            prompt.load_text("")
        return True

    async def action_regenerate(self) -> None:
        widget = self._target()
        if widget is None or widget.role != "assistant":
            return
        reason = self.refusal()
        if reason is not None:
            self.notify(reason, markup=False)
            return
        message_id = _message_id(widget)
        assert message_id is not None
        self.cancel_edit()
        try:
            self.conversation.truncate_before(message_id)
        except StoreError as error:
            self.notify(str(error), severity="warning", markup=False)
            return
        await self.show_branch()
        self.prompt_input.focus()
        await self.start_reply()

    def action_delete_message(self) -> None:
        widget = self._target()
        if widget is None:
            return
        if self.generating:
            self.notify("Still replying: wait, or press Esc to stop.", markup=False)
            return
        message_id = _message_id(widget)
        assert message_id is not None
        below = self.save(self.conversation.count_below, message_id) or 0
        question = "Delete this message?"
        if below:
            question = (
                f"Delete this message and the {below} message{'s' if below != 1 else ''} "
                "after it (on every branch)?"
            )

        async def done(confirmed: bool | None) -> None:
            if confirmed:
                await self.delete_message(message_id)

        self.app.push_screen(ConfirmScreen(question), done)

    async def delete_message(self, message_id: int) -> None:
        if self.editing is not None:
            self.cancel_edit()
        removed = self.save(self.conversation.delete, message_id)
        if removed is None:
            return
        await self.show_branch()
        self.prompt_input.focus()
        self.notify(f"Deleted {removed} message{'s' if removed != 1 else ''}.", markup=False)

    def action_copy_message(self) -> None:
        widget = self._target()
        if widget is None:
            return
        self.app.copy_to_clipboard(widget.text)
        lines = widget.text.count("\n") + 1
        self.notify(
            f"Copied the message ({lines} line{'s' if lines != 1 else ''}) to the clipboard.",
            markup=False,
            timeout=3,
        )

    def action_copy_code(self) -> None:
        """b: copy the message's code blocks, the first, then the next on each press."""
        from textual.widgets.markdown import MarkdownFence

        from chatapp.code_blocks import copy_block

        widget = self._target()
        if widget is None:
            return
        fences = list(widget.query(MarkdownFence))
        if not fences:
            self.notify("This message has no code block.", markup=False)
            return
        message_id = _message_id(widget) or 0
        turn = (self._code_block_turn.get(message_id, -1) + 1) % len(fences)
        self._code_block_turn[message_id] = turn
        copy_block(self.app, fences[turn])

    async def action_sibling(self, step: int) -> None:
        widget = self._target()
        if widget is not None:
            await self.move_to_sibling(_message_id(widget) or 0, step)

    async def on_branch_switch_moved(self, event: BranchSwitch.Moved) -> None:
        event.stop()
        await self.move_to_sibling(event.message_id, event.step)

    async def move_to_sibling(self, message_id: int, step: int) -> None:
        if self.generating:
            self.notify("Still replying: wait, or press Esc to stop.", markup=False)
            return
        self.cancel_edit()
        target = self.save(self.conversation.switch_sibling, message_id, step)
        if target is None:
            self.app.bell()
            return
        await self.show_branch(focus=target.id)


def _message_id(widget: MessageWidget) -> int | None:
    return getattr(widget, "message_id", None)


__all__ = ["SessionScreen", "footer_for"]
