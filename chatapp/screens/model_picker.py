"""The model picker: every chat model with its size, context window and install state.

Enter on an installed model chooses it (the screen dismisses with its name). Enter on a
catalogue model that is not pulled yet pulls it first, with a progress bar: the pull
(`chatapp.engine.pull.pull_model`: download, checksum, convert in a child process) runs
in a thread worker, so the UI stays live and never imports torch; when it is done the
picker dismisses with the name. Esc closes the picker (a pull that is running goes on
in the background and installs the model).
"""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, ProgressBar, Static
from textual.worker import Worker, WorkerState

from chatapp.registry import RegistryEntry, describe_settings, format_size
from chatapp.sanitize import sanitize

PROGRESS_INTERVAL = 0.1
"""Seconds between progress updates from the pull's thread (stage changes always pass)."""


def state_of(entry: RegistryEntry, active: str | None) -> str:
    if entry.name == active:
        return "● active"
    if entry.installed:
        return "installed"
    return "not pulled" if entry.pullable else "missing"


class ModelPicker(ModalScreen[str | None]):
    """Choose (or pull, then choose) a chat model."""

    DEFAULT_CSS = """
    ModelPicker {
        align: center middle;
    }
    ModelPicker #picker {
        width: 90%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        padding: 0 1;
        border: round $accent;
        border-title-color: $text-accent;
        background: $surface;
    }
    ModelPicker DataTable {
        height: auto;
        max-height: 14;
    }
    ModelPicker #picker-about {
        height: auto;
        color: $text-muted;
        margin: 1 0 0 0;
    }
    ModelPicker ProgressBar {
        display: none;
        height: 1;
    }
    ModelPicker.-pulling ProgressBar {
        display: block;
    }
    ModelPicker #picker-stage {
        height: auto;
    }
    ModelPicker #picker-stage.-error {
        color: $text-error;
    }
    ModelPicker #picker-hint {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="picker.close"),
    ]

    def __init__(self, entries: list[RegistryEntry], active: str | None = None) -> None:
        super().__init__()
        self.entries = {entry.name: entry for entry in entries}
        self.active = active
        self.pulling: str | None = None
        self._last_report = 0.0
        self._last_stage = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="picker") as box:
            box.border_title = "Switch model"
            yield DataTable(id="picker-table", cursor_type="row", zebra_stripes=True)
            yield Static(Text(""), id="picker-about")
            yield ProgressBar(total=None, show_eta=False, id="picker-progress")
            yield Static(Text(""), id="picker-stage")
            yield Label(
                Text("enter: use (or pull, then use) · esc: close · the chat is kept"),
                id="picker-hint",
            )

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("model", key="model")
        table.add_column("size", key="size")
        table.add_column("context", key="context")
        table.add_column("state", key="state")
        table.add_column("from", key="source")
        for entry in self.entries.values():
            table.add_row(
                Text(sanitize(entry.name)),
                Text(format_size(entry.size), justify="right"),
                Text(f"{entry.context_window}", justify="right"),
                Text(state_of(entry, self.active)),
                Text(entry.source),
                key=entry.name,
            )
        names = list(self.entries)
        if self.active in names:
            table.move_cursor(row=names.index(self.active))
        table.focus()
        self._describe(self.highlighted)

    @property
    def highlighted(self) -> RegistryEntry | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.entries.get(str(key))

    def _describe(self, entry: RegistryEntry | None) -> None:
        if entry is None:
            text = "No chat models: pull one with `chatapp models pull NAME`."
        else:
            about = entry.description or str(entry.path or "")
            text = f"{about}\ndefaults: {describe_settings(entry.defaults, short=True)}"
        self.query_one("#picker-about", Static).update(Text(sanitize(text)))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe(self.entries.get(str(event.row_key.value)))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        entry = self.entries.get(str(event.row_key.value))
        if entry is not None:
            self.choose(entry)

    def choose(self, entry: RegistryEntry) -> None:
        """Use an installed model; pull a catalogue one first; refuse a missing path."""
        if self.pulling is not None:
            self.notify(f"Pulling {self.pulling}… wait for it, or press Esc.", markup=False)
        elif entry.installed:
            self.dismiss(entry.name)
        elif entry.pullable:
            self.start_pull(entry.name)
        else:
            self.notify(f"{entry.name}: {entry.description}", severity="warning", markup=False)

    def action_close(self) -> None:
        if self.pulling is not None:
            self.notify(f"{self.pulling} goes on pulling in the background.", markup=False)
        self.dismiss(None)

    # --- pulling ---------------------------------------------------------------------------

    def start_pull(self, name: str) -> None:
        self.pulling = name
        self.add_class("-pulling")
        stage = self.query_one("#picker-stage", Static)
        stage.remove_class("-error")
        stage.update(Text(sanitize(f"pulling {name}: starting…")))
        self._pull(name)

    @work(thread=True, exclusive=True, group="pull", exit_on_error=False)
    def _pull(self, name: str) -> str:
        from chatapp.engine import pull

        pull.pull_model(name, self._report)
        return name

    def _report(self, stage: str, done: float, total: float | None) -> None:
        """Called in the pull's thread: throttled, then handed to the UI thread."""
        now = time.monotonic()
        edge = stage != self._last_stage or (total is not None and done >= total)
        if not edge and now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report, self._last_stage = now, stage
        self.app.call_from_thread(self._show_progress, stage, done, total)

    def _show_progress(self, stage: str, done: float, total: float | None) -> None:
        try:
            self.query_one(ProgressBar).update(total=total, progress=done)
            percent = f" {100 * done / total:.0f}%" if total else ""
            text = f"pulling {self.pulling}: {stage}{percent}"
            self.query_one("#picker-stage", Static).update(Text(sanitize(text)))
        except NoMatches:  # the picker was closed; the pull goes on
            pass

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "pull":
            return
        event.stop()  # a failed pull is the picker's to report, not an error of the app
        if event.state == WorkerState.SUCCESS:
            name = event.worker.result
            self.pulling = None
            if self.is_current:
                self.dismiss(name)
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            error = event.worker.error
            reason = str(error) if error is not None else "cancelled"
            failed, self.pulling = self.pulling, None
            self.remove_class("-pulling")
            try:
                stage = self.query_one("#picker-stage", Static)
            except NoMatches:
                return
            stage.add_class("-error")
            stage.update(Text(sanitize(f"⚠ could not pull {failed}: {reason}")))
