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
SAMPLE_VIDEO_NAME = "sample-video.mp4"


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


def is_demo_model_path(path: str | Path) -> bool:
    """Whether `path` names the demo pair's text model, here or where an earlier install or bundle run kept it (a
    PyInstaller one-file bundle unpacks to a new folder on every start, so a saved path may be stale)."""
    candidate = Path(path)
    return candidate.name == DEMO_TEXT_NAME and candidate.parent.name == "demo"


def sample_video_path() -> Path:
    """The short looping video of demo scenes the window's camera plays when no webcam opens
    (models/make_sample_video.py writes it; it travels with the demo pair)."""
    return demo_model_dir() / SAMPLE_VIDEO_NAME
