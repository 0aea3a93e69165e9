"""Snapshots (pytest-textual-snapshot) of the main screens, on a fake engine.

Each main screen at 80×24 and 120×40 in a dark and a light theme, plus the slash hint
and the theme search in the palette. The scenes are in `tests/scenes.py`. After a
deliberate change of the look, review and accept the new pictures with
`pytest tests/test_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import pytest

from tests.scenes import SCENES

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
THEMES = ["chatapp-dark", "chatapp-light"]


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("scene", ["conversation", "first-run", "help"])
def test_main_screens(snap_compare, scene: str, size: str, theme: str) -> None:
    made = SCENES[scene](theme)
    assert snap_compare(made.app, terminal_size=SIZES[size], run_before=made.run_before)


@pytest.mark.parametrize("scene", ["slash-hint", "palette"])
def test_typing_a_command(snap_compare, scene: str) -> None:
    made = SCENES[scene]("chatapp-nord")
    assert snap_compare(made.app, terminal_size=SIZES["80x24"], run_before=made.run_before)
