"""The remote engine over asyncio and httpx: the desktop (on qasync's loop) and the CLI (`asyncio.run`).

`RemoteEngine` offers the `Answerer` calls (app.core.inference.answerer: ask / set_history / cancel, plus
regenerate and new_chat) with the same PastTurn and TurnStats, in their asyncio form: the stream `ask` returns is
iterated with `async for` and awaited with `await turn.wait()`, which is what the desktop's async adapter makes of
the local Engine's blocking stream. There is nothing to prepare on a server, so `prepare` is not offered.
Each `ask` starts one task on the running loop that reads the server's stream into the turn: no thread
per request. Stop (`cancel`) cancels that task, which closes the stream; the server stops generating for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.core.errors import printable
from app.core.inference.answerer import PastTurn, TurnStats, completed
from app.core.inference.images import RGBImage
from app.core.inference.sampling import SamplingSettings
from app.core.remote.protocol import (
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
    model_entry,
    probe_body,
    silent_stream_error,
    unreachable,
    validate_json_output,
)
from app.core.remote.trust import ca_file_context, pinned_context, probe_context

_DONE = object()


class RemoteTurn:
    """One answer from the server: `async for piece in turn`, `await turn.wait()` for its TurnStats, `cancel()`."""

    def __init__(self, question: str, image: RGBImage | None) -> None:
        self.question = question
        self.image = image
        self.stats: TurnStats | None = None
        self.error: BaseException | None = None
        self.json: Any = None  # the parsed answer when a response_format schema was asked for
        self._pieces: list[str] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._finished = False
        self.cancelled = False

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    @property
    def finished(self) -> bool:
        return self._finished

    def cancel(self) -> None:
        """Stop: closes the stream (the pieces received so far stay in `text`)."""
        self.cancelled = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def __aiter__(self) -> AsyncIterator[str]:
        while not self._finished:
            item = await self._queue.get()
            if isinstance(item, str):
                self._pieces.append(item)
                yield item
            elif isinstance(item, BaseException):
                self._finished = True
                self.error = item
                raise item
            else:
                self._finished = True

    async def wait(self) -> TurnStats:
        async for _ in self:
            pass
        assert self.stats is not None
        return self.stats


class RemoteEngine:
    """An OpenAI-compatible server answering like the local Engine, one conversation at a time."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        system_prompt: str | None = None,
        ca_file: Path | None = None,
        fingerprint: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.conversation = Conversation(system_prompt)
        self.ca_file = ca_file
        self.fingerprint = fingerprint
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._turn: RemoteTurn | None = None
        self._seen_images: set[str] = set()
        self.images = ImageEncodings(config.max_image_side)
        self.model_info: dict[str, Any] = {}

    # --- connection --------------------------------------------------------------------------------------------

    async def _verify(self) -> ssl.SSLContext | bool:
        if urlsplit(self.config.url).scheme != "https":
            return True
        if self.fingerprint:
            return pinned_context(await _peer_certificate(self.config), self.fingerprint)
        if self.ca_file:
            return ca_file_context(self.ca_file)
        return True

    async def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=await self._verify(), transport=self._transport,
                timeout=httpx.Timeout(self.config.timeout, connect=10.0),
            )  # fmt: skip
        return self._client

    async def aclose(self) -> None:
        self.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> RemoteEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _get(self, path: str) -> bytes:
        client = await self.client()
        try:
            response = await client.get(self.config.api_base + path, headers=self.config.headers())
        except httpx.HTTPError as exc:
            raise unreachable(self.config, _reason(exc)) from exc
        if response.status_code >= 400:
            raise error_for_status(response.status_code, response.content, self.config, sent_image=False)
        return response.content

    async def models(self) -> list[str]:
        """The model ids the server lists (GET /v1/models)."""
        from app.core.remote.protocol import model_ids

        return model_ids(await self._get("/models"))

    async def connect(self) -> dict[str, Any]:
        """Check the server is there, takes the token, and serves the model asked for; returns its entry."""
        self.model_info = model_entry(await self._get("/models"), self.config.model)
        if self.model_info.get("vision") is False:
            raise RemoteError(f"the model on {self.config.host} has no vision (the server says so): load a vision "
                              "model with its projector there", kind="no_vision")  # fmt: skip
        if isinstance(self.model_info.get("image_size"), int) and self.model_info["image_size"] > 0:
            side = 2 * self.model_info["image_size"]  # as the local engine keeps frames
            self.config = _replace(self.config, max_image_side=min(side, self.config.max_image_side))
        return self.model_info

    # --- the Engine's API --------------------------------------------------------------------------------------

    @property
    def history(self) -> list[PastTurn]:
        return [PastTurn(t.question, t.answer or "") for t in self.conversation.turns if t.answer is not None]

    def new_chat(self, system_prompt: str | None = None) -> None:
        self.cancel()
        self.conversation = Conversation(system_prompt or self.conversation.system_prompt)

    def set_history(self, turns: Sequence[PastTurn], system_prompt: str | None = None) -> Future[None]:
        """Adopt a stored conversation; each image is encoded once here and reused by every later request."""
        self.cancel()
        self.conversation = Conversation(system_prompt or self.conversation.system_prompt, [
            SentTurn(t.question, self._encode(t.image) if t.image is not None else None, t.answer) for t in turns
        ])  # fmt: skip
        self._seen_images.update(t.image_url for t in self.conversation.turns if t.image_url)
        return completed()  # nothing to wait for: the next request carries the conversation

    def ask(
        self,
        question: str,
        image: RGBImage | None = None,
        sampling: SamplingSettings | None = None,
        *,
        response_format: dict[str, Any] | None = None,
    ) -> RemoteTurn:
        """Start answering; call on the running loop. The frame is encoded once, here."""
        self.cancel()
        url = self._encode(image) if image is not None else None
        self.conversation.turns.append(SentTurn(question, url))
        return self._start(RemoteTurn(question, image), sampling or SamplingSettings(), response_format)

    def regenerate(self, sampling: SamplingSettings | None = None) -> RemoteTurn:
        """Answer the last question again (its encoded frame is reused)."""
        self.cancel()
        if not self.conversation.turns:
            raise RemoteError("there is no question to answer again", kind="refused")
        last = self.conversation.turns[-1]
        last.answer = None
        return self._start(RemoteTurn(last.question, None), sampling or SamplingSettings(), None)

    def cancel(self) -> None:
        if self._turn is not None:
            self._turn.cancel()

    # --- internals -----------------------------------------------------------------------------------------------

    def _encode(self, image: RGBImage) -> str:
        if self.images.max_side != self.config.max_image_side:
            self.images = ImageEncodings(self.config.max_image_side)
        url = self.images.url(image)
        return url

    def _start(
        self, turn: RemoteTurn, sampling: SamplingSettings, response_format: dict[str, Any] | None
    ) -> RemoteTurn:
        self._turn = turn
        sent = self.conversation.turns[-1]
        turn._task = asyncio.get_running_loop().create_task(self._run(turn, sent, sampling, response_format))
        return turn

    async def _run(self, turn: RemoteTurn, sent: SentTurn, sampling: SamplingSettings,
                   response_format: dict[str, Any] | None) -> None:  # fmt: skip
        state = StreamState()
        new_image = sent.image_url is not None and sent.image_url not in self._seen_images
        messages = self.conversation.messages()
        sent_image = carries_image(messages)
        schema = _schema_of(response_format)
        try:
            try:
                body = chat_body(messages, sampling, model=self.config.model, response_format=response_format)
                await self._stream(body, state, turn, sent_image=sent_image)
                if not state.done and not state.pieces:
                    state.accepted = True  # a silent failure: ask once without streaming to learn what it says
                    await self._probe(probe_body(messages, sampling, model=self.config.model), sent_image=sent_image)
                    raise broken_stream(self.config, SILENT_STREAM)
            except RemoteError as exc:
                if state.accepted:
                    named = silent_stream_error(self.config, exc, sent_image=sent_image)
                    if named is not exc:
                        raise named from exc
                raise
            if new_image:
                check_image_seen(state, self.conversation, self.config)
                assert sent.image_url is not None
                self._seen_images.add(sent.image_url)
            if schema is not None:
                turn.json = validate_json_output(state.text, schema)
        except asyncio.CancelledError:
            turn.cancelled = True
            sent.answer = state.text
            turn.stats = _stats(state, new_image, "cancelled")
            turn._queue.put_nowait(_DONE)
            return  # Stop is not an error: the turn ends with what came
        except RemoteError as exc:
            await self._fail(turn, sent, exc)
            return
        sent.answer = state.text
        turn.stats = _stats(state, new_image, None)
        turn._queue.put_nowait(_DONE)

    async def _fail(self, turn: RemoteTurn, sent: SentTurn, exc: RemoteError) -> None:
        if sent.answer is None and sent in self.conversation.turns:
            self.conversation.turns.remove(sent)  # a failed turn is not part of the conversation
        turn._queue.put_nowait(exc)

    async def _stream(self, body: dict[str, Any], state: StreamState, turn: RemoteTurn, *, sent_image: bool) -> None:
        client = await self.client()
        decoder = SSEDecoder()
        try:
            async with client.stream("POST", self.config.api_base + "/chat/completions", json=body,
                                     headers=self.config.headers(stream=True)) as response:  # fmt: skip
                if response.status_code >= 400:
                    raise error_for_status(response.status_code, await response.aread(), self.config,
                                           sent_image=sent_image)  # fmt: skip
                state.accepted = True
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # A server that ignores "stream": one whole reply.
                    for piece in [state.apply_whole(await response.aread())]:
                        if piece:
                            state.first_piece_at = state.first_piece_at or time.perf_counter()
                            turn._queue.put_nowait(piece)
                    return
                async for chunk in response.aiter_raw():
                    for data in decoder.feed(chunk):
                        for piece in state.apply(data):
                            turn._queue.put_nowait(piece)
                for data in decoder.close():
                    for piece in state.apply(data):
                        turn._queue.put_nowait(piece)
        except httpx.ConnectError as exc:
            raise unreachable(self.config, _reason(exc)) from exc
        except httpx.TimeoutException as exc:
            raise unreachable(self.config, f"no reply within {self.config.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            if state.pieces or state.done:
                raise broken_stream(self.config, _reason(exc)) from exc
            return  # nothing came: the caller probes

    async def _probe(self, body: dict[str, Any], *, sent_image: bool) -> None:
        # On a fresh connection: the one the stream failed on may be left half-closed.
        async with httpx.AsyncClient(verify=await self._verify(), transport=self._transport,
                                     timeout=httpx.Timeout(self.config.timeout, connect=10.0)) as client:  # fmt: skip
            try:
                response = await client.post(self.config.api_base + "/chat/completions", json=body,
                                             headers=self.config.headers())  # fmt: skip
            except httpx.HTTPError as exc:
                raise broken_stream(self.config, _reason(exc)) from exc
            if response.status_code >= 400:
                raise error_for_status(response.status_code, response.content, self.config, sent_image=sent_image)


def _schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema") or {}
        return dict(inner.get("schema") or {})
    if response_format.get("type") == "json_object":
        return dict(response_format.get("schema") or {"type": "object"})
    return None


def _stats(state: StreamState, new_image: bool, finish: str | None) -> TurnStats:
    timings = state.timings
    decode = int(state.usage.get("completion_tokens", state.pieces) or 0)
    elapsed = time.perf_counter() - (state.first_piece_at or time.perf_counter())
    return TurnStats(
        image_encode_ms=float(timings.get("image_encode_ms", 0.0) or 0.0),
        image_cached=bool(timings.get("image_cached", not new_image)),
        prompt_tokens=state.prompt_tokens or 0,
        prefill_ms=float(timings.get("prefill_ms", timings.get("prompt_ms", 0.0)) or 0.0),
        ttft_ms=state.ttft_ms(),
        decode_tokens=decode,
        decode_tok_s=float(timings.get("decode_tok_s", timings.get("predicted_per_second", 0.0)) or 0.0)
        or (decode / elapsed if elapsed > 0 and decode > 1 else 0.0),
        finish_reason=finish or ("length" if state.finish_reason == "length" else "stop"),
    )


def _replace(config: ServerConfig, **changes: Any) -> ServerConfig:
    from dataclasses import replace

    return replace(config, **changes)


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return printable(text, limit=200)


async def _peer_certificate(config: ServerConfig) -> bytes:
    """The server's certificate, read before anything (token, frames) is sent."""
    parts = urlsplit(config.url)
    host, port = parts.hostname or "", parts.port or 443
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=probe_context(), server_hostname=host), 10.0
        )
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as exc:
        raise unreachable(config, exc) from exc
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not der:
        raise RemoteError(f"{config.host} presented no certificate", kind="unreachable")
    return bytes(der)
