"""`llavacam ask --server URL`: the same questions and output as `llavacam ask`, answered by a server.

Runs the asyncio transport under `asyncio.run`; Ctrl+C cancels the turn's task, which closes the stream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from app.core.errors import LlavaCamError


def _token(args: argparse.Namespace) -> str | None:
    from app.core.remote.trust import load_token

    if args.token and args.token_file:
        raise LlavaCamError("give either --token or --token-file, not both")
    if args.token_file:
        token = load_token(Path(args.token_file))
        if token is None:
            raise LlavaCamError(f"--token-file {args.token_file}: no such file")
        return token
    return args.token or os.environ.get("LLAVACAM_SERVER_TOKEN") or None


def run_remote(args: argparse.Namespace) -> int:
    from app.commands.ask import check_number
    from app.core.inference.images import load_image
    from app.core.inference.sampling import SamplingSettings
    from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT
    from app.core.remote.protocol import ServerConfig

    if args.model or args.mmproj or args.model_id:
        raise LlavaCamError("--model/--mmproj/--model-id name files on this computer; with --server, pick the "
                            "server's model with --server-model NAME")  # fmt: skip
    if args.ca_file and args.fingerprint:
        raise LlavaCamError("give either --ca-file or --fingerprint, not both")
    check_number("--temperature", args.temperature, 0.0, 100.0)
    check_number("--top-p", args.top_p, 0.0, 1.0)
    questions = args.question or (["Describe this image."] if args.image else [])
    if not questions:
        raise LlavaCamError("give a question with -q")
    image = load_image(args.image) if args.image else None
    config = ServerConfig(args.server, _token(args), args.server_model)
    sampling = SamplingSettings(temperature=args.temperature, top_p=args.top_p or 1e-9, seed=args.seed,
                                max_tokens=args.max_tokens)  # fmt: skip
    system = args.system if args.system is not None else DEFAULT_SYSTEM_PROMPT
    return asyncio.run(_ask_all(args, config, image, questions, sampling, system))


async def _ask_all(args: argparse.Namespace, config: Any, image: Any, questions: list[str], sampling: Any,
                   system: str) -> int:  # fmt: skip
    from app.core.remote.aio import RemoteEngine

    engine = RemoteEngine(config, system_prompt=system, ca_file=Path(args.ca_file) if args.ca_file else None,
                          fingerprint=args.fingerprint)  # fmt: skip
    async with engine:
        entry = await engine.connect()
        model = str(entry.get("id"))
        for index, question in enumerate(questions, start=1):
            turn = engine.ask(question, image if index == 1 else None, sampling)
            try:
                if args.json:
                    stats = await turn.wait()
                    record: dict[str, Any] = {
                        "turn": index, "question": question, "answer": turn.text,
                        "engine": "server", "server": engine.config.host, "model": model,
                        "image_encode_ms": round(stats.image_encode_ms, 3), "prompt_tokens": stats.prompt_tokens,
                        "prefill_ms": round(stats.prefill_ms, 3), "ttft_ms": round(stats.ttft_ms, 3),
                        "decode_tokens": stats.decode_tokens, "decode_tok_s": round(stats.decode_tok_s, 3),
                        "image_cached": stats.image_cached, "finish_reason": stats.finish_reason,
                    }  # fmt: skip
                    print(json.dumps(record, ensure_ascii=False), flush=True)
                else:
                    if len(questions) > 1:
                        print(f"> {question}", flush=True)
                    async for piece in turn:
                        sys.stdout.write(piece)
                        sys.stdout.flush()
                    sys.stdout.write("\n")
                    sys.stdout.flush()
            except (KeyboardInterrupt, asyncio.CancelledError):
                turn.cancel()
                raise
    return 0


def sync_tls_context(args: argparse.Namespace, config: Any) -> Any:
    """For the stdlib transport: the SSL context --ca-file or --fingerprint asks for (None: the system's)."""
    from app.core.engine_choice import tls_context

    if args.ca_file and args.fingerprint:
        raise LlavaCamError("give either --ca-file or --fingerprint, not both")
    return tls_context(config.url, args.ca_file, args.fingerprint)


def server_answerer(chat: Any, max_tokens: int) -> Any:
    """A watch's answerer asking a server (stdlib transport, on the watch's own thread): (question, frame, grammar)
    -> the answer, or None when it was cancelled."""
    from app.core.inference.images import load_image
    from app.core.inference.sampling import GREEDY
    from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT

    sampling = GREEDY.with_(max_tokens=max_tokens)

    def answer(question: str, frame: Any, grammar: str | None) -> str | None:
        turn = chat.answer_once(question, load_image(frame.rgb), sampling, grammar, system_prompt=DEFAULT_SYSTEM_PROMPT)
        return None if turn.cancelled else turn.text.strip()

    from app.core.inference.answerer import AnsweredBy

    answer.answered_by = AnsweredBy(chat.config.host, chat.config.model or "")  # type: ignore[attr-defined]
    return answer


class _Finished:
    """A server's finished answer, seen as the local engine's Turn by code that waits on one (extract)."""

    def __init__(self, text: str, stats: Any) -> None:
        self.text = text
        self._stats = stats

    def wait(self) -> Any:
        return self._stats

    def cancel(self) -> None:
        pass


class ServerAside:
    """`extract`'s engine over a server: `ask_aside` sends the schema's grammar in llama.cpp's own `grammar`
    field (llavacam serve, llama-server, llama-cpp-python's server), then checks the answer is JSON of that schema,
    so a server that ignored the grammar is named rather than its free text passed on."""

    def __init__(self, chat: Any, schema: dict[str, Any]) -> None:
        self.chat = chat
        self.schema = schema

    def ask_aside(self, question: str, image: Any, sampling: Any) -> _Finished:
        from app.core.inference.answerer import TurnStats
        from app.core.inference.images import load_image
        from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT
        from app.core.remote.protocol import validate_json_output

        turn = self.chat.answer_once(question, load_image(image), sampling.with_(grammar=None), sampling.grammar,
                                     system_prompt=DEFAULT_SYSTEM_PROMPT)  # fmt: skip
        finish = "cancelled" if turn.cancelled else ("length" if turn.finish_reason == "length" else "stop")
        if finish == "stop":
            validate_json_output(turn.text, self.schema)
        return _Finished(turn.text, TurnStats(finish_reason=finish))


def server_chat(args: argparse.Namespace) -> Any:
    """A stdlib client for --server (token, TLS trust), checked now: unreachable or a wrong token is said at once."""
    from app.core.remote.protocol import ServerConfig
    from app.core.remote.stdlib import RemoteChat

    if args.model or args.mmproj or args.model_id:
        raise LlavaCamError("--model/--mmproj/--model-id name files on this computer; with --server, pick the "
                            "server's model with --server-model NAME")  # fmt: skip
    config = ServerConfig(args.server, _token(args), args.server_model)
    chat = RemoteChat(config.url, config.token, config.model, context=sync_tls_context(args, config))
    chat.models()
    return chat
