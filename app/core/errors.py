"""Errors a user can meet. Each carries a message a person can act on."""

from __future__ import annotations


class LlavaCamError(Exception):
    """Base class for every error we expect a user to see."""


class ModelFileError(LlavaCamError):
    """A model file is missing, unreadable, not a GGUF, or does not fit its partner."""

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageError(LlavaCamError):
    """An image could not be read (not an image, empty, unsupported)."""


class PromptTooLongError(LlavaCamError):
    """The prompt does not fit in the model's context even after dropping old turns."""


class EngineError(LlavaCamError):
    """llama.cpp refused an operation (load, encode, decode)."""


class SettingsError(LlavaCamError, ValueError):
    """A setting is out of range (temperature, top_p, max tokens...)."""
