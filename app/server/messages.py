"""OpenAI chat messages -> our conversation: system prompt, earlier turns, and the new question with its image."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from app.core.errors import ImageError
from app.core.inference.engine import PastTurn
from app.core.inference.images import RGBImage, load_image


class RequestError(Exception):
    """A bad request: becomes a 4xx with an OpenAI-style error body."""

    def __init__(self, message: str, *, status: int = 400, code: str | None = None, param: str | None = None,
                 kind: str = "invalid_request_error") -> None:  # fmt: skip
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
    max_image_pixels: int = 40_000_000
    max_images: int = 4
    max_tokens: int = 4096


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
            raise RequestError(f"messages[{index}] has an unsupported content part type {kind!r}", param="messages")
    return "\n".join(texts), urls


def load_image_url(url: str, limits: Limits) -> RGBImage:
    """A data: URI or a file:// URL to an existing image file; anything else is refused (no fetching)."""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if not header.startswith("data:image/") or ";base64" not in header:
            raise RequestError("image_url data URIs must be base64 images (data:image/...;base64,...)",
                               param="messages", code="invalid_image")  # fmt: skip
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise RequestError(
                "the image data URI is not valid base64", param="messages", code="invalid_image"
            ) from exc
        source: Any = data
    elif url.startswith("file://"):
        path = Path(unquote(urlparse(url).path))
        if not path.is_file():
            raise RequestError(f"no image file at {path}", param="messages", code="invalid_image")
        source = path
    else:
        raise RequestError("only data: URIs and file:// URLs are accepted for images (this server fetches nothing)",
                           param="messages", code="invalid_image")  # fmt: skip
    _check_pixels(source, limits)
    try:
        return load_image(source)
    except ImageError as exc:
        raise RequestError(f"the image cannot be read: {exc}", param="messages", code="invalid_image") from exc


def _check_pixels(source: Any, limits: Limits) -> None:
    """Refuse decompression bombs before decoding: read only the header's size."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as probe:
            width, height = probe.size
    except (UnidentifiedImageError, OSError) as exc:
        raise RequestError("the data is not an image", param="messages", code="invalid_image") from exc
    except Image.DecompressionBombError as exc:
        raise RequestError(f"the image is too large: {exc}", param="messages", code="image_too_large") from exc
    if width * height > limits.max_image_pixels:
        raise RequestError(f"the image has {width * height} pixels; the limit is {limits.max_image_pixels}",
                           param="messages", code="image_too_large")  # fmt: skip


def to_conversation(messages: Any, limits: Limits) -> Conversation:
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list", param="messages")
    system: str | None = None
    turns: list[tuple[str, RGBImage | None, str | None]] = []
    image_count = 0
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
            image = load_image_url(urls[0], limits) if urls else None
            if turns and turns[-1][2] is None:
                raise RequestError(f"messages[{index}]: two user messages in a row; merge them", param="messages")
            turns.append((text, image, None))
        elif role == "assistant":
            if not turns or turns[-1][2] is not None:
                raise RequestError(f"messages[{index}]: an assistant message must follow a user message",
                                   param="messages")  # fmt: skip
            question, image, _ = turns[-1]
            turns[-1] = (question, image, text)
        else:
            raise RequestError(f"messages[{index}] has an unsupported role {role!r}", param="messages")
    if not turns or turns[-1][2] is not None:
        raise RequestError("the last message must be from the user", param="messages")
    question, image, _ = turns[-1]
    history = [PastTurn(q, a or "", i) for q, i, a in turns[:-1]]
    return Conversation(system, history, question, image)
