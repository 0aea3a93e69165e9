"""Slash commands in the prompt, through the real app and Pilot."""

from __future__ import annotations

import pytest

from chatapp.app import ChatApp
from chatapp.slash import SlashCommands, UnknownCommand, parse, unescape
from tests.fakes import FakeEngine, Reply
from tests.test_app import SIZE, SPEC, messages, notes_of, rendered_text, send, settle


def test_parse_and_unescape():
    assert parse("/model  gemma3-270m ") == ("model", "gemma3-270m")
    assert parse("/HELP") == ("help", "")
    assert parse("hello /not a command") is None
    assert parse("//etc/hosts is a path") is None
    assert unescape("//etc/hosts") == "/etc/hosts"
    assert unescape("plain") == "plain"


async def test_registry_runs_sync_and_async_handlers_and_rejects_unknown():
    seen = []

    async def later(target, arg):
        seen.append(("async", arg))

    commands = SlashCommands()
    commands.add("now", "sync", lambda target, arg: seen.append(("sync", arg)))
    commands.add("later", "async", later, usage="TEXT")
    await commands.run(None, "now", "a")
    await commands.run(None, "later", "b")
    assert seen == [("sync", "a"), ("async", "b")]
    assert commands.complete("l") == ["later"]
    with pytest.raises(UnknownCommand, match=r"/nope.*/help"):
        await commands.run(None, "nope", "")


async def test_help_lists_commands_and_unknown_commands_warn():
    engine = FakeEngine([Reply(["hi"])])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "/help")
        await settle(app, pilot)
        text = rendered_text(app.chat.chat_view)
        assert "/help" in text and "/new" in text
        assert engine.generates == []  # nothing went to the model
        with notes_of(app) as notes:
            await send(pilot, "/bogus")
            await settle(app, pilot)
        assert any("unknown command /bogus" in n for n in notes)


async def test_double_slash_sends_a_message_starting_with_a_slash():
    engine = FakeEngine([Reply(["ok"])])
    app = ChatApp(engine, SPEC)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await send(pilot, "//etc/hosts")
        await settle(app, pilot)
        assert engine.generates[-1].messages[-1].content == "/etc/hosts"
        assert messages(app)[-1].text == "ok"
