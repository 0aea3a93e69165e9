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
from dataclasses import dataclass
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import Worker, WorkerState

from chatapp import recall_ui
from chatapp.engine.backoff import RestartPolicy
from chatapp.engine.client import Engine
from chatapp.engine.protocol import (
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
from chatapp.screens.model_switch import ModelControls
from chatapp.screens.sessions import SessionScreen
from chatapp.slash import SlashCommands, UnknownCommand, parse, unescape
from chatapp.store import Store, StoreError
from chatapp.widgets.chat_view import ChatView
from chatapp.widgets.message import MessageWidget, format_stats
from chatapp.widgets.prompt import PromptInput
from chatapp.widgets.pull_offer import PullOffer
from chatapp.widgets.recall import RecallSummary
from chatapp.widgets.status_bar import StatusBar

DEFAULT_SETTINGS = GenerationSettings()


def describe_exit(exitcode: int | None) -> str:
    return "exit unknown" if exitcode is None else f"exit {exitcode}"


class ChatScreen(ModelControls, SessionScreen):
    """A conversation with one model, saved as a session (see `SessionScreen`)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop", id="chat.stop"),
        Binding("ctrl+n", "new_chat", "New chat", id="chat.new"),
        Binding("f2,ctrl+t", "pick_model", "Switch model", id="chat.model"),
    ]

    @dataclass
    class WorkerExited(Message):
        """The worker died on its own while nothing was waiting on it (see
        `Engine.watch_exits`); posted from the engine's pump thread."""

        exitcode: int | None

    def __init__(
        self,
        engine: Engine,
        model: ModelSpec | None,
        settings: GenerationSettings = DEFAULT_SETTINGS,
        *,
        system_prompt: str | None = None,
        model_error: str | None = None,
        store: Store | None = None,
        session_id: int | None = None,
        store_error: StoreError | None = None,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.model = model
        self.settings = settings
        self.system_prompt = system_prompt
        self.model_error = model_error
        self.model_ready = False
        self.request: Generate | None = None
        """The generation in flight, if any."""
        self._stop_requested = False
        self.restart_policy = RestartPolicy()
        """Restarts of a dead worker back off, and stop after repeated failures."""
        self.slash_commands = SlashCommands()
        self.slash_commands.add("help", "list the slash commands", ChatScreen._slash_help)
        self.slash_commands.add(
            "restart", "restart the model worker and reload the model", ChatScreen._slash_restart
        )
        self.slash_commands.add(
            "new", "start a new chat", lambda screen, _: screen.action_new_chat()
        )
        # The saved session: `store` None keeps it in memory (see SessionScreen).
        self.init_sessions(store, session_id=session_id, store_error=store_error)
        self.setup_model_controls()  # /model, /set, /system, the picker (see ModelControls)

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
        self.engine.watch_exits(lambda exitcode: self.post_message(self.WorkerExited(exitcode)))
        prompt = self.prompt_input
        prompt.border_subtitle = "enter send · ctrl+j newline · esc stop · ctrl+n new · f1 keys"
        prompt.focus()
        status = self.status_bar
        if self.model is None:
            status.model_name = ""
            status.state = "no model"
            await self.chat_view.add_notice(self.model_error or "No model is configured.")
            if missing := getattr(self.app, "missing_model", None):
                await self.mount(PullOffer(missing), before=prompt)  # first run: offer a pull
            return
        status.model_name = self.model.name
        status.context_window = self.model.context_window
        self.load_model()

    # --- loading the model ---------------------------------------------------------------

    @work(exclusive=True, group="load", exit_on_error=False)
    async def load_model(self, *, restart: bool = False, delay: float = 0.0) -> None:
        assert self.model is not None
        status = self.status_bar
        self.model_ready = False
        if restart and delay > 0:  # backing off after a crash (see recover_worker)
            status.state, status.detail = "loading", f"restarting the worker in {delay:g} s"
            await asyncio.sleep(delay)
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
                delay = self.restart_policy.failed()
                await self._load_failed(
                    f"the model worker stopped while loading ({reason}); {_next_step(delay)}"
                )
                self.call_later(self.recover_worker, delay)

    def recover_worker(self, delay: float | None) -> None:
        """The worker died: restart it with the same model after `delay` seconds (None:
        it failed too often in a row; the user restarts it with /restart)."""
        self.model_ready = False
        if delay is None:
            self.status_bar.state, self.status_bar.detail = "error", "worker stopped · /restart"
        elif self.model is not None:
            self.load_model(restart=True, delay=delay)

    async def on_chat_screen_worker_exited(self, event: WorkerExited) -> None:
        """The worker died while idle (killed, out of memory): say so and restart it now,
        not at the next message. A reply, load or switch in flight restarts it itself."""
        loading = any(
            w.node is self and w.group == "load" and not w.is_finished for w in self.workers
        )
        if self.model is None or self.generating or self.switching is not None or loading:
            return
        delay = self.restart_policy.failed()
        reason = describe_exit(event.exitcode)
        text = f"⚠ the model worker stopped while idle ({reason}); {_next_step(delay)}"
        await self.chat_view.add_notice(text, variant="error")
        self.status_bar.state, self.status_bar.detail = "error", "worker stopped"
        self.recover_worker(delay)

    async def _slash_restart(self, _argument: str) -> None:
        if self.generating:
            self.notify("Still replying: wait, or press Esc to stop.", markup=False)
            return
        self.restart_policy.healthy()
        if self.model is None:
            await asyncio.to_thread(self.engine.restart)
            self.notify("The model worker was restarted (no model is configured).", markup=False)
            return
        self.notify(f"Restarting the model worker and loading {self.model.name}…", markup=False)
        self.load_model(restart=True)

    async def _load_failed(self, text: str) -> None:
        self.status_bar.state, self.status_bar.detail = "error", ""
        await self.chat_view.add_notice(f"⚠ {text}", variant="error")

    # --- pulling a missing model (first run; see chatapp.widgets.pull_offer) ----------------

    def on_pull_offer_progressed(self, event: PullOffer.Progressed) -> None:
        if self.model is None:
            status = self.status_bar
            status.model_name = event.name
            status.state = "no model" if event.failed else "loading"
            status.detail = event.text

    async def on_pull_offer_pulled(self, event: PullOffer.Pulled) -> None:
        await event.offer.remove()
        self.prompt_input.focus()
        if self.model is not None:
            self.notify(f"{event.spec.name} is pulled.", markup=False)
            return
        self.model, self.model_error = event.spec, None
        self.status_bar.model_name = event.spec.name
        self.status_bar.context_window = event.spec.context_window
        self.load_model()

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
            if self.restart_policy.gave_up:
                text = "The model worker keeps stopping: type /restart to try again."
            self.notify(text, markup=False)
            return
        text = unescape(event.text)
        if not await self.add_user_turn(text):  # committed to the store first
            return  # not saved: the text stays in the prompt
        event.prompt_input.commit(event.text)
        await self.start_reply()

    async def start_reply(self) -> None:
        """Stream a reply to the current branch into a new message (saved as it grows)."""
        assert self.model is not None
        messages = self.conversation.request_messages()
        reply_id = self.begin_reply(self.model)  # None: not saved, but still generated
        self.request = Generate(
            messages=messages, settings=self.settings, **recall_ui.generate_options(self)
        )
        self._stop_requested = False
        reply = MessageWidget("assistant", label=self.model.name, message_id=reply_id)
        await self.chat_view.add_message(reply)
        reply.set_footer("…", variant="muted")
        self.generate(self.request, reply)

    @work(exclusive=True, group="generate", exit_on_error=False)
    async def generate(self, request: Generate, reply: MessageWidget) -> None:
        status = self.status_bar
        status.state, status.detail = "generating", ""
        status.begin_stream()
        outcome: str | None = None
        delay: float | None = None  # before restarting a worker that died
        try:
            async for event in self.engine.stream(request):
                if isinstance(event, Started):
                    status.context_used = event.prompt_tokens
                    status.context_window = event.context_window
                    await recall_ui.show_context(self, reply, event)
                elif isinstance(event, Token):
                    status.count_token(event.tokens)
                    await reply.append(event.text)
                    self.reply_grew(event.text)
                elif isinstance(event, Done):
                    self.restart_policy.healthy()
                    await reply.finalize(event.text)
                    outcome = self._finish(reply, event)
                    stopped = event.finish_reason == "cancelled" or self._stop_requested
                    final = "stopped" if stopped else "complete"
                    await self.end_reply(reply, final, event.text, event.stats)
                elif isinstance(event, Failed):
                    await reply.finalize()
                    reply.set_footer(f"⚠ generation failed: {event.reason}", variant="error")
                    outcome = "error"
                    await self.end_reply(reply, "error")
                elif isinstance(event, WorkerDied):
                    await reply.finalize()
                    reason = describe_exit(event.exitcode)
                    delay = self.restart_policy.failed()
                    reply.set_footer(
                        f"⚠ the model worker stopped ({reason}); {_next_step(delay)}",
                        variant="error",
                    )
                    outcome = "died"
                    await self.end_reply(reply, "interrupted")
        finally:
            # A new chat (Ctrl+N) clears `self.request` first: then this turn is forgotten.
            if self.request is request:
                self.request = None
            self.settle_reply(reply)  # a stream that ended without Done: 'interrupted'
            recall_ui.keep_context(self, reply)  # which messages the context held
        if outcome == "died":
            status.state, status.detail = "error", "worker stopped"
            self.recover_worker(delay)
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

    def on_recall_summary_mark(self, event: RecallSummary.Mark) -> None:
        event.stop()
        recall_ui.on_mark(self, event)

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
        else:
            self.escape_idle()  # cancel an edit, or leave a focused message for the prompt

    async def action_new_chat(self) -> None:
        """Ctrl+N: a new session; the view clears (a reply streaming is stopped and kept)."""
        await self.new_session()
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


def _next_step(delay: float | None) -> str:
    """What happens after the worker died, for the one line that says so."""
    if delay is None:
        return "it keeps stopping, so it was not restarted: type /restart to try again"
    return "restarting…"


def _progress_text(event: Progress) -> str:
    if event.total:
        return f"{event.stage} {100 * event.done / event.total:.0f}%".strip()
    return event.stage
