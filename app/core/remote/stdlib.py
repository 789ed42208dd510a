"""The remote engine over the standard library, for the iPhone build (Pyto has no httpx and cannot run llama.cpp).

Blocking calls meant for the front end's one worker thread; `cancel()` from another thread closes the stream.
The protocol (requests, SSE, errors) is `app.core.remote.protocol`, shared with the asyncio transport.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings
from app.core.remote.protocol import (
    DEFAULT_MAX_IMAGE_SIDE,
    ServerConfig,
    SSEDecoder,
    StreamState,
    broken_stream,
    chat_body,
    error_for_status,
    image_data_url,
    model_ids,
    unreachable,
)
from app.core.remote.protocol import user_message as _user_message


class RemoteTurn:
    """One streamed answer: iterate for text pieces; `cancel()` from another thread closes the stream."""

    def __init__(self, response: Any, config: ServerConfig) -> None:
        self.response = response
        self.config = config
        self.state = StreamState()
        self._cancel = threading.Event()

    @property
    def text(self) -> str:
        return self.state.text

    @property
    def finish_reason(self) -> str | None:
        return self.state.finish_reason

    @property
    def timings(self) -> dict[str, Any]:
        return self.state.timings

    def cancel(self) -> None:
        self._cancel.set()
        with contextlib.suppress(Exception):  # closing is how a blocked read is interrupted
            self.response.close()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[str]:
        decoder = SSEDecoder()
        try:
            while not self.state.done:
                chunk = self.response.read1(65536) if hasattr(self.response, "read1") else self.response.readline()
                if self._cancel.is_set():
                    return
                events = decoder.feed(chunk) if chunk else decoder.close()
                for data in events:
                    yield from self.state.apply(data)
                if not chunk:
                    break
            if not self.state.done and not self.state.pieces:
                raise broken_stream(self.config, "the server ended the stream without an answer")
        except (OSError, ValueError) as exc:
            if self._cancel.is_set():
                return  # closing the stream to cancel makes the read fail: that is the point
            raise broken_stream(self.config, exc) from exc
        finally:
            with contextlib.suppress(Exception):
                self.response.close()


class RemoteChat:
    def __init__(self, base_url: str, token: str | None = None, model: str | None = None, timeout: float = 120,
                 context: Any = None) -> None:  # fmt: skip
        self.config = ServerConfig(base_url, token or None, model, timeout)
        self.context = context  # an ssl.SSLContext from app.core.remote.trust, for a self-signed server

    def _request(self, path: str, body: dict[str, Any] | None = None, *, sent_image: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = self.config.headers(stream=bool(body and body.get("stream")))
        request = urllib.request.Request(self.config.api_base + path, data=data, headers=headers)
        try:
            return urllib.request.urlopen(request, timeout=self.config.timeout, context=self.context)
        except urllib.error.HTTPError as exc:
            raise error_for_status(exc.code, exc.read(), self.config, sent_image=sent_image) from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            raise unreachable(self.config, getattr(exc, "reason", exc)) from exc

    def models(self) -> list[str]:
        with self._request("/models") as response:
            return model_ids(response.read())

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        seed: int | None = None,
    ) -> RemoteTurn:
        sampling = SamplingSettings(temperature=temperature, max_tokens=max_tokens, seed=seed)
        sent_image = any(isinstance(m.get("content"), list) for m in messages)
        body = chat_body(messages, sampling, model=self.config.model)
        return RemoteTurn(self._request("/chat/completions", body, sent_image=sent_image), self.config)


def user_message(question: str, image: RGBImage | None = None) -> dict[str, Any]:
    """A user message with the frame (downscaled, JPEG) before the question."""
    return _user_message(question, image_data_url(image, DEFAULT_MAX_IMAGE_SIDE) if image is not None else None)
