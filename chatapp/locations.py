"""Where chatapp keeps its files. Computed on demand; nothing is created at import."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "chatapp"


def _override(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser() if value else default


def config_dir() -> Path:
    return _override("CHATAPP_CONFIG_DIR", Path(platformdirs.user_config_dir(APP_NAME)))


def config_file() -> Path:
    return config_dir() / "config.toml"


def user_themes_dir() -> Path:
    return config_dir() / "themes"


def data_dir() -> Path:
    return _override("CHATAPP_DATA_DIR", Path(platformdirs.user_data_dir(APP_NAME)))


def database_file() -> Path:
    return data_dir() / "chatapp.db"


def models_dir() -> Path:
    """Pulled and converted models (large; safe to delete, re-pulled on demand)."""
    return _override("CHATAPP_MODELS_DIR", Path(platformdirs.user_cache_dir(APP_NAME)) / "models")


def user_models_dir() -> Path:
    """Models the user drops in by hand (Hugging Face folders or .gguf files)."""
    return data_dir() / "models"


def state_file() -> Path:
    """Small UI state remembered between runs (chosen theme, last session)."""
    return data_dir() / "state.json"


def ensure_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
