"""`chatapp ask`: one question, the reply streamed to stdout (for scripts and pipes)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from chatapp.engine.protocol import (
    ChatMessage,
    Done,
    Failed,
    Generate,
    LoadModel,
    Progress,
    Token,
    WorkerDied,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "ask", help="ask one question; the reply streams to stdout", description=__doc__
    )
    parser.add_argument("prompt", nargs="*", help="the question (read from stdin if absent or -)")
    parser.add_argument("-m", "--model", help="model name or path")
    parser.add_argument("-s", "--system", help="system prompt")
    parser.add_argument("-t", "--temperature", type=float)
    parser.add_argument("--max-tokens", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--stats", action="store_true", help="print timing stats to stderr")
    parser.add_argument(
        "--no-save", action="store_true", help="do not save the exchange as a session"
    )
    parser.add_argument(
        "-c",
        "--continue",
        dest="continue_last",
        action="store_true",
        help="continue the last session: its messages are the context, the exchange is added",
    )
    parser.add_argument("--session", metavar="ID", help="continue the session with this id")
    parser.set_defaults(func=run)


def read_prompt(args: argparse.Namespace) -> str:
    words = args.prompt
    stdin = sys.stdin
    piped = stdin is not None and not stdin.closed and not stdin.isatty()
    if not words or words == ["-"]:
        return stdin.read() if piped else ""
    text = " ".join(words)
    if piped:
        extra = stdin.read()
        if extra.strip():
            text = f"{text}\n\n{extra}"
    return text


def fail(message: str) -> int:
    print(f"chatapp: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    from chatapp.commands.ask_log import AskLog, open_log
    from chatapp.launch import generation_settings
    from chatapp.resume import prepare_for

    prompt = read_prompt(args).strip()
    if not prompt:
        return fail("nothing to ask: give a question, or pipe one to stdin")
    try:
        sessions, log = open_log(args)  # saved by default, as `llm` logs: see ask_log
    except ValueError as error:
        return fail(str(error))
    try:
        startup = prepare_for(args, sessions.session if sessions is not None else None)
        for problem in startup.problems:
            print(f"chatapp: {problem}", file=sys.stderr)
        if startup.model is None:
            return fail(startup.model_error or "no model")
        system = args.system or AskLog.system_prompt_of(sessions) or startup.settings.system_prompt
        messages = [ChatMessage("system", system)] if system else []
        messages += AskLog.history_of(sessions)
        messages.append(ChatMessage("user", prompt))
        settings = generation_settings(args, startup.generation)
        if log is not None:
            log.start(startup.model, system)
        return asyncio.run(
            _ask(startup.model, tuple(messages), settings, show_stats=args.stats, log=log)
        )
    finally:
        if sessions is not None:
            sessions.close()


async def _ask(model, messages, settings, *, show_stats: bool, log=None) -> int:
    from chatapp.engine.client import EngineClient

    out = sys.stdout
    clean = _terminal_filter(out)
    engine = EngineClient()
    engine.start()
    try:
        async for event in engine.stream(LoadModel(model)):
            if isinstance(event, Progress) and sys.stderr.isatty():
                print(f"\r\033[2K{model.name}: {event.stage}…", end="", file=sys.stderr)
            elif isinstance(event, Failed | WorkerDied):
                return fail(_reason(event))
        if sys.stderr.isatty():
            print("\r\033[2K", end="", file=sys.stderr)
        if log is not None:
            messages = log.begin(messages)  # the question is committed before the reply
        async for event in engine.stream(Generate(messages, settings)):
            if isinstance(event, Token):
                out.write(clean(event.text))
                out.flush()
                if log is not None:
                    log.grew(event.text)
            elif isinstance(event, Done):
                if log is not None:
                    log.finish(event.text, event.finish_reason, event.stats)
                out.write("\n")
                out.flush()
                if show_stats:
                    s = event.stats
                    print(
                        f"{s.prompt_tokens} prompt tokens, {s.new_tokens} new, "
                        f"{s.time_to_first_token:.2f} s to first token, "
                        f"{s.tokens_per_second:.1f} tokens/s",
                        file=sys.stderr,
                    )
            elif isinstance(event, Failed | WorkerDied):
                if log is not None:
                    log.failed(event)
                out.write("\n")
                return fail(_reason(event))
    finally:
        if log is not None:
            log.failed(None)  # no-op unless the reply was cut short (Ctrl+C)
        engine.close()
    return 0


def _reason(event: Failed | WorkerDied) -> str:
    if isinstance(event, Failed):
        return event.reason
    return f"the model worker stopped unexpectedly (exit code {event.exitcode})"


def _terminal_filter(stream):
    """A terminal gets model text made inert; a pipe or file gets it raw."""
    if stream.isatty():
        from chatapp.sanitize import sanitize

        return sanitize
    return lambda text: text
