"""End to end on the real pulled models (pulled by `make test` before pytest runs)."""

from __future__ import annotations

import pytest

from tests.conftest import chatapp, real_model_dir

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def smollm2():
    if real_model_dir("smollm2-135m-instruct") is None:
        pytest.skip("SmolLM2 is not pulled: run `make models`")
    return "smollm2-135m-instruct"


def test_smollm2_knows_the_capital_of_france(smollm2):
    result = chatapp(
        "ask",
        "--model",
        smollm2,
        "--temperature",
        "0",
        "--max-tokens",
        "30",
        "What is the capital of France?",
    )
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
