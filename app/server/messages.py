"""OpenAI chat messages -> our conversation: system prompt, earlier turns, and the new question with its image."""

from __future__ import annotations

import base64
import binascii
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from app.core.errors import ImageError, printable
from app.core.inference.engine import PastTurn
from app.core.inference.images import RGBImage, image_header_size, load_image

# One full-size decode at a time: concurrent requests each decoding 25 MP would add up before any is downscaled.
_decoding = threading.Lock()


class RequestError(Exception):
    """A bad request: becomes a 4xx with an OpenAI-style error body."""

    def __init__(self, message: str, *, status: int = 400, code: str | None = None, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
        message = printable(message, limit=1000)
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 25_000_000  # per image, read from its header before anything is decoded
    max_request_pixels: int = 50_000_000  # all images of one request together
    max_images: int = 4
    max_messages: int = 512
    max_tokens: int = 4096
    max_queue: int = 16  # requests computing or waiting; beyond this a 503 with Retry-After
    image_dir: Path | None = None  # file:// image URLs are read only inside this folder (None: refused)


@dataclass
class Conversation:
    system: str | None
    history: list[PastTurn]
    question: str
    image: RGBImage | None


def _text_and_images(content: Any, index: int) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise RequestError(f"messages[{index}].content must be a string or a list of parts", param="messages")
    texts, urls = [], []
    for part in content:
        if not isinstance(part, dict):
            raise RequestError(f"messages[{index}].content has a part that is not an object", param="messages")
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            image_url = part.get("image_url")
            url = image_url.get("url") if isinstance(image_url, dict) else image_url
            if not isinstance(url, str):
                raise RequestError(f"messages[{index}] has an image_url without a url", param="messages")
            urls.append(url)
        else:
            raise RequestError(f"messages[{index}] has an unsupported content part type "
                               f"{printable(kind, limit=40)!r}", param="messages")  # fmt: skip
    return "\n".join(texts), urls


def _invalid_image(message: str, code: str = "invalid_image") -> RequestError:
    return RequestError(message, param="messages", code=code)


def image_url_source(url: str, limits: Limits) -> bytes | Path:
    """The encoded image an image_url names: a data: URI's bytes, or a file inside the operator's --image-dir."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if not header.startswith("data:image/") or ";base64" not in header:
            raise _invalid_image("image_url data URIs must be base64 images (data:image/...;base64,...)")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _invalid_image("the image data URI is not valid base64") from exc
    if url.startswith("file:"):
        if limits.image_dir is None:
            raise _invalid_image("file:// image URLs are refused: send the image as a data: URI (or start the server "
                                 "with --image-dir DIR to allow files in DIR)", "file_urls_disabled")  # fmt: skip
        parsed = urlparse(url)
        if parsed.netloc not in ("", "localhost"):
            raise _invalid_image("file:// URLs must name a file on this machine (file:///path)", "file_url_refused")
        allowed = limits.image_dir.resolve()
        try:
            path = Path(unquote(parsed.path)).resolve()
        except (OSError, RuntimeError, ValueError):
            path = None
        # Checked before the file is touched, so a path outside the folder gets the same answer whether it exists.
        if path is None or not path.is_relative_to(allowed):
            raise _invalid_image(f"file:// image URLs must name a file inside {allowed}", "file_url_refused")
        if not path.is_file():
            raise _invalid_image(f"no image file at {path}")
        return path
    raise _invalid_image("only data: URIs are accepted for images (this server fetches nothing)")


def _header_pixels(source: bytes | Path, limits: Limits) -> int:
    try:
        width, height = image_header_size(source, "the image", limits.max_image_pixels)
    except ImageError as exc:
        code = "image_too_large" if "limit" in str(exc) else "invalid_image"
        raise _invalid_image(str(exc), code) from exc
    return width * height


def _decode(source: bytes | Path, limits: Limits, max_side: int | None) -> RGBImage:
    try:
        with _decoding:
            return load_image(source if isinstance(source, bytes) else str(source), max_side=max_side,
                              max_pixels=limits.max_image_pixels)  # fmt: skip
    except ImageError as exc:
        raise _invalid_image(f"the image cannot be read: {exc}") from exc


def load_image_url(url: str, limits: Limits, max_side: int | None = None) -> RGBImage:
    """A data: URI or an allowed file:// URL, decoded straight to `max_side` (the encoder's bound)."""
    source = image_url_source(url, limits)
    _header_pixels(source, limits)
    return _decode(source, limits, max_side)


def to_conversation(messages: Any, limits: Limits, *, max_side: int | None = None) -> Conversation:
    """Check the messages and decode their images (each header first, all of them within the request's caps)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    if len(messages) > limits.max_messages:
        raise RequestError(f"a request may carry at most {limits.max_messages} messages (it has {len(messages)})",
                           param="messages", code="too_many_messages")  # fmt: skip
    system: str | None = None
    turns: list[tuple[str, bytes | Path | None, str | None]] = []
    image_count = 0
    request_pixels = 0
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(f"messages[{index}] must be an object", param="messages")
        role = message.get("role")
        text, urls = _text_and_images(message.get("content"), index)
        if role in ("system", "developer"):
            system = text if system is None else f"{system}\n{text}"
        elif role == "user":
            if len(urls) > 1:
                raise RequestError(f"messages[{index}] has {len(urls)} images; one per message is supported",
                                   param="messages", code="too_many_images")  # fmt: skip
            image_count += len(urls)
            if image_count > limits.max_images:
                raise RequestError(f"a request may carry at most {limits.max_images} images", param="messages",
                                   code="too_many_images")  # fmt: skip
            source = image_url_source(urls[0], limits) if urls else None
            if source is not None:
                request_pixels += _header_pixels(source, limits)
                if request_pixels > limits.max_request_pixels:
                    raise _invalid_image(f"the request's images hold more than {limits.max_request_pixels} pixels "
                                         "together", "image_too_large")  # fmt: skip
            if turns and turns[-1][2] is None:
                raise RequestError(f"messages[{index}]: two user messages in a row; merge them", param="messages")
            turns.append((text, source, None))
        elif role == "assistant":
            if not turns or turns[-1][2] is not None:
                raise RequestError(f"messages[{index}]: an assistant message must follow a user message",
                                   param="messages")  # fmt: skip
            question, source, _ = turns[-1]
            turns[-1] = (question, source, text)
        else:
            raise RequestError(f"messages[{index}] has an unsupported role {printable(role, limit=40)!r}",
                               param="messages")  # fmt: skip
    if not turns or turns[-1][2] is not None:
        raise RequestError("the last message must be from the user", param="messages")
    decoded = [(q, _decode(s, limits, max_side) if s is not None else None, a) for q, s, a in turns]
    question, image, _ = decoded[-1]
    history = [PastTurn(q, a or "", i) for q, i, a in decoded[:-1]]
    return Conversation(system, history, question, image)
