"""Write an SVG screenshot of the app in each shipped theme, for the README.

    python -m tests.screenshots            # -> themes/screenshots/<theme>.svg
    python -m tests.screenshots --out DIR --size 100x30 --scene first-run

The pictures come from the app itself (`App.save_screenshot`), on the scripted fake
engine of the snapshot tests (`tests/scenes.py`), so they are the same on every machine.
Your own config, themes and remembered state are never read: the script points
chatapp's folders at a temporary directory before it starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "themes" / "screenshots"


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


async def shoot(scene_name: str, theme: str, out: Path, size: tuple[int, int]) -> Path:
    from tests.scenes import SCENES

    scene = SCENES[scene_name](theme)
    app = scene.app
    async with app.run_test(size=size) as pilot:
        await scene.run_before(pilot)
        await pilot.pause()
        app.title = f"chatapp · {theme}"
        suffix = "" if scene_name == "conversation" else f"-{scene_name}"
        return Path(app.save_screenshot(f"{theme}{suffix}.svg", str(out)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the SVGs")
    parser.add_argument("--size", type=parse_size, default=(100, 30), help="WIDTHxHEIGHT")
    parser.add_argument("--scene", default="conversation", help="see tests/scenes.py")
    parser.add_argument("themes", nargs="*", help="theme names (default: every shipped one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="chatapp-screenshots-") as home:
        os.environ["CHATAPP_CONFIG_DIR"] = str(Path(home) / "config")
        os.environ["CHATAPP_DATA_DIR"] = str(Path(home) / "data")
        os.environ.pop("NO_COLOR", None)
        from chatapp.themes import load_themes, shipped_themes_dir

        shipped = load_themes([shipped_themes_dir()])
        for problem in shipped.failed:
            print(f"screenshots: {problem}", file=sys.stderr)
        themes = args.themes or shipped.names
        args.out.mkdir(parents=True, exist_ok=True)
        for theme in themes:
            path = asyncio.run(shoot(args.scene, theme, args.out, args.size))
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
