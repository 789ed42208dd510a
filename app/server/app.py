"""`llavacam serve`: an OpenAI-compatible chat API over the engine, keeping image encodings between requests.

Each request's messages are handed to the engine as a conversation (`set_history` + `ask`). The engine reuses its
KV cache wherever the conversation still matches what it evaluated, so a request that extends the previous one
evaluates only its new tokens and never re-encodes the image; anything else starts fresh. One request computes
at a time (an asyncio lock, taken in arrival order); a client that disconnects mid-stream cancels its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.core.errors import LlavaCamError, PromptTooLongError
from app.core.inference.engine import Engine, Turn, TurnStats
from app.core.inference.sampling import SamplingSettings
from app.server.messages import Conversation, Limits, RequestError, to_conversation


def _error(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


class ChatService:
    def __init__(self, engine: Engine, model_id: str, limits: Limits) -> None:
        self.engine = engine
        self.model_id = model_id
        self.limits = limits
        self.lock = asyncio.Lock()
        self.aliases = {model_id, engine.info.name, engine.info.text_path.name, engine.info.text_path.stem, "llavacam"}

    def check_model(self, name: Any) -> None:
        if name is not None and name not in self.aliases:
            raise RequestError(f"The model {name!r} does not exist; this server serves {self.model_id!r}",
                               status=404, code="model_not_found", param="model")  # fmt: skip

    def sampling(self, body: dict[str, Any]) -> SamplingSettings:
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 512
        stop = body.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        try:
            if int(max_tokens) > self.limits.max_tokens:
                raise RequestError(f"max_tokens may be at most {self.limits.max_tokens}", param="max_tokens")
            return SamplingSettings(
                temperature=float(body.get("temperature", 0.2) if body.get("temperature") is not None else 0.2),
                top_p=float(body.get("top_p") if body.get("top_p") is not None else 0.95),
                seed=int(body["seed"]) if body.get("seed") is not None else None,
                max_tokens=int(max_tokens),
                stop=tuple(str(s) for s in stop),
            )
        except (TypeError, ValueError) as exc:
            raise RequestError(f"invalid sampling setting: {exc}") from exc

    def start_turn(self, conversation: Conversation, sampling: SamplingSettings) -> Turn:
        """Runs in a worker thread: waits for the engine to adopt the history, then starts the answer."""
        self.engine.set_history(conversation.history, conversation.system).result()
        return self.engine.ask(conversation.question, conversation.image, sampling)


def create_app(engine: Engine, *, model_id: str = "llavacam", token: str | None = None,
               limits: Limits | None = None) -> Starlette:  # fmt: skip
    service = ChatService(engine, model_id, limits or Limits())

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        given = request.headers.get("authorization", "")
        return secrets.compare_digest(given.encode(), f"Bearer {token}".encode())

    def unauthorized() -> JSONResponse:
        return _error(RequestError("Missing or wrong API key: send 'Authorization: Bearer <token>'", status=401,
                                   code="invalid_api_key", kind="authentication_error"))  # fmt: skip

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": service.model_id, "busy": service.lock.locked()})

    async def models(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        info = engine.info
        return JSONResponse({"object": "list", "data": [{
            "id": service.model_id, "object": "model", "created": 0, "owned_by": "llavacam",
            "vision": info.has_vision, "context_length": info.n_ctx, "template": info.template_family,
        }]})  # fmt: skip

    async def chat(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        try:
            body = await _read_json(request, service.limits)
            service.check_model(body.get("model"))
            conversation = await asyncio.to_thread(to_conversation, body.get("messages"), service.limits)
            sampling = service.sampling(body)
        except RequestError as error:
            return _error(error)
        await service.lock.acquire()
        try:
            turn = await asyncio.to_thread(service.start_turn, conversation, sampling)
        except LlavaCamError as exc:
            service.lock.release()
            return _error(RequestError(str(exc)))
        except BaseException:
            service.lock.release()
            raise
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.get("stream"):
            # Wait for the first event before answering, so a prompt that does not fit is still a 4xx.
            pump = _TurnPump(turn)
            first = await pump.next()
            if first[0] == "error":
                await asyncio.to_thread(pump.thread.join)
                service.lock.release()
                return _error(_turn_error(first[1]))
            return _ClosingStreamingResponse(
                _stream(service, pump, first, completion_id, created), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )  # fmt: skip
        try:
            stats = await asyncio.to_thread(turn.wait)
        except LlavaCamError as exc:
            return _error(_turn_error(exc))
        finally:
            service.lock.release()
        payload = {
            "id": completion_id, "object": "chat.completion", "created": created, "model": service.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.text},
                         "finish_reason": _finish_reason(stats)}],
            "usage": _usage(stats), "timings": stats.to_dict(),
        }  # fmt: skip
        return JSONResponse(payload, headers=_timing_headers(stats))

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )


async def _read_json(request: Request, limits: Limits) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise RequestError(f"the request body is larger than {limits.max_body_bytes} bytes", status=413,
                           code="request_too_large")  # fmt: skip
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_body_bytes:
            raise RequestError(f"the request body is larger than {limits.max_body_bytes} bytes", status=413,
                               code="request_too_large")  # fmt: skip
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    return body


def _turn_error(exc: BaseException) -> RequestError:
    if isinstance(exc, PromptTooLongError):
        return RequestError(str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, LlavaCamError):
        return RequestError(str(exc))
    return RequestError(f"the model failed: {exc}", status=500, kind="server_error")


def _finish_reason(stats: TurnStats) -> str:
    return "length" if stats.finish_reason in ("length", "context") else "stop"


def _usage(stats: TurnStats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.decode_tokens,
            "total_tokens": stats.prompt_tokens + stats.decode_tokens}  # fmt: skip


def _timing_headers(stats: TurnStats) -> dict[str, str]:
    return {
        "X-LlavaCam-Image-Encode-Ms": f"{stats.image_encode_ms:.1f}",
        "X-LlavaCam-Prompt-Tokens": str(stats.prompt_tokens),
        "X-LlavaCam-TTFT-Ms": f"{stats.ttft_ms:.1f}",
    }


class _ClosingStreamingResponse(StreamingResponse):
    """Closes its generator however the response ends.

    With ASGI spec 2.4 servers Starlette learns of a disconnect from a failed send and leaves the generator to the
    garbage collector; closing it here runs its `finally`, which cancels the answer at once.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with contextlib.suppress(BaseException):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]


class _TurnPump:
    """Moves a Turn's pieces (produced on the engine's thread) onto the event loop, through a reader thread."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.thread = threading.Thread(target=self._pump, name="llavacam-sse", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        put = self.queue.put_nowait
        try:
            for piece in self.turn:
                self.loop.call_soon_threadsafe(put, ("piece", piece))
            self.loop.call_soon_threadsafe(put, ("done", self.turn.stats))
        except BaseException as exc:
            self.loop.call_soon_threadsafe(put, ("error", exc))

    async def next(self) -> tuple[str, Any]:
        return await self.queue.get()


async def _stream(
    service: ChatService, pump: _TurnPump, first: tuple[str, Any], completion_id: str, created: int
) -> AsyncIterator[bytes]:
    """Server-sent events in OpenAI's chunk format; the last chunk carries usage and our timings."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": service.model_id, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra}  # fmt: skip
        return f"data: {json.dumps(data)}\n\n".encode()

    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        event = first
        while True:
            kind, value = event
            if kind == "piece":
                yield chunk({"content": value})
            elif kind == "done":
                finished = True
                yield chunk({}, _finish_reason(value), usage=_usage(value), timings=value.to_dict())
                break
            else:
                finished = True
                yield f"data: {json.dumps(RequestError(str(value)).body())}\n\n".encode()
                break
            event = await pump.next()
        yield b"data: [DONE]\n\n"
    finally:
        # No awaits here: after a disconnect this runs inside a cancelled scope, where every await raises again.
        # The engine queues the next request's work behind this turn's end, so releasing at once is safe.
        if not finished:
            pump.turn.cancel()  # the client went away: stop generating for nobody
        with contextlib.suppress(RuntimeError):
            service.lock.release()
