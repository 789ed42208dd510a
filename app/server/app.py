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
import math
import secrets
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from app.core.errors import LlavaCamError, PromptTooLongError, printable
from app.core.inference.engine import Engine, Turn, TurnStats
from app.core.inference.sampling import SamplingSettings
from app.server.guard import GuardMiddleware, HostPolicy
from app.server.messages import Conversation, Limits, RequestError, to_conversation


def _error(error: RequestError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number", param=name)
    if not low <= value <= high:
        raise RequestError(f"{name} must be from {low:g} to {high:g}", param=name)
    return float(value)


def _whole(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be a whole number", param=name)
    if not low <= value <= high:
        raise RequestError(f"{name} must be from {low} to {high}", param=name)
    return value


def _grammar(response_format: Any) -> str | None:
    """OpenAI's response_format as a llama.cpp grammar: a JSON schema's, any JSON object's, or none for text."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if kind == "json_object":
        schema = response_format.get("schema")
        if schema is None:
            return JSON_GBNF
    elif kind == "json_schema":
        inner = response_format.get("json_schema")
        schema = inner.get("schema") if isinstance(inner, dict) else None
        if not isinstance(schema, dict):
            raise RequestError("response_format.json_schema.schema must be a JSON schema object",
                               param="response_format")  # fmt: skip
    else:
        raise RequestError('response_format.type must be "text", "json_object" or "json_schema"',
                           param="response_format")  # fmt: skip
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exceptions, ValueErrors and KeyErrors on what it cannot do
        raise RequestError(f"response_format: this JSON schema cannot be turned into a grammar "
                           f"({printable(exc, limit=200)})", param="response_format") from None  # fmt: skip


class ChatService:
    def __init__(self, engine: Engine, model_id: str, limits: Limits) -> None:
        self.engine = engine
        self.model_id = model_id
        self.limits = limits
        self.lock = asyncio.Lock()
        self.queued = 0  # requests holding or waiting for the lock
        self.aliases = {model_id, engine.info.name, engine.info.text_path.name, engine.info.text_path.stem, "llavacam"}
        info = engine.info
        self.max_image_side = engine.config.max_image_side or (2 * info.image_size if info.image_size else 1344)

    def check_model(self, name: Any) -> None:
        if name is None:
            return
        if not isinstance(name, str):
            raise RequestError("model must be a string", param="model")
        if name not in self.aliases:
            raise RequestError(f"The model {printable(name, limit=100)!r} does not exist; this server serves "
                               f"{self.model_id!r}", status=404, code="model_not_found", param="model")  # fmt: skip

    def sampling(self, body: dict[str, Any]) -> SamplingSettings:
        given = body.get("max_completion_tokens", body.get("max_tokens"))
        name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = _whole({name: given}, name, 1, self.limits.max_tokens)
        stop = body.get("stop") or ()
        if isinstance(stop, str):
            stop = (stop,)
        if not isinstance(stop, (list, tuple)) or len(stop) > 16 or not all(isinstance(s, str) for s in stop):
            raise RequestError("stop must be a string or a list of at most 16 strings", param="stop")
        grammar = _grammar(body.get("response_format"))
        given = body.get("grammar")  # llama.cpp's own field (llama-server, llama-cpp-python's server): GBNF text
        if given is not None:
            if grammar is not None:
                raise RequestError("give either response_format or grammar, not both", param="grammar")
            if not isinstance(given, str) or not given.strip() or len(given) > 65536:
                raise RequestError("grammar must be GBNF text (rule root) of at most 65536 characters",
                                   param="grammar")  # fmt: skip
            grammar = given
        try:
            return SamplingSettings(
                grammar=grammar,
                temperature=_number(body, "temperature", 0.2, 0.0, 100.0),
                top_p=_number(body, "top_p", 0.95, 0.0, 1.0) or 1e-9,
                seed=_whole(body, "seed", -(2**63), 2**64 - 1),
                max_tokens=max_tokens if max_tokens is not None else 512,
                stop=tuple(stop),
            )
        except LlavaCamError as exc:
            raise RequestError(f"invalid sampling setting: {exc}") from exc

    def release(self) -> None:
        self.queued -= 1
        self.lock.release()

    def start_turn(self, conversation: Conversation, sampling: SamplingSettings) -> Turn:
        """Runs in a worker thread: waits for the engine to adopt the history, then starts the answer."""
        self.engine.set_history(conversation.history, conversation.system).result()
        return self.engine.ask(conversation.question, conversation.image, sampling)


def create_app(engine: Engine, *, model_id: str = "llavacam", token: str | None = None,
               limits: Limits | None = None, policy: HostPolicy | None = None) -> Starlette:  # fmt: skip
    """The API over `engine`. `policy` says which Host names and Origins are accepted (default: loopback only)."""
    service = ChatService(engine, model_id, limits or Limits())

    def authorized(request: Request) -> bool:
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        # The scheme is case-insensitive (RFC 9110); the token is not.
        return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())

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
            "image_size": info.image_size,  # the encoder's input side: clients send frames no larger than twice it
        }]})  # fmt: skip

    def queue_full() -> JSONResponse:
        retry = str(max(1, service.queued))
        return JSONResponse(RequestError(f"the server is busy ({service.queued} requests queued); retry in {retry} s",
                                         status=503, code="server_busy", kind="server_error").body(),
                            status_code=503, headers={"Retry-After": retry})  # fmt: skip

    async def chat(request: Request) -> Response:
        if not authorized(request):
            return unauthorized()
        if service.queued >= service.limits.max_queue:
            return queue_full()
        try:
            body = await _read_json(request, service.limits)
            service.check_model(body.get("model"))
            sampling = service.sampling(body)
            conversation = await asyncio.to_thread(
                to_conversation, body.get("messages"), service.limits, max_side=service.max_image_side
            )
        except RequestError as error:
            return _error(error)
        if service.queued >= service.limits.max_queue:
            return queue_full()
        service.queued += 1
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            return await _answer(request, body, conversation, sampling, gone)
        finally:
            gone.cancel()

    async def _answer(request: Request, body: dict[str, Any], conversation: Conversation,
                      sampling: SamplingSettings, gone: asyncio.Future[None]) -> Response:  # fmt: skip
        acquire = asyncio.ensure_future(service.lock.acquire())
        if not await _first_of(acquire, gone):
            acquire.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acquire
            if acquire.cancelled():
                service.queued -= 1
            else:
                service.release()
            return _client_gone()
        try:
            turn = await asyncio.to_thread(service.start_turn, conversation, sampling)
        except LlavaCamError as exc:
            service.release()
            return _error(_turn_error(exc))
        except BaseException:
            service.release()
            raise
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        if body.get("stream"):
            # Wait for the first event before answering, so a prompt that does not fit is still a 4xx.
            answer = turn.stream()  # pieces arrive on this loop straight from the engine's thread
            first_event = asyncio.ensure_future(_next_event(answer, turn))
            if not await _first_of(first_event, gone):
                turn.cancel()  # the client left during prompt evaluation: stop evaluating for nobody
                await first_event
                await answer.aclose()
                service.release()
                return _client_gone()
            first = first_event.result()
            if first[0] == "error":
                service.release()
                return _error(_turn_error(first[1]))
            gone.cancel()  # from here the streaming response watches the connection itself
            ended = _StreamEnd(service, turn)
            return _ClosingStreamingResponse(
                _stream(service, answer, turn, first, completion_id, created, ended), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}, ended=ended,
            )  # fmt: skip
        waiting = asyncio.ensure_future(_collect(turn))
        try:
            if not await _first_of(waiting, gone):
                turn.cancel()  # nobody will read this answer
                with contextlib.suppress(LlavaCamError):
                    await waiting
                return _client_gone()
            stats = waiting.result()
        except LlavaCamError as exc:
            return _error(_turn_error(exc))
        finally:
            service.release()
        payload = {
            "id": completion_id, "object": "chat.completion", "created": created, "model": service.model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.text},
                         "finish_reason": _finish_reason(stats)}],
            "usage": _usage(stats), "timings": stats.to_dict(),
        }  # fmt: skip
        return JSONResponse(payload, headers=_timing_headers(stats))

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        path = printable(request.url.path, limit=200)
        messages = {404: f"no route {path!r}: this server answers /health, /v1/models and /v1/chat/completions",
                    405: f"{printable(request.method, limit=20)} is not allowed on {path}"}  # fmt: skip
        message = messages.get(status, str(getattr(exc, "detail", "")) or "HTTP error")
        code = {404: "not_found", 405: "method_not_allowed"}.get(status)
        given = getattr(exc, "headers", None) or {}
        allow = next((value for key, value in given.items() if key.lower() == "allow"), None)
        headers = {"Allow": allow} if allow else {}
        return JSONResponse(RequestError(message, status=status, code=code).body(), status_code=status,
                            headers=headers)  # fmt: skip

    async def server_error(request: Request, exc: Exception) -> Response:
        error = RequestError(f"the server failed: {type(exc).__name__}: {printable(exc, limit=200)}", status=500,
                             kind="server_error")  # fmt: skip
        return JSONResponse(error.body(), status_code=500)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ],
        middleware=[Middleware(GuardMiddleware, policy=policy or HostPolicy("127.0.0.1"))],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read, so nothing else is received)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _first_of(work: asyncio.Future[Any], gone: asyncio.Future[None]) -> bool:
    """Wait for `work` or the client's disconnect; True when the work finished first."""
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    return work.done()


def _client_gone() -> Response:
    return JSONResponse(RequestError("the client closed the connection", status=499, code="client_closed").body(),
                        status_code=499)  # fmt: skip


def _refuse_constant(name: str) -> Any:
    raise RequestError(f"the request body is not valid JSON: {name} is not a JSON number", code="invalid_json")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RequestError(f"the request body holds a number too large for JSON ({text[:30]})", code="invalid_json")
    return value


def _check_strings(body: Any) -> None:
    """Every string must be valid Unicode: a lone surrogate (`"\\ud800"`) cannot be tokenized or stored."""
    stack = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RequestError(f"the request holds an invalid Unicode character (a lone surrogate "
                                   f"\\u{ord(value[exc.start]):04x})", code="invalid_json") from None  # fmt: skip
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


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
        body = json.loads(b"".join(chunks), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise RequestError("the request body is nested too deeply", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {printable(exc, limit=200)}",
                           code="invalid_json") from None  # fmt: skip
    _check_strings(body)
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

    def __init__(self, *args: Any, ended: _StreamEnd, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ended = ended

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with contextlib.suppress(BaseException):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            # A client that left before the first chunk was sent never started the generator: end the turn here.
            self.ended.end(finished=False)


class _StreamEnd:
    """Ends a streamed turn exactly once: cancels it if unfinished and releases the engine for the next request."""

    def __init__(self, service: ChatService, turn: Turn) -> None:
        self.service = service
        self.turn = turn
        self.done = False

    def end(self, *, finished: bool) -> None:
        if self.done:
            return
        self.done = True
        if not finished:
            self.turn.cancel()  # the client went away: stop generating for nobody
        self.service.release()


async def _collect(turn: Turn) -> TurnStats:
    """The whole answer, read on this loop; its stats (raises what the turn raised)."""
    async for _piece in turn.stream():
        pass
    assert turn.stats is not None
    return turn.stats


async def _next_event(answer: AsyncGenerator[str, None], turn: Turn) -> tuple[str, Any]:
    """The turn's next event as ("piece", text), ("done", stats) or ("error", exception)."""
    try:
        return ("piece", await answer.__anext__())
    except StopAsyncIteration:
        return ("done", turn.stats)
    except Exception as exc:
        return ("error", exc)


async def _stream(
    service: ChatService, answer: AsyncGenerator[str, None], turn: Turn, first: tuple[str, Any], completion_id: str,
    created: int, ended: _StreamEnd,
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
                yield f"data: {json.dumps(_turn_error(value).body())}\n\n".encode()
                break
            event = await _next_event(answer, turn)
        yield b"data: [DONE]\n\n"
    finally:
        # No awaits here: after a disconnect this runs inside a cancelled scope, where every await raises again.
        # The engine queues the next request's work behind this turn's end, so releasing at once is safe.
        ended.end(finished=finished)
