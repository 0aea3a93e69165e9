"""When to restart a model worker that died, and when to stop trying.

A worker that dies (killed, out of memory, a crash in native code while loading) is
restarted with the same model after a delay that doubles with each failure in a row:
1 s, 2 s, 4 s… up to `cap`. After `max_failures` failures in a row the app stops
restarting and tells the user how to retry (`/restart`). A healthy reply resets the
count, and so does a failure long after the previous one (`quiet_period`): a worker that
died once an hour is not "looping".

Pure logic (no textual, no torch): the chat screen owns one and asks it what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class RestartPolicy:
    base: float = 1.0
    """Seconds before the first restart."""
    cap: float = 30.0
    """The longest wait between restarts."""
    max_failures: int = 4
    """Failures in a row after which restarting stops (the user can `/restart`)."""
    quiet_period: float = 120.0
    """A failure this long after the previous one starts the count again."""
    clock: Callable[[], float] = time.monotonic
    failures: int = field(default=0, init=False)
    last_failure: float | None = field(default=None, init=False)

    def failed(self) -> float | None:
        """Record a death: seconds to wait before restarting, or None to stop trying."""
        now = self.clock()
        if self.last_failure is not None and now - self.last_failure > self.quiet_period:
            self.failures = 0
        self.last_failure = now
        self.failures += 1
        if self.failures > self.max_failures:
            return None
        return min(self.base * 2 ** (self.failures - 1), self.cap)

    def healthy(self) -> None:
        """A reply finished: the worker works, forget the failures."""
        self.failures = 0
        self.last_failure = None

    @property
    def gave_up(self) -> bool:
        return self.failures > self.max_failures
