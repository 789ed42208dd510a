"""A small client for any OpenAI-compatible chat endpoint (`llavacam serve`, llama-server, LM Studio, Ollama).

Standard library only, so the iPhone build (Pyto, where llama.cpp cannot run) streams answers from a computer
with it. Images travel as JPEG data URIs; answers stream as server-sent events and can be cancelled.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from app.core.errors import LlavaCamError
from app.core.inference.images import RGBImage


class RemoteError(LlavaCamError):
    """The endpoint is unreachable, refused the request, or answered something that is not a chat reply."""


def image_data_uri(image: RGBImage, quality: int = 85) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(image.to_jpeg(quality)).decode("ascii")


@dataclass
class RemoteTurn:
    """One streamed answer: iterate for text pieces; `cancel()` from another thread closes the stream."""

    response: Any
    text: str = ""
    finish_reason: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    _cancel: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()
        with contextlib.suppress(Exception):  # closing is how a blocked read is interrupted
            self.response.close()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[str]:
        try:
            for raw in self.response:
                if self._cancel.is_set():
                    return
                line = raw.decode("utf-8", errors="replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError as exc:
                    raise RemoteError(f"the server sent something that is not JSON: {data[:80]}") from exc
                if "error" in event:
                    raise RemoteError(str(event["error"].get("message", event["error"])))
                self.timings = event.get("timings") or self.timings
                for choice in event.get("choices", []):
                    piece = (choice.get("delta") or {}).get("content")
                    if choice.get("finish_reason"):
                        self.finish_reason = choice["finish_reason"]
                    if piece:
                        self.text += piece
                        yield piece
        except (OSError, ValueError) as exc:
            if self._cancel.is_set():
                return  # closing the stream to cancel makes the read fail: that is the point
            raise RemoteError(f"the connection to the server broke: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                self.response.close()


class RemoteChat:
    def __init__(self, base_url: str, token: str | None = None, model: str = "llavacam", timeout: float = 120) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self.model = model
        self.timeout = timeout

    def _request(self, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", {}).get("message", exc.reason)
            except (ValueError, AttributeError):
                message = exc.reason
            if exc.code == 401:
                raise RemoteError(f"the server wants a valid token: {message}") from exc
            raise RemoteError(f"the server refused the request (HTTP {exc.code}): {message}") from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach {self.base_url} ({reason}): is the computer on and serving?") from exc

    def models(self) -> list[str]:
        with self._request("/models") as response:
            return [m["id"] for m in json.loads(response.read()).get("data", [])]

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        seed: int | None = None,
    ) -> RemoteTurn:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                "max_tokens": max_tokens, "temperature": temperature}  # fmt: skip
        if seed is not None:
            body["seed"] = seed
        return RemoteTurn(self._request("/chat/completions", body))


def user_message(question: str, image: RGBImage | None = None) -> dict[str, Any]:
    if image is None:
        return {"role": "user", "content": question}
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_data_uri(image)}},
                                        {"type": "text", "text": question}]}  # fmt: skip
