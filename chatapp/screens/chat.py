"""The chat screen: messages, prompt, status bar, and the workers that talk to the engine.

One reply streams at a time. Submitting while a reply streams (or while the model
loads) is refused with a notification and the typed text stays in the input, so nothing
is lost and the user can send it when the reply ends (or press Esc to stop it first).
Typing itself is never blocked.

The history sent to the engine is the conversation so far as `ChatMessage`s, with the
system prompt first when one is set. A reply that was stopped, or that failed part way,
is kept as the assistant's turn with whatever text it has, so user and assistant turns
keep alternating.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from chatapp.engine.client import Engine
from chatapp.engine.protocol import (
    ChatMessage,
    Done,
    Failed,
    Generate,
    GenerationSettings,
    LoadModel,
    ModelReady,
    ModelSpec,
    Progress,
    Started,
    Token,
    WorkerDied,
)
from chatapp.slash import SlashCommands, UnknownCommand, parse, unescape
from chatapp.widgets.chat_view import ChatView
from chatapp.widgets.message import MessageWidget, format_stats
from chatapp.widgets.prompt import PromptInput
from chatapp.widgets.status_bar import StatusBar

DEFAULT_SETTINGS = GenerationSettings()


def describe_exit(exitcode: int | None) -> str:
    return "exit unknown" if exitcode is None else f"exit {exitcode}"


class ChatScreen(Screen):
    """A conversation with one model."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop", id="chat.stop"),
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new"),
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
        self.history: list[ChatMessage] = []
        self.model_ready = False
        self.request: Generate | None = None
        """The generation in flight, if any."""
        self._stop_requested = False
        self.slash_commands = SlashCommands()
        self.slash_commands.add("help", "list the slash commands", ChatScreen._slash_help)
        self.slash_commands.add("new", "start a new chat", lambda screen, _: screen.action_new_chat())

    def compose(self) -> ComposeResult:
        yield ChatView(id="chat-view")
        yield PromptInput(id="prompt", placeholder="Message the model…")
        yield StatusBar(id="status-bar")

    @property
    def chat_view(self) -> ChatView:
        return self.query_one(ChatView)

    @property
    def prompt_input(self) -> PromptInput:
        return self.query_one(PromptInput)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one(StatusBar)

    @property
    def generating(self) -> bool:
        return self.request is not None

    async def on_mount(self) -> None:
        prompt = self.prompt_input
        prompt.border_subtitle = "enter send · ctrl+j newline · esc stop · ctrl+n new"
        prompt.focus()
        status = self.status_bar
        if self.model is None:
            status.model_name = ""
            status.state = "no model"
            await self.chat_view.add_notice(self.model_error or "No model is configured.")
            return
        status.model_name = self.model.name
        status.context_window = self.model.context_window
        self.load_model()

    # --- loading the model ---------------------------------------------------------------

    @work(exclusive=True, group="load", exit_on_error=False)
    async def load_model(self, *, restart: bool = False) -> None:
        assert self.model is not None
        status = self.status_bar
        self.model_ready = False
        status.state, status.detail = "loading", ""
        if restart:
            await asyncio.to_thread(self.engine.restart)
        async for event in self.engine.stream(LoadModel(self.model)):
            if isinstance(event, Progress):
                status.detail = _progress_text(event)
            elif isinstance(event, ModelReady):
                self.model_ready = True
                status.state, status.detail = "ready", ""
                status.context_window = event.context_window
            elif isinstance(event, Failed):
                await self._load_failed(f"could not load {self.model.name}: {event.reason}")
            elif isinstance(event, WorkerDied):
                reason = describe_exit(event.exitcode)
                await self._load_failed(f"the model worker stopped while loading ({reason})")

    async def _load_failed(self, text: str) -> None:
        self.status_bar.state, self.status_bar.detail = "error", ""
        await self.chat_view.add_notice(f"⚠ {text}", variant="error")

    # --- sending -------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def send(self, event: PromptInput.Submitted) -> None:
        event.stop()
        command = parse(event.text)
        if command is not None:
            event.prompt_input.commit(event.text)
            try:
                await self.slash_commands.run(self, *command)
            except UnknownCommand as error:
                self.notify(str(error), severity="warning", markup=False)
            return
        if self.model is None:
            self.notify(self.model_error or "No model is configured.", markup=False)
            return
        if self.generating:
            self.notify("Still replying: wait, or press Esc to stop.", markup=False)
            return
        if not self.model_ready:
            state = self.status_bar.state
            text = "The model failed to load." if state == "error" else "The model is loading…"
            self.notify(text, markup=False)
            return
        event.prompt_input.commit(event.text)
        text = unescape(event.text)
        self.history.append(ChatMessage("user", text))
        messages = tuple(self.history)
        if self.system_prompt:
            messages = (ChatMessage("system", self.system_prompt), *messages)
        self.request = Generate(messages=messages, settings=self.settings)
        self._stop_requested = False
        view = self.chat_view
        await view.add_message(MessageWidget("user", text))
        reply = await view.add_message(MessageWidget("assistant", label=self.model.name))
        reply.set_footer("…", variant="muted")
        self.generate(self.request, reply)

    @work(exclusive=True, group="generate", exit_on_error=False)
    async def generate(self, request: Generate, reply: MessageWidget) -> None:
        status = self.status_bar
        status.state, status.detail = "generating", ""
        status.begin_stream()
        outcome: str | None = None
        try:
            async for event in self.engine.stream(request):
                if isinstance(event, Started):
                    status.context_used = event.prompt_tokens
                    status.context_window = event.context_window
                elif isinstance(event, Token):
                    status.count_token(event.tokens)
                    await reply.append(event.text)
                elif isinstance(event, Done):
                    await reply.finalize(event.text)
                    outcome = self._finish(reply, event)
                elif isinstance(event, Failed):
                    await reply.finalize()
                    reply.set_footer(f"⚠ generation failed: {event.reason}", variant="error")
                    outcome = "error"
                elif isinstance(event, WorkerDied):
                    await reply.finalize()
                    reason = describe_exit(event.exitcode)
                    reply.set_footer(
                        f"⚠ the model worker stopped ({reason}); restarting…", variant="error"
                    )
                    outcome = "died"
        finally:
            # A new chat (Ctrl+N) clears `self.request` first: then this turn is forgotten.
            if self.request is request:
                self.request = None
                self.history.append(ChatMessage("assistant", reply.text))
        if outcome == "died":
            status.state, status.detail = "error", "worker stopped"
            self.load_model(restart=True)
        elif outcome == "error":
            status.state, status.detail = "ready", ""
        elif outcome is None:  # the stream ended without a terminal event
            await reply.finalize()
            reply.set_footer("interrupted", variant="muted")
            status.state = "ready"

    def _finish(self, reply: MessageWidget, done: Done) -> str:
        stats = done.stats
        status = self.status_bar
        status.state, status.detail = "ready", ""
        if stats.tokens_per_second > 0:
            status.tokens_per_second = stats.tokens_per_second
        status.context_used = stats.prompt_tokens + stats.new_tokens
        line = format_stats(stats)
        if done.finish_reason == "cancelled" or self._stop_requested:
            reply.set_footer(f"stopped · {line}", variant="muted")
        elif done.finish_reason == "length":
            reply.set_footer(f"cut at the token limit · {line}", variant="muted")
        else:
            reply.set_footer(line, variant="muted")
        return "done"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that raised: say so once, and leave the app usable."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        if event.worker.group == "generate":
            self.request = None
            self.status_bar.state = "ready" if self.model_ready else "error"
        else:
            self.status_bar.state = "error"
        self.notify(f"{type(error).__name__}: {error}", severity="error", markup=False)

    # --- actions -------------------------------------------------------------------------

    def action_stop(self) -> None:
        """Esc: ask the engine to stop the reply; the partial text stays."""
        if self.request is not None:
            self._stop_requested = True
            self.engine.cancel(self.request.request_id)
            self.status_bar.detail = "stopping…"

    async def action_new_chat(self) -> None:
        """Ctrl+N: forget the conversation and clear the view (stopping any reply)."""
        if self.request is not None:
            self.engine.cancel(self.request.request_id)
            self.request = None
            self.workers.cancel_group(self, "generate")
        self.history.clear()
        await self.chat_view.clear()
        status = self.status_bar
        status.context_used = None
        status.tokens_per_second = None
        if self.model_ready:
            status.state, status.detail = "ready", ""
        elif self.model is None:
            await self.chat_view.add_notice(self.model_error or "No model is configured.")
        self.prompt_input.focus()

    def on_unmount(self) -> None:
        if self.request is not None:
            self.engine.cancel(self.request.request_id)

    async def _slash_help(self, _argument: str) -> None:
        lines = [f"{c.signature} — {c.summary}" for c in self.slash_commands]
        await self.chat_view.add_notice("\n".join(lines), variant="muted")


def _progress_text(event: Progress) -> str:
    if event.total:
        return f"{event.stage} {100 * event.done / event.total:.0f}%".strip()
    return event.stage
