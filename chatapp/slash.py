"""Slash commands typed into the prompt: `/name argument`.

Each feature registers its commands with the screen's `SlashCommands`; the prompt sends
a line starting with "/" here instead of to the model. "//text" sends "/text" as a
message.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

Handler = Callable[[Any, str], Awaitable[None] | None]
Completer = Callable[[Any, str], list[str]]
"""(target, partial argument) -> the arguments that could complete it, for Tab in the prompt."""


@dataclass(frozen=True)
class SlashCommand:
    name: str
    summary: str
    run: Handler
    usage: str = ""
    complete: Completer | None = None

    @property
    def signature(self) -> str:
        return f"/{self.name} {self.usage}".rstrip()


class UnknownCommand(LookupError):
    pass


def parse(text: str) -> tuple[str, str] | None:
    """('name', 'argument') for a slash command line, None for a message."""
    stripped = text.strip()
    if not stripped.startswith("/") or stripped.startswith("//"):
        return None
    name, _, argument = stripped[1:].partition(" ")
    return name.lower(), argument.strip()


def unescape(text: str) -> str:
    """A message typed as "//text" is sent as "/text"."""
    return text.strip()[1:] if text.strip().startswith("//") else text


class SlashCommands:
    def __init__(self) -> None:
        self._commands: dict[str, SlashCommand] = {}

    def add(
        self,
        name: str,
        summary: str,
        run: Handler,
        usage: str = "",
        *,
        complete: Completer | None = None,
    ) -> None:
        self._commands[name] = SlashCommand(name, summary, run, usage, complete)

    def get(self, name: str) -> SlashCommand | None:
        return self._commands.get(name)

    def __iter__(self) -> Iterator[SlashCommand]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def __contains__(self, name: str) -> bool:
        return name in self._commands

    def complete(self, prefix: str) -> list[str]:
        """Command names starting with `prefix` (without its slash)."""
        return [c.name for c in self if c.name.startswith(prefix.lower())]

    async def run(self, target: Any, name: str, argument: str) -> None:
        command = self._commands.get(name)
        if command is None:
            close = self.complete(name[:1])
            hint = f" (did you mean {', '.join('/' + c for c in close)}?)" if close else ""
            raise UnknownCommand(f"unknown command /{name}{hint}; /help lists them")
        result = command.run(target, argument)
        if inspect.isawaitable(result):
            await result
