"""One side of the benchmark, run in its own process: `python -m bench.side ours|stock ...` prints JSON.

"ours" is app.core.inference.engine; "stock" is what a Python developer would otherwise pick: llama-cpp-python's own
Llava15ChatHandler, given the same TinyLlama template. Both get the same files, threads, context and batch size.
Timings are wall clocks around what each side exposes to its caller.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

QUESTIONS = ("What is in this picture?", "What colour is the round thing?", "Describe the rest of the scene.")
SHORT_ANSWER = 12  # turns 1 and 2: enough to see the first token and a little decode
DECODE_TOKENS = 64  # turn 3 decodes this many tokens with EOS ignored: the decode-speed figure


def peak_rss_mb() -> float:
    """VmHWM: the process's peak resident set, what the OS had to give it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.sampling import GREEDY

    t0 = time.perf_counter()
    engine = Engine(
        args.model,
        args.mmproj,
        EngineConfig(n_ctx=args.n_ctx, n_batch=args.n_batch, n_threads=args.threads, template="tinyllama"),
    )
    result: dict[str, Any] = {"load_s": time.perf_counter() - t0}
    image = Path(args.image).read_bytes()
    with engine:
        turns = []
        for index, question in enumerate(QUESTIONS):
            last = index == len(QUESTIONS) - 1
            sampling = GREEDY.with_(max_tokens=DECODE_TOKENS if last else SHORT_ANSWER, ignore_eos=last)
            turn = engine.ask(question, image if index == 0 else None, sampling)
            stats = turn.wait()
            turns.append(stats.to_dict())
        result["turns"] = turns
        result["decode_tok_s"] = turns[-1]["decode_tok_s"]

        # The image pinned while the user types: preparation runs, the question comes 10 s later.
        engine.new_chat().result()
        engine.prepare(image)
        time.sleep(args.pin_seconds)
        turn = engine.ask(QUESTIONS[0], image, GREEDY.with_(max_tokens=SHORT_ANSWER))
        result["pinned"] = turn.wait().to_dict()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def tinyllama_llava_handler(mmproj: str) -> Any:
    from llama_cpp.llama_chat_format import Llava15ChatHandler

    class TinyLlamaLlavaHandler(Llava15ChatHandler):
        # The same Zephyr layout our engine renders: image first in the user turn, then a newline, the question.
        CHAT_FORMAT = (
            "{% for message in messages %}"
            "{% if message.role == 'system' %}<|system|>\n{{ message.content }}</s>\n{% endif %}"
            "{% if message.role == 'user' %}<|user|>\n"
            "{% if message.content is string %}{{ message.content }}{% else %}"
            "{% for content in message.content %}{% if content.type == 'image_url' %}"
            "{% if content.image_url is string %}{{ content.image_url }}"
            "{% else %}{{ content.image_url.url }}{% endif %}"
            "\n{% endif %}{% endfor %}"
            "{% for content in message.content %}{% if content.type == 'text' %}{{ content.text }}{% endif %}"
            "{% endfor %}{% endif %}</s>\n{% endif %}"
            "{% if message.role == 'assistant' and message.content is not none %}"
            "<|assistant|>\n{{ message.content }}</s>\n{% endif %}"
            "{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
        )

    return TinyLlamaLlavaHandler(clip_model_path=mmproj, verbose=False)


def run_stock(args: argparse.Namespace) -> dict[str, Any]:
    import llama_cpp
    import llama_cpp.mtmd_cpp as mtmd

    # Time the handler's image work (encode + decode of the image chunk) by wrapping the function it calls.
    image_ms: list[float] = []
    original = mtmd.mtmd_helper_eval_chunk_single

    def timed(*call_args: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*call_args)
        finally:
            image_ms.append((time.perf_counter() - start) * 1000)

    mtmd.mtmd_helper_eval_chunk_single = timed

    # Llama() has no option for it, so stock gets the engine's choice of weight buffers by patching its defaults:
    # on a CPU with AMX, llama.cpp's AMX buffers segfault at real size (see native.use_extra_buffers).
    from app.core.inference.native import use_extra_buffers

    extra_buffers = use_extra_buffers(None, llama_cpp.llama_print_system_info().decode())
    default_params = llama_cpp.llama_cpp.llama_model_default_params

    def model_params() -> Any:
        params = default_params()
        params.use_extra_bufts = extra_buffers
        return params

    llama_cpp.llama_cpp.llama_model_default_params = model_params  # what Llama() calls

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=args.model,
        chat_handler=tinyllama_llava_handler(args.mmproj),
        n_ctx=args.n_ctx,
        n_batch=args.n_batch,
        n_ubatch=args.n_batch,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=-1,
        verbose=False,
    )
    result: dict[str, Any] = {"load_s": time.perf_counter() - t0}
    data_uri = "data:image/png;base64," + base64.b64encode(Path(args.image).read_bytes()).decode()
    eos = llm.token_eos()
    token_times: list[float] = []

    def clock(_ids: Any, scores: Any) -> Any:
        # Called once per generated token, when its logits are ready: the same instant our engine samples at.
        token_times.append(time.perf_counter())
        return scores

    def ban_eos(_ids: Any, scores: Any) -> Any:
        scores[eos] = float("-inf")
        return scores

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "A chat between a curious human and an artificial intelligence assistant. "
         "The assistant gives helpful, detailed, and polite answers to the human's questions."}
    ]  # fmt: skip
    turns = []
    for index, question in enumerate(QUESTIONS):
        last = index == len(QUESTIONS) - 1
        content: Any = (
            [{"type": "image_url", "image_url": {"url": data_uri}}, {"type": "text", "text": question}]
            if index == 0
            else question
        )
        messages.append({"role": "user", "content": content})
        image_ms.clear()
        token_times.clear()
        start = time.perf_counter()
        processors = [clock, ban_eos] if last else [clock]
        pieces = [
            chunk["choices"][0]["delta"].get("content") or ""
            for chunk in llm.create_chat_completion(
                messages=messages,
                temperature=0.0,
                top_k=1,
                max_tokens=DECODE_TOKENS if last else SHORT_ANSWER,
                stream=True,
                logits_processor=llama_cpp.LogitsProcessorList(processors),
            )
        ]
        messages.append({"role": "assistant", "content": "".join(pieces)})
        n_tokens = len(token_times)
        span = token_times[-1] - token_times[0] if n_tokens > 1 else 0.0
        turns.append(
            {
                "image_encode_ms": sum(image_ms),  # encode + image decode: the handler does both in one call
                "ttft_ms": (token_times[0] - start) * 1000 if token_times else 0.0,
                "decode_tokens": n_tokens,
                "decode_tok_s": (n_tokens - 1) / span if span > 0 else 0.0,
            }
        )
    result["turns"] = turns
    result["decode_tok_s"] = turns[-1]["decode_tok_s"]
    llm.close()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("side", choices=["ours", "stock"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--mmproj", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--pin-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = run_ours(args) if args.side == "ours" else run_stock(args)
    result["side"] = args.side
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
