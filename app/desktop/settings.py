"""The window's settings: the core's typed `Settings` (app/core/settings.py), re-exported for the desktop code."""

from __future__ import annotations

from app.core.settings import (
    ENGINE_CHOICES,
    LOCAL_ENGINE,
    SERVER_ENGINE,
    THEMES,
    Settings,
    engine_key,
    load_server_token,
    load_settings,
    save_server_token,
    save_settings,
    settings_path,
    token_path,
)

__all__ = [
    "ENGINE_CHOICES",
    "LOCAL_ENGINE",
    "SERVER_ENGINE",
    "THEMES",
    "Settings",
    "engine_key",
    "load_server_token",
    "load_settings",
    "save_server_token",
    "save_settings",
    "settings_path",
    "token_path",
]

