"""`llavacam ask`: headless questions about one image, one turn per `-q`, answers streamed to stdout.

The JSON output is a contract other tools (benchmarks, scripts) rely on: one object per turn, one per line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any

from app.core.errors import LlavaCamError
from app.core.inference.templates import TEMPLATE_FAMILIES

if TYPE_CHECKING:
    from app.core.models.resolve import ModelFiles


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "ask",
        parents=[common],
        help="ask about an image from the terminal",
        description="Ask questions about an image; each -q is one turn of the same conversation.",
    )
    add_model_arguments(parser)
    parser.add_argument("--image", metavar="IMG", help="the image to ask about (omit for a text-only question)")
    parser.add_argument("-q", "--question", action="append", default=[], metavar="QUESTION", help="a question (repeat)")
    parser.add_argument("--system", metavar="S", help="system prompt")
    parser.add_argument("--max-tokens", type=int, default=256, metavar="N")
    parser.add_argument("--temperature", type=float, default=0.2, metavar="T", help="0 for greedy (deterministic)")
    parser.add_argument("--top-p", type=float, default=0.95, metavar="P")
    parser.add_argument("--seed", type=int, default=None, metavar="S")
    parser.add_argument("--n-ctx", type=int, default=4096, metavar="N", help="context size in tokens")
    parser.add_argument("--threads", type=int, default=None, metavar="N")
    parser.add_argument("--template", default=None, help=f"chat template family ({', '.join(TEMPLATE_FAMILIES)})")
    parser.add_argument("--json", action="store_true", help="one JSON object per turn on stdout")
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's own log")
    add_server_arguments(parser)
    parser.set_defaults(func=run)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--server and its companions, shared by the commands that can ask a server instead of this computer."""
    remote = parser.add_argument_group("a server instead of this computer (any OpenAI-compatible vision server)")
    remote.add_argument("--server", metavar="URL", help="ask the server at URL (e.g. http://gpu-box:8080); the "
                        "image is sent there")  # fmt: skip
    remote.add_argument("--token", metavar="T", help="the server's API token (or LLAVACAM_SERVER_TOKEN)")
    remote.add_argument("--token-file", metavar="FILE", help="read the token from FILE (must be mode 0600)")
    remote.add_argument("--server-model", metavar="NAME", help="the model to ask for (default: the server's first)")
    remote.add_argument("--ca-file", metavar="PEM", help="trust the server's certificate through this CA file")
    remote.add_argument("--fingerprint", metavar="SHA256", help="trust exactly the certificate with this SHA-256 "
                        "fingerprint (a home server's self-signed one)")  # fmt: skip


MAX_THREADS = 512


def check_number(option: str, value: float, low: float, high: float) -> None:
    """A finite number in [low, high], or one line naming the option (NaN and infinity pass argparse's float)."""
    if not math.isfinite(value) or not low <= value <= high:
        raise LlavaCamError(f"{option} {value}: give a number from {low:g} to {high:g}")


def check_text(option: str, text: str | None) -> None:
    """Text from the command line must be valid UTF-8: undecodable bytes arrive as lone surrogates, which the
    tokenizer cannot take."""
    if text is None:
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = ord(text[exc.start]) - 0xDC00 if 0xDC80 <= ord(text[exc.start]) <= 0xDCFF else None
        detail = f"byte 0x{byte:02x}" if byte is not None else f"character \\u{ord(text[exc.start]):04x}"
        raise LlavaCamError(f"{option} is not valid UTF-8 text ({detail} at position {exc.start}): check the "
                            "terminal's encoding") from None  # fmt: skip


def check_threads(value: int | None) -> None:
    """A thread count llama.cpp can start (a few per core at most), or one line saying what fits."""
    most = min(MAX_THREADS, 4 * (os.cpu_count() or 1))
    if value is not None and not 1 <= value <= most:
        raise LlavaCamError(f"--threads {value}: give 1 to {most} (this machine has {os.cpu_count()} cores)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model/--mmproj or --model-id, shared by the commands that load a model."""
    parser.add_argument("--model", metavar="TEXT.gguf", help="text model GGUF")
    parser.add_argument("--mmproj", metavar="MMPROJ.gguf", help="vision projector GGUF (omit for text-only)")
    parser.add_argument("--model-id", metavar="ID", help="an installed model pair (see `llavacam models list`)")


def chosen_model_files(args: argparse.Namespace) -> ModelFiles | None:
    """The model files --model/--mmproj or --model-id name (core's one set of rules), None when none were given;
    contradicting options are an error at once (before any camera, image or model is opened)."""
    from app.core.models.resolve import resolve_model_files

    return resolve_model_files(args.model, args.mmproj, args.model_id, data_dir=getattr(args, "data_dir", None),
                               catalog=getattr(args, "catalog", None))  # fmt: skip


def model_files(args: argparse.Namespace, chosen: ModelFiles | None = None) -> ModelFiles:
    """As `chosen_model_files` (or what it gave), for commands that need a model: none given is an error saying
    what to give."""
    from app.core.models.resolve import NO_MODEL, ModelChoiceError

    files = chosen if chosen is not None else chosen_model_files(args)
    if files is None:
        raise ModelChoiceError(NO_MODEL)
    return files


def run(args: argparse.Namespace) -> int:
    if args.server:
        from app.commands.ask_remote import run_remote

        return run_remote(args)
    for option in ("token", "token_file", "server_model", "ca_file", "fingerprint"):
        if getattr(args, option):
            raise LlavaCamError(f"--{option.replace('_', '-')} needs --server URL")
    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.images import load_image
    from app.core.inference.sampling import SamplingSettings
    from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT

    check_number("--temperature", args.temperature, 0.0, 100.0)
    check_number("--top-p", args.top_p, 0.0, 1.0)
    check_threads(args.threads)
    for question in args.question:
        check_text("-q", question)
    check_text("--system", args.system)
    questions = args.question or (["Describe this image."] if args.image else [])
    if not questions:
        raise LlavaCamError("give a question with -q")
    # Read the image before loading the model, so a bad image fails in milliseconds, not seconds.
    image = load_image(args.image) if args.image else None
    files = model_files(args)
    text_model, mmproj, family = files.text, files.mmproj, files.template
    if image is not None and not mmproj:
        raise LlavaCamError("asking about an image needs the vision projector: add --mmproj MMPROJ.gguf")
    sampling = SamplingSettings(
        temperature=args.temperature, top_p=args.top_p, seed=args.seed, max_tokens=args.max_tokens
    )
    config = EngineConfig(
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        template=args.template or family,
        system_prompt=args.system if args.system is not None else DEFAULT_SYSTEM_PROMPT,
        verbose=args.verbose,
    )
    from app.core.models.probe import ensure_pair_safe

    # A pair not yet known good is first loaded in a child process: a crash there is one line, not ours.
    ensure_pair_safe(text_model, mmproj, data_dir=getattr(args, "data_dir", None))
    with Engine(text_model, mmproj, config) as engine:
        for index, question in enumerate(questions, start=1):
            turn = engine.ask(question, image if index == 1 else None, sampling)
            try:
                if args.json:
                    stats = turn.wait()
                    record: dict[str, Any] = {
                        "turn": index,
                        "question": question,
                        "answer": turn.text,
                        "tokens": list(turn.tokens),
                        "image_encode_ms": round(stats.image_encode_ms, 3),
                        "prompt_tokens": stats.prompt_tokens,
                        "prefill_ms": round(stats.prefill_ms, 3),
                        "ttft_ms": round(stats.ttft_ms, 3),
                        "decode_tokens": stats.decode_tokens,
                        "decode_tok_s": round(stats.decode_tok_s, 3),
                        "image_cached": stats.image_cached,
                        "context_rebuilt": stats.context_rebuilt,
                        "finish_reason": stats.finish_reason,
                    }
                    print(json.dumps(record, ensure_ascii=False), flush=True)
                else:
                    if len(questions) > 1:
                        print(f"> {question}", flush=True)
                    for piece in turn:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                    sys.stdout.write("\n")
                    sys.stdout.flush()
            except KeyboardInterrupt:
                turn.cancel()
                raise
    return 0
