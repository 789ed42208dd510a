"""Errors a user can meet. Each carries a message a person can act on."""

from __future__ import annotations

import unicodedata


def printable(text: object, *, limit: int = 500) -> str:
    """`text` safe to print on a terminal or show in a notice: control characters and terminal escapes shown as
    `\\xNN`, undecodable bytes as `\\xNN`, and at most `limit` characters (a file's raw bytes can fill a screen)."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "backslashreplace")
    out: list[str] = []
    size = 0
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") and char != " ":
            piece = f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
        else:
            piece = char
        size += len(piece)
        if size > limit:
            out.append("…")
            break
        out.append(piece)
    return "".join(out)


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


class LoadCancelled(LlavaCamError):
    """A model load (or its test load) was abandoned on purpose: the window closed, or another pair was chosen."""


class SettingsError(LlavaCamError, ValueError):
    """A setting is out of range (temperature, top_p, max tokens...)."""


class CatalogError(LlavaCamError):
    """The model catalog is missing, not TOML, or an entry lacks something."""


class DownloadError(LlavaCamError):
    """A download failed: no network, HTTP error, dropped connection, checksum, disk space, not a model."""


class DownloadCancelled(DownloadError):
    """The user cancelled; the partial file is kept so the download can resume."""
