"""Start-up shared by the TUI and `chatapp ask`: settings, the model, the engine."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from chatapp.config import Settings, load_settings
from chatapp.engine.protocol import GenerationSettings, ModelSpec


@dataclass
class Startup:
    settings: Settings
    model: ModelSpec | None
    model_error: str | None
    problems: list[str]
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    """The model's sampling settings: see `chatapp.registry.generation_for`."""
    missing_model: str | None = None
    """A catalogue model that is not pulled yet: the TUI offers to pull it."""


def prepare(args: argparse.Namespace) -> Startup:
    from chatapp.console_progress import StderrProgress
    from chatapp.engine.models import ModelError, ModelNotInstalled
    from chatapp.registry import generation_for, resolve

    settings, problems = load_settings()
    name = getattr(args, "model", None) or settings.default_model
    model: ModelSpec | None = None
    error: str | None = None
    missing: str | None = None
    progress = StderrProgress()  # converting a .gguf takes a while: say so on stderr
    try:
        model = resolve(name, settings, progress)
    except ModelNotInstalled as exc:
        error, missing = str(exc), exc.name
    except ModelError as exc:
        error = str(exc)
    finally:
        progress.close()
    generation = generation_for(model.name if model else name, settings)
    return Startup(settings, model, error, [str(p) for p in problems], generation, missing)


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
    from chatapp.resume import ResumeError, open_store, prepare_for

    try:
        sessions = open_store(args)  # the sessions database; -c / --session
    except ResumeError as error:
        print(f"chatapp: {error}", file=sys.stderr)
        return 1
    startup = prepare_for(args, sessions.session)
    for problem in startup.problems:
        print(f"chatapp: {problem}", file=sys.stderr)
    engine = EngineClient()
    engine.start()  # before App.run(): see chatapp.engine.client
    app = None
    try:
        from chatapp.app import ChatApp

        app = ChatApp(
            engine,
            startup.model,
            startup.generation,
            system_prompt=args.system or startup.settings.system_prompt,
            model_error=startup.model_error,
            theme=startup.settings.theme,
            missing_model=startup.missing_model,
            store=sessions.store,
            session_id=sessions.session.id if sessions.session else None,
            store_error=sessions.error,
            config=startup.settings,
            config_problems=startup.problems,
        )
        app.run()
    finally:
        engine.close()
        sessions.close(getattr(app, "store", None))
    return app.return_code or 0
