"""`llavacam serve`: the OpenAI-compatible API (see docs/server.md)."""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from app.commands.ask import add_model_arguments
from app.core.errors import LlavaCamError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="serve an OpenAI-compatible vision chat API",
        description="Serve POST /v1/chat/completions, GET /v1/models and GET /health over the local model.",
    )
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", help="require 'Authorization: Bearer TOKEN' (needed to bind beyond loopback)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--template", default=None, help="chat template family (tinyllama, vicuna, chatml, auto)")
    parser.add_argument("--max-body-mb", type=float, default=20.0)
    parser.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask")
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.commands.ask import _resolve_model
    from app.core.inference.engine import Engine, EngineConfig
    from app.server.app import create_app
    from app.server.messages import Limits

    if not is_loopback(args.host) and not args.token:
        raise LlavaCamError(
            f"binding to {args.host} exposes the model to the network: give --token TOKEN so requests must "
            "carry 'Authorization: Bearer TOKEN'"
        )
    text_model, mmproj, family = _resolve_model(args)
    engine = Engine(
        text_model, mmproj, EngineConfig(n_ctx=args.n_ctx, n_threads=args.threads, template=args.template or family)
    )
    model_id = args.model_id or engine.info.text_path.stem
    limits = Limits(max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_tokens=args.max_tokens_limit)
    app = create_app(engine, model_id=model_id, token=args.token, limits=limits)
    print(f"llavacam: serving {model_id} on http://{args.host}:{args.port}/v1 (Ctrl+C stops)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        engine.close()
    return 0
