"""Import boundaries: the UI never imports torch/transformers; the engine never textual."""

from __future__ import annotations

import pytest

from tests.conftest import run_python

UI_MODULES = [
    "chatapp.cli",
    "chatapp.launch",
    "chatapp.app",
    "chatapp.screens.chat",
    "chatapp.engine.client",
    "chatapp.engine.models",
    "chatapp.config",
    "chatapp.store",
]
HEAVY = ["torch", "transformers", "tokenizers", "safetensors", "numpy"]


def imported_after(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sys.modules))"
    )
    out = run_python("-c", code)
    assert out.returncode == 0, out.stderr
    return {name.split(".")[0] for name in out.stdout.split()}


def test_ui_process_never_imports_the_model_stack():
    loaded = imported_after(UI_MODULES)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.parametrize("module", ["chatapp.engine.worker", "chatapp.engine.decode"])
def test_engine_never_imports_textual(module):
    assert "textual" not in imported_after([module])


def test_cli_help_is_fast_to_import():
    loaded = imported_after(["chatapp.cli"])
    assert "textual" not in loaded
