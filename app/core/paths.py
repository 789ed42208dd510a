"""Where settings, history and downloaded models live."""

from __future__ import annotations

import os
from pathlib import Path

APP_NAME = "LlavaCam"
DATA_DIR_ENV = "LLAVACAM_DATA_DIR"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The per-user data dir, or `override` / $LLAVACAM_DATA_DIR when given. Created on demand."""
    chosen = override or os.environ.get(DATA_DIR_ENV)
    if chosen:
        path = Path(chosen).expanduser()
    else:
        try:
            from platformdirs import user_data_dir
        except ImportError:  # Pyto on iPhone: the app's Documents folder is the user's place
            path = Path.home() / "Documents" / APP_NAME
        else:
            path = Path(user_data_dir(APP_NAME, appauthor=False))
    _make(path, "the data folder")
    return path


def _make(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from app.core.errors import LlavaCamError

        raise LlavaCamError(f"cannot create {what} {path}: {exc.strerror or exc} (a read-only disk or folder? "
                            "choose another with --data-dir or LLAVACAM_DATA_DIR)") from exc  # fmt: skip


def models_dir(base: Path) -> Path:
    path = base / "models"
    _make(path, "the models folder")
    return path


def source_checkout_models_dir() -> Path | None:
    """`models/` of a source checkout, searched too when running from one."""
    candidate = Path(__file__).resolve().parents[2] / "models"
    return candidate if (candidate / "README.md").exists() else None
