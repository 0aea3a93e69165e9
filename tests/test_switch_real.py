"""End to end on the two real chat models: SmolLM2 -> Gemma-270M -> SmolLM2, one chat."""

from __future__ import annotations

import pytest

from chatapp.app import ChatApp
from chatapp.config import Settings
from chatapp.registry import resolve
from tests.conftest import real_model_dir
from tests.test_app import send, settle
from tests.test_app_switch import labels, status

pytestmark = [pytest.mark.real_model, pytest.mark.timeout(600)]

SMOL, GEMMA = "smollm2-135m-instruct", "gemma3-270m"


@pytest.fixture(scope="module")
def both_models() -> None:
    for name in (SMOL, GEMMA):
        if real_model_dir(name) is None:
            pytest.skip(f"{name} is not pulled: run `chatapp models pull {name}`")


async def test_a_conversation_moves_from_smollm2_to_gemma_and_back(both_models) -> None:
    from chatapp.engine.client import EngineClient

    client = EngineClient()
    client.start()
    try:
        config = Settings()
        app = ChatApp(client, resolve(SMOL, config), config=config)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            assert app.chat.model_ready, status(app).state_text
            await send(pilot, "/set temperature 0")
            await send(pilot, "/set max_tokens 24")
            await send(pilot, "What is the capital of France?")
            await settle(app, pilot)
            first = app.chat.chat_view.messages[-1]
            assert "Paris" in first.text, (first.text, first.footer)

            await send(pilot, f"/model {GEMMA}")
            await settle(app, pilot)
            assert app.chat.model.name == GEMMA and app.chat.model_ready
            await send(pilot, "And what is the capital of Italy?")
            await settle(app, pilot)
            second = app.chat.chat_view.messages[-1]
            assert second.text.strip(), second.footer
            assert "User:" not in second.text  # the base model stopped before our turn
            gemma_context = status(app).context_used

            await send(pilot, f"/model {SMOL}")
            await settle(app, pilot)
            assert app.chat.model.name == SMOL and app.chat.model_ready
            await send(pilot, "Thank you. Which two cities did we talk about?")
            await settle(app, pilot)
            third = app.chat.chat_view.messages[-1]
            assert third.text.strip(), third.footer
            assert labels(app) == ["you", SMOL, "you", GEMMA, "you", SMOL]
            # Each reply saw the whole conversation (all three turns fit both windows).
            assert gemma_context is not None and status(app).context_used > gemma_context
            history = app.chat.history
            assert [m.model for m in history if m.role == "assistant"] == [SMOL, GEMMA, SMOL]
    finally:
        client.close()
