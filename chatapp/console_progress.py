"""Progress of long start-up work (converting a .gguf) on stderr, before the TUI opens.

A `ProgressFn` for `resolve_model` and friends. On a terminal it redraws one line
("converting model.gguf: saving 3/5  60%"), at most ten times a second; when stderr is
not a terminal it prints each stage once, so logs stay short. stdout is never touched
(`chatapp ask` streams the reply there).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["StderrProgress"]


class StderrProgress:
    def __init__(self, stream: TextIO | None = None, *, interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._stage: str | None = None
        self._last = 0.0
        self._width = 0

    def __call__(self, stage: str, done: float, total: float | None) -> None:
        now = time.monotonic()
        new_stage = stage != self._stage
        finished = total is not None and done >= total
        if not self.live:
            if new_stage:
                self._stage = stage
                print(f"chatapp: {stage}…", file=self.stream, flush=True)
            return
        if not (new_stage or finished) and now - self._last < self.interval:
            return
        self._stage, self._last = stage, now
        percent = f"  {100 * done / total:3.0f}%" if total else ""
        line = f"chatapp: {stage}{percent}"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)

    def close(self) -> None:
        """End the redrawn line (call once the work is done)."""
        if self.live and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
