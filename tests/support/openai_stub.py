"""STUB, not a real engine: a small OpenAI-compatible server for Settings → Engine tests (served on 127.0.0.1 by
tests.support.uvicorn_server.RunningServer)."""

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
