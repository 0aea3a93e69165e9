"""Stop strings over streamed text: cut at the first stop string, hold back partial ones.

Text that might be the start of a stop string is held back until the next delta shows
whether it is one, so a stop string never flashes on the screen.
"""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Return the text that is safe to show now; sets `stopped` on a full match."""
        if self.stopped:
            return ""
        text = self._held + delta
        if not self._stops:
            self._held = ""
            return text
        cut = min((i for s in self._stops if (i := text.find(s)) != -1), default=-1)
        if cut != -1:
            self._held = ""
            self.stopped = True
            return text[:cut]
        hold = self._partial_suffix(text)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of the stream a held partial match is just text."""
        text, self._held = self._held, ""
        return "" if self.stopped else text

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of `text` that is a proper prefix of a stop."""
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
