"""Completing slash commands in the prompt, as you type.

Two things come out of the text typed so far (one line that starts with "/"):

- `suggestion(...)`: the ghost text after the cursor. For `/mo` it is `del ` when
  `/model` is the only command starting so; with several matches it is their common
  prefix. After the command's name, a command with a completer (e.g. `/theme`) completes
  its argument the same way. Tab (or →) accepts it.
- `hint(...)`: one line describing what matches, shown in the prompt's top border:
  the signature and summary of the one command, the names of several, or "no command".

Pure functions over a `SlashCommands` registry: the widget decides where to show them.
"""

from __future__ import annotations

from typing import Any

from chatapp.slash import SlashCommand, SlashCommands

__all__ = ["hint", "split_slash", "suggestion"]


def split_slash(text: str) -> tuple[str, str | None] | None:
    """('name-so-far', None) while the name is typed, ('name', 'argument-so-far') after a
    space; None when `text` is not a one-line slash command ("//" sends a message)."""
    if not text.startswith("/") or text.startswith("//") or "\n" in text:
        return None
    name, space, argument = text[1:].partition(" ")
    return (name.lower(), argument if space else None)


def _completions(commands: SlashCommands, target: Any, text: str) -> tuple[str, list[str]]:
    """(what is typed of the word being completed, the words that complete it)."""
    parts = split_slash(text)
    if parts is None:
        return "", []
    name, argument = parts
    if argument is None:
        return name, commands.complete(name)
    command = commands.get(name)
    if command is None or command.complete is None or " " in argument:
        return argument, []
    try:
        options = command.complete(target, argument)
    except Exception:  # a completer must never break typing
        return argument, []
    return argument, [option for option in options if option.startswith(argument)]


def suggestion(commands: SlashCommands, target: Any, text: str) -> str:
    """The text to add after `text` (empty when there is nothing to complete)."""
    typed, options = _completions(commands, target, text)
    if not options:
        return ""
    if len(options) > 1:
        return _common_prefix(options)[len(typed) :]
    rest = options[0][len(typed) :]
    completing_name = split_slash(text) == (typed, None)
    if completing_name and _takes_argument(commands.get(options[0])):
        rest += " "
    return rest


def _common_prefix(words: list[str]) -> str:
    first, last = min(words), max(words)
    size = next((i for i, (a, b) in enumerate(zip(first, last, strict=False)) if a != b), None)
    return first if size is None else first[:size]


def _takes_argument(command: SlashCommand | None) -> bool:
    return command is not None and bool(command.usage)


def hint(commands: SlashCommands, target: Any, text: str, *, limit: int = 8) -> str:
    """A one-line description of what `text` could become ("" when it is no command)."""
    parts = split_slash(text)
    if parts is None:
        return ""
    name, argument = parts
    if argument is not None:
        command = commands.get(name)
        if command is None:
            return f"no command /{name} · /help lists them"
        _, options = _completions(commands, target, text)
        if len(options) > 1 and argument:
            return _listing(options, limit)
        return f"{command.signature} — {command.summary}"
    names = commands.complete(name)
    if not names:
        return f"no command /{name} · /help lists them"
    if len(names) == 1:
        command = commands.get(names[0])
        assert command is not None
        return f"{command.signature} — {command.summary} · tab completes"
    return _listing(["/" + n for n in names], limit) + " · tab completes"


def _listing(options: list[str], limit: int) -> str:
    shown = " ".join(options[:limit])
    return shown + (f" +{len(options) - limit}" if len(options) > limit else "")
