"""Find files shipped with the app: the `resources/` folder and the built-in demo model (checkout, wheel or bundle)."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    """The `resources/` folder: beside `app/` in a checkout, or inside a PyInstaller bundle."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root:
        return Path(bundle_root) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def resource_path(name: str) -> Path:
    return resources_dir() / name


DEMO_TEXT_NAME = "demo-llama.gguf"
DEMO_MMPROJ_NAME = "demo-mmproj.gguf"


def demo_model_dir() -> Path:
    """`app/demo/`: package data in a checkout or an installed wheel, `app/demo` inside a PyInstaller bundle."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root:
        return Path(bundle_root) / "app" / "demo"
    return Path(__file__).resolve().parents[1] / "demo"


def demo_model_files() -> tuple[Path, Path]:
    """The demo pair: (text model, vision projector)."""
    folder = demo_model_dir()
    return folder / DEMO_TEXT_NAME, folder / DEMO_MMPROJ_NAME
