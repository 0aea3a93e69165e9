"""Start-up shared by the TUI and `chatapp ask`: settings, the model, the engine."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from chatapp.config import Settings, load_settings
from chatapp.engine.protocol import GenerationSettings, ModelSpec


@dataclass
class Startup:
    settings: Settings
    model: ModelSpec | None
    model_error: str | None
    problems: list[str]


def prepare(args: argparse.Namespace) -> Startup:
    from chatapp.engine.models import ModelError, resolve_model

    settings, problems = load_settings()
    name = getattr(args, "model", None) or settings.default_model
    model: ModelSpec | None = None
    error: str | None = None
    try:
        model = resolve_model(name)
    except ModelError as exc:
        error = str(exc)
    return Startup(settings, model, error, [str(p) for p in problems])


def generation_settings(args: argparse.Namespace, base: GenerationSettings) -> GenerationSettings:
    changes = {
        key: value
        for key, value in (
            ("temperature", getattr(args, "temperature", None)),
            ("max_new_tokens", getattr(args, "max_tokens", None)),
            ("seed", getattr(args, "seed", None)),
        )
        if value is not None
    }
    return GenerationSettings(**{**base.__dict__, **changes})


def launch_tui(args: argparse.Namespace) -> int:
    from chatapp.engine.client import EngineClient

    startup = prepare(args)
    for problem in startup.problems:
        print(f"chatapp: {problem}", file=sys.stderr)
    engine = EngineClient()
    engine.start()  # before App.run(): see chatapp.engine.client
    try:
        from chatapp.app import ChatApp

        app = ChatApp(
            engine,
            startup.model,
            startup.settings.generation,
            system_prompt=args.system or startup.settings.system_prompt,
            model_error=startup.model_error,
        )
        app.run()
    finally:
        engine.close()
    return 0
