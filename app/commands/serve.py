"""`llavacam serve`: the OpenAI-compatible API (see docs/server.md)."""

from __future__ import annotations

import argparse
import errno
import socket
from pathlib import Path
from typing import Any

from app.commands.ask import add_model_arguments, check_threads
from app.core.errors import LlavaCamError
from app.core.inference.templates import TEMPLATE_FAMILIES


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
    parser.add_argument("--template", default=None, help=f"chat template family ({', '.join(TEMPLATE_FAMILIES)})")
    parser.add_argument("--max-body-mb", type=float, default=20.0)
    parser.add_argument("--max-tokens-limit", type=int, default=4096, help="largest max_tokens a request may ask")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="also accept requests whose Host is NAME (a DNS name pointing here; '*' accepts any)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (e.g. http://localhost:3000) call the API")
    parser.add_argument("--image-dir", metavar="DIR",
                        help="accept file:// image URLs for files inside DIR (refused without it)")  # fmt: skip
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    from app.server.guard import is_loopback_bind

    return is_loopback_bind(host)


def bind_socket(host: str, port: int) -> socket.socket:
    """Listen on host:port now, so a port in use is one clear line before anything is loaded or printed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise LlavaCamError(f"cannot bind to {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise LlavaCamError(f"port {port} on {host} is already in use (another llavacam serve?): choose another "
                                "with --port N") from None  # fmt: skip
        raise LlavaCamError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from app.commands.ask import model_files
    from app.core.inference.engine import Engine, EngineConfig
    from app.server.app import create_app
    from app.server.guard import HostPolicy
    from app.server.messages import Limits

    if not is_loopback(args.host) and not args.token:
        raise LlavaCamError(
            f"binding to {args.host} exposes the model to the network: give --token TOKEN so requests must "
            "carry 'Authorization: Bearer TOKEN'"
        )
    check_threads(args.threads)
    image_dir = Path(args.image_dir).expanduser() if args.image_dir else None
    if image_dir is not None and not image_dir.is_dir():
        raise LlavaCamError(f"--image-dir {image_dir}: no such folder")
    sock = bind_socket(args.host, args.port)
    try:
        from app.core.models.probe import ensure_pair_safe

        files = model_files(args)
        text_model, mmproj, family = files.text, files.mmproj, files.template
        # A pair not yet known good is first loaded in a child process: a crash there is one line, not ours.
        ensure_pair_safe(text_model, mmproj, data_dir=getattr(args, "data_dir", None))
        engine = Engine(
            text_model, mmproj,
            EngineConfig(n_ctx=args.n_ctx, n_threads=args.threads, template=args.template or family),
        )  # fmt: skip
        try:
            model_id = files.name
            limits = Limits(max_body_bytes=int(args.max_body_mb * 1024 * 1024), max_tokens=args.max_tokens_limit,
                            image_dir=image_dir)  # fmt: skip
            policy = HostPolicy(args.host, args.allowed_host, args.cors_origin)
            app = create_app(engine, model_id=model_id, token=args.token, limits=limits, policy=policy)
            print(f"llavacam: serving {model_id} on http://{args.host}:{args.port}/v1 (Ctrl+C stops)", flush=True)
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
            server.run(sockets=[sock])
        finally:
            engine.close()
    finally:
        sock.close()
    return 0
