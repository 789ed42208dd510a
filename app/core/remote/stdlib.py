"""The remote engine over the standard library, for the iPhone build (Pyto has no httpx and cannot run llama.cpp).

Blocking calls meant for the front end's one worker thread; `cancel()` from another thread closes the stream.
The protocol (requests, SSE, errors) is `app.core.remote.protocol`, shared with the asyncio transport.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

from app.core.inference.answerer import AnsweredBy, Answerer, PastTurn, TurnStats, completed
from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings
from app.core.remote.protocol import (
    DEFAULT_MAX_IMAGE_SIDE,
    SILENT_STREAM,
    Conversation,
    ImageEncodings,
    RemoteError,
    SentTurn,
    ServerConfig,
    SSEDecoder,
    StreamState,
    broken_stream,
    carries_image,
    chat_body,
    check_image_seen,
    error_for_status,
    image_data_url,
    model_entry,
    model_ids,
    probe_body,
    silent_stream_error,
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
        connection = _socket_of(self.response)
        if connection is not None:
            # Shutting the socket down wakes a read blocked on another thread at once and tells the server, which
            # stops generating. Closing the response instead waited for that read (for the server's next token:
            # Stop in the window held the GUI thread until the server sent more); the reader closes it as it ends.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            return
        with contextlib.suppress(Exception):  # no socket to reach: closing interrupts a blocked read, in time
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
                raise broken_stream(self.config, SILENT_STREAM)
        except (OSError, ValueError, http.client.HTTPException, AttributeError) as exc:
            if self._cancel.is_set():
                # Cancelling makes the read fail or end short (a chunk cut off is IncompleteRead; a response closed
                # under a read gives http.client's AttributeError): that is the point, not a broken stream.
                return
            if isinstance(exc, AttributeError):
                raise
            raise broken_stream(self.config, exc) from exc
        finally:
            with contextlib.suppress(Exception):
                self.response.close()


def _socket_of(response: Any) -> socket.socket | None:
    """The connection under an http.client response (its file's socket), or None where there is none to reach."""
    connection = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    return connection if isinstance(connection, socket.socket) else None


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

    def connect(self) -> dict[str, Any]:
        """Check the server is there, takes the token, and serves the model asked for (one that can see); returns
        its /v1/models entry. Nothing of the conversation is sent."""
        with self._request("/models") as response:
            entry = model_entry(response.read(), self.config.model)
        if entry.get("vision") is False:
            raise RemoteError(f"the model on {self.config.host} has no vision (the server says so): load a vision "
                              "model with its projector there", kind="no_vision")  # fmt: skip
        return entry

    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.2,
        seed: int | None = None,
    ) -> RemoteTurn:
        sampling = SamplingSettings(temperature=temperature, max_tokens=max_tokens, seed=seed)
        return self.stream_body(chat_body(messages, sampling, model=self.config.model))

    def answer_once(self, question: str, image: RGBImage | None, sampling: SamplingSettings,
                    grammar: str | None = None, *, system_prompt: str | None = None) -> RemoteTurn:  # fmt: skip
        """One question about one frame outside any conversation (a watch): the finished turn.

        `grammar` (GBNF) travels in llama.cpp's own `grammar` field, which llavacam serve, llama-server and
        llama-cpp-python's server honour. A frame the server did not read raises RemoteError("image_ignored")."""
        url = image_data_url(image, self.config.max_image_side) if image is not None else None
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        body = chat_body([*messages, _user_message(question, url)], sampling, model=self.config.model)
        if grammar is not None:
            body["grammar"] = grammar
        turn = self.stream_body(body)
        for _ in turn:
            pass
        if url is not None and not turn.cancelled:
            check_image_seen(turn.state, Conversation(None, [SentTurn(question, url, turn.text)]), self.config)
        return turn

    def stream_body(self, body: dict[str, Any]) -> RemoteTurn:
        sent_image = carries_image(body["messages"])
        return RemoteTurn(self._request("/chat/completions", body, sent_image=sent_image), self.config)


def user_message(question: str, image: RGBImage | None = None) -> dict[str, Any]:
    """A user message with the frame (downscaled, JPEG) before the question."""
    return _user_message(question, image_data_url(image, DEFAULT_MAX_IMAGE_SIDE) if image is not None else None)


class RemoteStream:
    """An `AnswerStream` read from the server on the thread that iterates it (no thread of its own)."""

    def __init__(self, answerer: RemoteAnswerer, sent: SentTurn, image: RGBImage | None,
                 sampling: SamplingSettings, new_image: bool) -> None:  # fmt: skip
        self.question = sent.question
        self.image = image
        self._answerer = answerer
        self._sent = sent
        self._sampling = sampling
        self._new_image = new_image
        self._turn: RemoteTurn | None = None
        self._cancel = threading.Event()
        self._finished = False
        self.stats: TurnStats | None = None

    @property
    def text(self) -> str:
        return self._turn.text if self._turn is not None else ""

    @property
    def finished(self) -> bool:
        return self._finished

    def cancel(self) -> None:
        self._cancel.set()
        if self._turn is not None:
            self._turn.cancel()

    def __iter__(self) -> Iterator[str]:
        if self._finished:
            return
        answerer, sent = self._answerer, self._sent
        try:
            if not self._cancel.is_set():
                messages = answerer.conversation.messages()
                self._turn = answerer.chat.stream_body(chat_body(messages, self._sampling,
                                                                 model=answerer.chat.config.model))  # fmt: skip
                if self._cancel.is_set():
                    self._turn.cancel()
                try:
                    yield from self._turn
                except RemoteError as exc:
                    if exc.kind != "broken" or self._turn.state.pieces or self._cancel.is_set():
                        raise
                    raise self._why_silent(messages, exc) from exc
            state = self._turn.state if self._turn is not None else StreamState()
            if self._new_image and not self._cancel.is_set():
                check_image_seen(state, answerer.conversation, answerer.chat.config)
        except RemoteError:
            if sent in answerer.conversation.turns:
                answerer.conversation.turns.remove(sent)  # a failed turn is not part of the conversation
            self._finished = True
            raise
        sent.answer = state.text
        self.stats = TurnStats(
            image_encode_ms=float(state.timings.get("image_encode_ms", 0.0) or 0.0),
            prompt_tokens=state.prompt_tokens or 0,
            ttft_ms=state.ttft_ms(),
            decode_tokens=int(state.usage.get("completion_tokens", state.pieces) or 0),
            image_cached=bool(state.timings.get("image_cached", not self._new_image)),
            finish_reason="cancelled" if self._cancel.is_set() else ("length" if state.finish_reason == "length"
                                                                     else "stop"),
        )  # fmt: skip
        self._finished = True

    def wait(self) -> TurnStats:
        for _ in self:
            pass
        assert self.stats is not None
        return self.stats

    def _why_silent(self, messages: list[dict[str, Any]], failure: RemoteError) -> RemoteError:
        """The stream ended (or broke) before a word: ask once without streaming to learn what the server says."""
        chat = self._answerer.chat
        sent_image = carries_image(messages)
        try:
            with chat._request("/chat/completions", probe_body(messages, self._sampling, model=chat.config.model),
                               sent_image=sent_image) as response:  # fmt: skip
                response.read()
        except RemoteError as said:
            return silent_stream_error(chat.config, said, sent_image=sent_image)
        except (OSError, http.client.HTTPException) as exc:  # the server went away while it answered
            return silent_stream_error(chat.config, broken_stream(chat.config, exc), sent_image=sent_image)
        return silent_stream_error(chat.config, failure, sent_image=sent_image)


class RemoteAnswerer:
    """The `Answerer` protocol (app.core.inference.answerer) over a server, blocking: for a worker thread (Pyto).

    Each turn's frame is encoded once, at `ask` or `set_history`, and resent with the conversation."""

    def __init__(self, chat: RemoteChat, system_prompt: str | None = None, *, model: str | None = None) -> None:
        self.chat = chat
        self.model = model  # the model the server said it serves (connect()), when the config names none
        self.conversation = Conversation(system_prompt)
        self.images = ImageEncodings(chat.config.max_image_side)
        self._stream: RemoteStream | None = None
        self._seen: set[str] = set()

    def set_history(self, turns: Sequence[PastTurn], system_prompt: str | None = None) -> Future[None]:
        self.cancel()
        self.conversation = Conversation(system_prompt or self.conversation.system_prompt, [
            SentTurn(t.question, self.images.url(t.image) if t.image is not None else None, t.answer)
            for t in turns])  # fmt: skip
        self._seen.update(t.image_url for t in self.conversation.turns if t.image_url)
        return completed()

    def ask(self, question: str, image: RGBImage | None = None,
            sampling: SamplingSettings | None = None) -> RemoteStream:  # fmt: skip
        self.cancel()
        url = self.images.url(image) if image is not None else None
        sent = SentTurn(question, url)
        self.conversation.turns.append(sent)
        new_image = url is not None and url not in self._seen
        if url is not None:
            self._seen.add(url)
        self._stream = RemoteStream(self, sent, image, sampling or SamplingSettings(), new_image)
        return self._stream

    def cancel(self) -> None:
        if self._stream is not None:
            self._stream.cancel()

    @property
    def answered_by(self) -> AnsweredBy:
        """The server's host:port and the model asked for (or the one it said it serves; "" when not known)."""
        return AnsweredBy(self.chat.config.host, self.chat.config.model or self.model or "")


def _conforms(answerer: RemoteAnswerer) -> Answerer:
    return answerer  # mypy proves here that the remote client satisfies the Answerer protocol
