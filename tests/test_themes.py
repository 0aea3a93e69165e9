"""Theme files: the shipped ones, broken ones, user overrides, registration in a real App."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from textual.app import App
from textual.theme import BUILTIN_THEMES, Theme

from chatapp import locations
from chatapp.themes import (
    DEFAULT_THEME,
    ThemeProblem,
    default_theme_dirs,
    load_themes,
    shipped_themes_dir,
)

SHIPPED = shipped_themes_dir()
SHIPPED_NAMES = sorted(path.stem for path in SHIPPED.glob("*.toml"))


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def luminance(hex_colour: str) -> float:
    channels = [int(hex_colour.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    low, high = sorted((luminance(a), luminance(b)))
    return (high + 0.05) / (low + 0.05)


# --- shipped themes --------------------------------------------------------------------


def test_the_shipped_folder_is_found() -> None:
    root = Path(__file__).resolve().parent.parent
    # top-level in the checkout; inside the package if they are ever moved there for wheels
    assert SHIPPED in (root / "themes", root / "chatapp" / "themes")
    assert SHIPPED.is_dir()
    assert default_theme_dirs() == [SHIPPED, locations.user_themes_dir()]


def test_shipped_themes_load_without_problems() -> None:
    result = load_themes([SHIPPED])
    assert result.failed == []
    assert sorted(result.names) == SHIPPED_NAMES
    for required in ("chatapp-dark", "chatapp-light", "chatapp-high-contrast"):
        assert required in result.names
    assert len(result.themes) >= 5
    assert DEFAULT_THEME == "chatapp-dark"
    assert result.get("chatapp-dark").dark
    assert not result.get("chatapp-light").dark
    assert result.get("chatapp-high-contrast").dark
    for theme in result.themes:
        info = result.info[theme.name]
        assert info.shipped
        assert info.path == SHIPPED / f"{theme.name}.toml"  # one file per theme, named for it
        assert info.author and info.description
        assert theme.background and theme.foreground  # every shipped theme is complete


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_shipped_themes_are_readable(name: str) -> None:
    theme = load_themes([SHIPPED]).get(name)
    assert theme is not None
    assert contrast(theme.foreground, theme.background) >= 4.5  # WCAG AA for body text


def test_high_contrast_is_high_contrast() -> None:
    theme = load_themes([SHIPPED]).get("chatapp-high-contrast")
    assert contrast(theme.foreground, theme.background) >= 7  # WCAG AAA
    for key in ("primary", "secondary", "accent", "success", "warning", "error"):
        assert contrast(getattr(theme, key), theme.background) >= 7, key


async def test_shipped_themes_register_and_apply_in_a_real_app() -> None:
    before = dict(BUILTIN_THEMES)
    result = load_themes([SHIPPED])
    app = App()
    async with app.run_test() as pilot:
        for theme in result.themes:
            app.register_theme(theme)
        for theme in result.themes:
            app.theme = theme.name  # builds the CSS variables: a bad value would raise here
            await pilot.pause()
            assert app.current_theme.name == theme.name
            assert app.get_css_variables()["primary"]
    assert before == BUILTIN_THEMES  # Textual's global dict is untouched


# --- broken and user themes -------------------------------------------------------------

GOOD = """
    name = "{name}"
    author = "me"
    description = "test"
    primary = "#336699"
    background = "#101010"
    dark = true
    luminosity_spread = 0.2

    [variables]
    footer-key-foreground = "#336699"
    input-selection-background = "#336699 30%"
    block-cursor-text-style = "none"
"""


def test_good_and_broken_themes(tmp_path: Path) -> None:
    folder = tmp_path / "themes"
    write(folder, "good.toml", GOOD.format(name="good"))
    write(folder, "also-good.toml", 'name = "also-good"\nprimary = "red"\ndark = false\n')
    write(folder, "syntax.toml", 'name = "syntax"\nprimary = "#123456"\nsecondary = #zz\n')
    write(folder, "colour.toml", 'name = "colour"\n\n\nprimary = "#123456"\naccent = "blu"\n')
    write(folder, "nameless.toml", 'primary = "#123456"\n')
    write(folder, "unknown.toml", 'name = "unknown"\nprimary = "#123456"\nprimery = "#fff"\n')
    write(folder, "variable.toml", 'name = "v"\nprimary = "red"\n[variables]\nborder = "#12"\n')
    write(folder, "types.toml", 'name = "types"\nprimary = "red"\ndark = "yes"\n')
    (folder / "notes.txt").write_text("not a theme", encoding="utf-8")

    result = load_themes([folder])

    assert sorted(result.names) == ["also-good", "good"]
    assert all(isinstance(theme, Theme) for theme in result.themes)
    good = result.get("good")
    assert good.variables["input-selection-background"] == "#336699 30%"
    assert good.luminosity_spread == 0.2
    assert result.info["good"].author == "me"
    assert not result.info["good"].shipped

    by_file = {problem.file.name: problem for problem in result.failed}
    assert len(by_file) == len(result.failed) == 6  # each broken file reported once
    assert by_file["syntax.toml"].line == 3
    assert "TOML syntax error" in by_file["syntax.toml"].message
    assert by_file["colour.toml"].line == 5
    assert "'blu' is not a colour (did you mean 'blue'?)" in by_file["colour.toml"].message
    assert str(by_file["colour.toml"]).startswith("colour.toml:5: accent: 'blu' is not a colour")
    assert by_file["nameless.toml"].line == 1
    assert "name: missing" in by_file["nameless.toml"].message
    assert by_file["unknown.toml"].line == 3
    assert "did you mean 'primary'?" in by_file["unknown.toml"].message
    assert by_file["variable.toml"].line == 4
    assert "variables.border" in by_file["variable.toml"].message
    assert by_file["types.toml"].line == 3
    for problem in result.failed:
        assert problem.file.parent == folder


def test_a_file_with_several_problems_is_reported_once(tmp_path: Path) -> None:
    write(tmp_path, "bad.toml", 'author = 3\nprimary = "nope"\nbackground = 12\n')
    (problem,) = load_themes([tmp_path]).failed
    assert problem.line == 1
    for part in ("author", "primary", "background", "name: missing"):
        assert part in problem.message


def test_unreadable_theme_files_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = write(tmp_path, "locked.toml", GOOD.format(name="locked"))
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe\x00")
    real_read_text = Path.read_text

    def denied(self: Path, *args, **kwargs) -> str:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    result = load_themes([tmp_path])
    assert result.themes == []
    messages = {p.file.name: p.message for p in result.failed}
    assert messages["locked.toml"] == "cannot be read (Permission denied)"
    assert "folder" in messages["folder.toml"]
    assert "UTF-8" in messages["binary.toml"]


def test_user_themes_override_shipped_ones_by_name(tmp_path: Path) -> None:
    user = locations.user_themes_dir()
    write(user, "mine.toml", GOOD.format(name="chatapp-dark"))
    write(user, "extra.toml", GOOD.format(name="my-extra"))
    result = load_themes()  # shipped, then the user's folder
    assert result.failed == []
    assert result.names.count("chatapp-dark") == 1
    assert result.get("chatapp-dark").primary == "#336699"
    assert result.info["chatapp-dark"].path == user / "mine.toml"
    assert not result.info["chatapp-dark"].shipped
    assert result.info["chatapp-light"].shipped
    assert "my-extra" in result.names


def test_same_name_twice_in_one_folder(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", GOOD.format(name="same"))
    write(tmp_path, "b.toml", GOOD.format(name="same"))
    result = load_themes([tmp_path])
    assert result.names == ["same"]
    assert result.info["same"].path.name == "a.toml"
    (problem,) = result.failed
    assert problem == ThemeProblem(
        tmp_path / "b.toml", None, "name: 'same' is already used by a.toml; skipped"
    )


def test_missing_folders_are_fine(tmp_path: Path) -> None:
    result = load_themes([tmp_path / "absent", SHIPPED])
    assert result.failed == []
    assert "chatapp-dark" in result.names


def test_an_installed_wheel_carries_the_shipped_themes(tmp_path: Path) -> None:
    """Not only a checkout: `pip install` of the wheel puts them where chatapp finds them."""
    import json
    import shutil
    import subprocess
    import sys
    import sysconfig

    root = Path(__file__).resolve().parent.parent
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    for name in ("chatapp", "themes"):
        shutil.copytree(root / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))

    def run(*argv: str | Path) -> str:
        done = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, cwd=tmp_path, timeout=300
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", "wheels")
    (wheel,) = (tmp_path / "wheels").glob("chatapp-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(*pip, "--python", python, "install", "--no-deps", "-q", wheel)
    # The new environment borrows this one's dependencies (textual…), not its chatapp.
    purelib = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()
    )
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    script = (
        "import json, chatapp\n"
        "from chatapp.themes import load_themes, shipped_themes_dir\n"
        "print(json.dumps([chatapp.__file__, str(shipped_themes_dir()),"
        " [t.name for t in load_themes([shipped_themes_dir()]).themes]]))\n"
    )
    package, themes_dir, names = json.loads(run(python, "-c", script))
    assert Path(package).is_relative_to(venv)
    assert Path(themes_dir) == (venv / "share" / "chatapp" / "themes").resolve()
    assert sorted(names) == SHIPPED_NAMES
