"""Switching the model mid-conversation, and the session's generation settings.

`ModelControls` is mixed into `ChatScreen`. It adds:

- `switch_model(name)`: resolve the name (config `[[models]]`, catalogue, models folder,
  or a path; a `.gguf` file is converted once), then ask the worker to load it. The worker
  loads the new model before it drops the old one, so a model that fails to load leaves
  the previous one active; the user is told why. The conversation is kept: the next
  reply's context is built by the worker with the new model's tokenizer and window.
  Progress shows in the status bar. Each reply's label names the model that wrote it.
- the picker (Ctrl+O, the palette's "Switch model…", or `/model` alone), `/model NAME`;
- `/set KEY VALUE` (temperature, max_tokens, top_p, top_k, repetition_penalty, seed),
  `/set` to show them, `/set reset`; `/system TEXT`, `/system` to show, `/system -` to
  remove. The status bar shows the model and its temperature and max tokens.

Sampling settings are layered by `chatapp.registry.generation_for`: catalogue defaults <
the config's `[generation]` < its `[[models]]` generation < this session's `/set` values.
`self.settings` (what `Generate` sends) is kept equal to that.

When the screen has a `conversation` (`chatapp.conversation.Conversation`), its model,
settings and system prompt follow, and a saved session is updated in the store.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from textual import work
from textual.screen import Screen

from chatapp import registry
from chatapp.engine.models import ModelError
from chatapp.engine.protocol import (
    Failed,
    GenerationSettings,
    LoadModel,
    ModelReady,
    ModelSpec,
    Progress,
    WorkerDied,
)
from chatapp.registry import SettingError, describe_settings, parse_setting
from chatapp.screens.model_picker import ModelPicker

if TYPE_CHECKING:
    from chatapp.config import Settings
    from chatapp.engine.client import Engine
    from chatapp.slash import SlashCommands
    from chatapp.widgets.chat_view import ChatView
    from chatapp.widgets.status_bar import StatusBar

CLEAR_SYSTEM = ("-", "--clear")


def _progress_text(event: Progress) -> str:
    if event.total:
        return f"{event.stage} {100 * event.done / event.total:.0f}%".strip()
    return event.stage


class ModelControls:
    """Model switching and session settings for `ChatScreen` (see the module docstring).

    The screen provides `engine`, `model`, `model_ready`, `settings`, `system_prompt`,
    `status_bar`, `chat_view`, `slash_commands`, `generating` and `load_model`.
    """

    session_overrides: dict[str, Any]
    """This session's `/set` values, as `GenerationSettings` fields."""
    switching: str | None
    """The model being switched to, while it loads."""

    if TYPE_CHECKING:  # what ChatScreen provides
        app: Any
        engine: Engine
        model: ModelSpec | None
        model_error: str | None
        model_ready: bool
        settings: GenerationSettings
        system_prompt: str | None
        status_bar: StatusBar
        chat_view: ChatView
        slash_commands: SlashCommands
        generating: bool

        def notify(self, message: str, **kwargs: Any) -> None: ...
        def call_later(self, callback: Any, *args: Any, **kwargs: Any) -> bool: ...
        def load_model(self, *, restart: bool = False) -> Any: ...

    def setup_model_controls(self) -> None:
        """Call from `__init__`, after `self.settings` and `self.slash_commands` exist."""
        self.session_overrides = {}
        self.switching = None
        self._model_settings: GenerationSettings = self.settings
        commands = self.slash_commands
        commands.add(
            "model",
            "switch the model, keeping the chat (alone: open the picker)",
            ModelControls._slash_model,
            "[NAME]",
            complete=ModelControls._complete_model,
        )
        commands.add(
            "set",
            "set temperature, max_tokens, top_p, top_k, repetition_penalty or seed for this "
            "session (alone: show them; `/set reset`)",
            ModelControls._slash_set,
            "[KEY VALUE]",
            complete=ModelControls._complete_set,
        )
        commands.add(
            "system",
            "set the system prompt (alone: show it; `/system -` removes it)",
            ModelControls._slash_system,
            "[TEXT]",
        )

    def on_mount(self) -> None:
        """Textual calls each class's `on_mount` in the MRO: this one runs after the screen's."""
        self._show_settings()

    # --- what is configured ------------------------------------------------------------------

    @property
    def config(self) -> Settings | None:
        """The app's config settings (None in tests that give fixed generation settings)."""
        return getattr(self.app, "config", None)

    @property
    def model_name(self) -> str | None:
        model: ModelSpec | None = self.model
        return model.name if model is not None else None

    def _apply_settings(self) -> None:
        """`self.settings` := the model's settings with this session's values on top."""
        settings = dataclasses.replace(self._model_settings, **self.session_overrides)
        self.settings = settings
        self._show_settings()

    def _show_settings(self) -> None:
        status = self.status_bar
        if hasattr(status, "settings_text"):
            status.settings_text = describe_settings(self.settings, short=True)

    def set_session_overrides(self, values: Mapping[str, Any]) -> None:
        """Replace this session's `/set` values (e.g. from a saved session's settings)."""
        fields = {f.name for f in dataclasses.fields(GenerationSettings)} - {"stop"}
        self.session_overrides = {k: v for k, v in values.items() if k in fields}
        self._apply_settings()

    # --- switching ---------------------------------------------------------------------------

    def switch_model(self, name: str) -> bool:
        """Start switching to `name`; False (and the user is told) when it cannot start."""
        name = name.strip()
        if not name:
            return False
        if self.generating:
            self.notify("Still replying: wait, or press Esc to stop, then switch.", markup=False)
            return False
        if self.switching is not None or self.status_bar.state == "loading":
            loading = self.switching or self.model_name or "the model"
            self.notify(f"Loading {loading}… switch when it is ready.", markup=False)
            return False
        if name == self.model_name and self.model_ready:
            self.notify(f"Already using {name}.", markup=False)
            return False
        self.switching = name
        self._switch(name)
        return True

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _switch(self, name: str) -> None:
        status = self.status_bar
        previous: ModelSpec | None = self.model
        was_ready: bool = self.model_ready
        old_state = status.state
        loop = asyncio.get_running_loop()

        def converting(stage: str, done: float, total: float | None) -> None:  # a thread
            text = _progress_text(Progress(0, stage, done, total))
            loop.call_soon_threadsafe(setattr, status, "detail", text)

        try:
            status.model_name, status.state, status.detail = name, "loading", ""
            try:
                spec = await asyncio.to_thread(registry.resolve, name, self.config, converting)
            except ModelError as error:
                self._restore(previous, was_ready, old_state)
                self.notify(f"Cannot switch to {name}: {error}", severity="error", markup=False)
                return
            self.model_ready = False
            async for event in self.engine.stream(LoadModel(spec)):
                if isinstance(event, Progress):
                    status.detail = _progress_text(event)
                elif isinstance(event, ModelReady):
                    await self._switched(spec, event)
                elif isinstance(event, Failed):
                    self._restore(previous, was_ready, old_state)
                    reason = event.reason
                    if previous is not None and was_ready and "still using" not in reason:
                        reason += f"; still using {previous.name}"
                    text = f"⚠ Switching to {name} failed: {reason}"
                    await self.chat_view.add_notice(text, variant="error")
                    self.notify(text, severity="error", markup=False)
                elif isinstance(event, WorkerDied):
                    # It died loading the model (out of memory?): restart with the old one.
                    self._restore(previous, False, "error")
                    text = f"⚠ The model worker stopped while loading {name}; restarting it."
                    await self.chat_view.add_notice(text, variant="error")
                    if previous is not None:
                        self.call_later(partial(self.load_model, restart=True))
                    else:
                        await asyncio.to_thread(self.engine.restart)
        finally:
            self.switching = None

    def _restore(self, previous: ModelSpec | None, ready: bool, state: str) -> None:
        status = self.status_bar
        self.model = previous
        self.model_ready = ready
        status.model_name = previous.name if previous else ""
        status.state = "ready" if ready else ("no model" if previous is None else state)
        status.detail = ""

    async def _switched(self, spec: ModelSpec, event: ModelReady) -> None:
        previous = self.model_name
        self.model = spec
        self.model_error = None
        self.model_ready = True
        status = self.status_bar
        status.model_name, status.state, status.detail = spec.name, "ready", ""
        status.context_window = event.context_window
        status.context_used = None
        status.tokens_per_second = None
        config = self.config
        if config is not None:
            self._model_settings = registry.generation_for(spec.name, config)
        self._apply_settings()
        self._remember_model(spec.name)
        took = f" in {event.load_seconds:.1f} s" if event.load_seconds >= 0.05 else ""
        changed = f"{previous} → {spec.name}" if previous else spec.name
        await self.chat_view.add_notice(
            f"Model: {changed} (loaded{took}; context {event.context_window} tokens). "
            "The conversation is kept; the next reply is built for this model.",
            variant="muted",
        )

    def _store(self, operation: Any, *args: Any) -> None:
        """A store write through the screen's `save` (one notice for a StoreError)."""
        save = getattr(self, "save", None)
        if save is not None:
            save(operation, *args)
        else:
            operation(*args)

    def _remember_model(self, name: str) -> None:
        conversation = getattr(self, "conversation", None)
        if conversation is None:
            return
        conversation.model = name
        session_id = getattr(conversation, "session_id", None)
        if session_id is not None:
            self._store(conversation.store.set_session_model, session_id, name)

    def _remember_settings(self) -> None:
        """The `/set` values go into the session's settings, under "generation"."""
        conversation = getattr(self, "conversation", None)
        if conversation is None:
            return
        settings = dict(getattr(conversation, "settings", None) or {})
        settings["generation"] = dict(self.session_overrides)
        conversation.settings = settings
        session_id = getattr(conversation, "session_id", None)
        if session_id is not None:
            self._store(conversation.store.set_session_settings, session_id, settings)

    def restore_session(self, model: str | None, settings: Mapping[str, Any] | None) -> None:
        """A saved session was opened: use its `/set` values, and switch to its model
        (when it is another one and can be found; otherwise the user is told)."""
        conversation = getattr(self, "conversation", None)
        if conversation is not None and isinstance(settings, Mapping):
            conversation.settings = dict(settings)
        generation = (settings or {}).get("generation")
        self.set_session_overrides(generation if isinstance(generation, Mapping) else {})
        current = self.model_name
        if not model or model == current:
            return
        busy = self.generating or self.switching is not None or self.status_bar.state == "loading"
        if current is not None and busy:
            self.notify(
                f"This session was with {model}; replies now come from {current} "
                f"(/model {model} switches back).",
                markup=False,
            )
            return
        self.switch_model(model)

    # --- the picker ----------------------------------------------------------------------

    def action_pick_model(self) -> None:
        """Ctrl+O: choose a model (or pull one) from the picker."""
        entries = registry.list_entries(self.config)

        def chosen(name: str | None) -> None:
            if name:
                self.switch_model(name)

        self.app.push_screen(ModelPicker(entries, self.model_name), chosen)

    # --- slash commands ------------------------------------------------------------------

    async def _slash_model(self, argument: str) -> None:
        if not argument:
            self.action_pick_model()
        else:
            self.switch_model(argument)

    def _complete_model(self, partial_name: str) -> list[str]:
        names = [e.name for e in registry.list_entries(self.config)]
        return [n for n in names if n.startswith(partial_name)]

    def _complete_set(self, partial_key: str) -> list[str]:
        keys = [k for k in registry.SESSION_KEYS if k not in ("temp", "max_new_tokens")]
        return [f"{k} " for k in [*keys, "reset"] if k.startswith(partial_key.lower())]

    async def _slash_set(self, argument: str) -> None:
        key, _, value = argument.partition(" ")
        if not key:
            mine = ", ".join(f"{k}={v}" for k, v in self.session_overrides.items())
            text = f"{self.model_name or 'no model'}: {describe_settings(self.settings)}"
            text += (
                f"\nset in this session: {mine}" if mine else "\n(model defaults; /set KEY VALUE)"
            )
            await self.chat_view.add_notice(text, variant="muted")
            return
        if key.lower() == "reset":
            self.session_overrides.clear()
            self._apply_settings()
            self._remember_settings()
            self.notify(
                f"Back to the model's settings: {describe_settings(self.settings)}", markup=False
            )
            return
        try:
            if not value.strip():
                field, _ = parse_setting(key, "1")
                current = getattr(self.settings, field)
                self.notify(f"{key} is {current}", markup=False)
                return
            field, parsed = parse_setting(key, value)
        except SettingError as error:
            self.notify(str(error), severity="warning", markup=False)
            return
        self.session_overrides[field] = parsed
        self._apply_settings()
        self._remember_settings()
        shown = "random" if parsed is None else f"{parsed:g}"
        self.notify(f"{key} = {shown} for this session", markup=False)

    async def _slash_system(self, argument: str) -> None:
        conversation = getattr(self, "conversation", None)
        if not argument:
            current = self.system_prompt
            text = f"System prompt: {current}" if current else "No system prompt (/system TEXT)."
            await self.chat_view.add_notice(text, variant="muted")
            return
        prompt = None if argument.strip() in CLEAR_SYSTEM else argument
        self.system_prompt = prompt
        if conversation is not None:
            conversation.system_prompt = prompt
            session_id = getattr(conversation, "session_id", None)
            if session_id is not None:
                self._store(conversation.store.set_system_prompt, session_id, prompt)
        self.notify(
            "System prompt removed." if prompt is None else "System prompt set.", markup=False
        )


# --- the command palette: "Model: NAME" for each chat model ------------------------------


def palette_entries(screen: Screen) -> Iterator[Any]:
    if not isinstance(screen, ModelControls):
        return
    from chatapp.palette import PaletteEntry

    active = screen.model_name
    for entry in registry.list_entries(screen.config):
        state = "active" if entry.name == active else ("installed" if entry.installed else "pull")
        about = f"{registry.format_size(entry.size)}, {entry.context_window} tokens, {state}"
        yield PaletteEntry(
            f"Model: {entry.name}", about, partial(screen.switch_model, entry.name), False
        )


def install_palette() -> None:
    try:
        from chatapp import palette
    except ImportError:  # pragma: no cover - the palette is optional
        return
    palette.add_source(palette_entries)


install_palette()
