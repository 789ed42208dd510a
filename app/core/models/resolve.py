"""The one place `--model / --mmproj / --model-id` become model files, for every command and the window.

The rules, the same everywhere:
- `--model TEXT.gguf [--mmproj MMPROJ.gguf]`: those files (made absolute, `~` expanded); no `--mmproj` means text
  only; the chat template is left to the model ("auto").
- `--model-id ID`: an installed pair (`llavacam models list`, or the built-in demo pair), with the template family
  the catalog gives it.
- Giving both `--model` and `--model-id`, or `--mmproj` without `--model`, is an error that says what to give.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import LlavaCamError

NO_MODEL = "give a model: --model TEXT.gguf [--mmproj MMPROJ.gguf], or --model-id ID (see `llavacam models list`)"


class ModelChoiceError(LlavaCamError):
    """The model options contradict each other, or none were given where one is needed."""


@dataclass(frozen=True)
class ModelFiles:
    """A text model, its vision projector (None: text only) and the template family it needs (None: auto)."""

    text: Path
    mmproj: Path | None
    template: str | None = None
    model_id: str | None = None  # the installed pair's id when chosen by id

    @property
    def name(self) -> str:
        """What to call the pair: its id, else the text file's name without .gguf."""
        return self.model_id or self.text.stem


def resolve_model_files(
    model: str | os.PathLike[str] | None = None,
    mmproj: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    catalog: str | os.PathLike[str] | None = None,
) -> ModelFiles | None:
    """The files the options name, or None when none were given (the window then keeps its saved choice)."""
    if model_id and model:
        raise ModelChoiceError("give either --model or --model-id, not both")
    if mmproj and not model:
        if model_id:
            raise ModelChoiceError(
                "--mmproj goes with --model: an installed pair (--model-id) brings its own projector"
            )
        raise ModelChoiceError("--mmproj needs the text model too: add --model TEXT.gguf")
    if model_id:
        from app.core.models.store import ModelStore

        installed = ModelStore(data_dir, catalog).get(model_id)
        template = None if installed.template in (None, "auto") else installed.template
        return ModelFiles(installed.text, installed.mmproj, template, installed.id)
    if model:
        return ModelFiles(_absolute(model), _absolute(mmproj) if mmproj else None)
    return None


def require_model_files(
    model: str | os.PathLike[str] | None = None,
    mmproj: str | os.PathLike[str] | None = None,
    model_id: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    catalog: str | os.PathLike[str] | None = None,
) -> ModelFiles:
    """As `resolve_model_files`, for commands that cannot run without a model."""
    files = resolve_model_files(model, mmproj, model_id, data_dir=data_dir, catalog=catalog)
    if files is None:
        raise ModelChoiceError(NO_MODEL)
    return files


def _absolute(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))
