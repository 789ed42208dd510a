"""STUBS, not real engines: small OpenAI-compatible servers for Settings → Engine tests (served on 127.0.0.1 by
tests.support.uvicorn_server.RunningServer): one that answers, one that drops images, one that fails like
llama-cpp-python's server with the mtmd handler on a text-only template."""

from __future__ import annotations

import asyncio
import json
import threading

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

TOKEN = "sek-42"


def openai_stub(hold: threading.Event | None = None) -> Starlette:
    """A token-checking OpenAI-compatible server that serves two models, one of them
    declared without vision, and answers every chat with "It is red." over a prompt big enough to hold an image.
    With `hold`, /v1/models answers only once it is set (so a test can prove the caller did not wait for it)."""

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    def refused() -> JSONResponse:
        return JSONResponse({"error": {"message": "Invalid API key", "type": "invalid_request_error"}}, 401)

    async def models(request: Request):
        if hold is not None:
            await asyncio.to_thread(hold.wait, 30)
        if not authorized(request):
            return refused()
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": "llava-big", "object": "model"},
                    {"id": "words-only", "object": "model", "vision": False},
                ],
            }
        )

    async def chat(request: Request):
        if not authorized(request):
            return refused()

        def events():
            for piece in ("It is ", "red."):
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': piece}}]})}\n\n"
            yield f"data: {json.dumps({'choices': [], 'usage': {'prompt_tokens': 700, 'completion_tokens': 2}})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


def image_dropping_stub(prompt_tokens: int = 9) -> Starlette:
    """STUB, not a real engine: answers every chat with "It is blue." and reports a 9-token prompt, as a text-only
    server that silently drops image parts does (with more tokens: a server that reads the image but ignores
    grammar and response_format)."""

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [{"id": "text-only-stub", "object": "model"}]})

    async def chat(request: Request):
        def events():
            for piece in ("It is ", "blue."):
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': {'content': piece}}]})}\n\n"
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 2}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


LIST_CONTENT_REPLY = {"error": {"message": 'can only concatenate str (not "list") to str',
                                "type": "internal_server_error", "param": None, "code": None}}  # fmt: skip


def list_content_stub() -> Starlette:
    """STUB, not a real engine: lists one model and answers every chat with the HTTP 500 llama-cpp-python's server
    (--chat_format mtmd) gives for a model whose chat template concatenates `content` with text (TinyLlama's), as
    tests/test_remote.py::test_peer_with_mtmd_and_a_text_template_says_what_happened meets it for real."""

    async def models(request: Request):
        return JSONResponse({"object": "list", "data": [{"id": "tiny-peer", "object": "model"}]})

    async def chat(request: Request):
        return JSONResponse(LIST_CONTENT_REPLY, 500)

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])
