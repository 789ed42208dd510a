"""`make bench`: our engine vs stock llama-cpp-python, same files and settings, alternating subprocesses.

    python -m bench [--quick] [--reps N] [--threads N] [--out bench/results/latest.json]

Full mode generates random-weight models with TinyLlama-1.1B-Chat / CLIP ViT-L/14-336 shapes once into a cache
dir (random weights cost exactly what real ones cost). `--quick` runs the same code on the tiny test models in
seconds; the test suite runs it so the benchmark cannot rot (it checks the output's shape, never timings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(os.environ.get("LLAVACAM_BENCH_CACHE", Path.home() / ".cache" / "llavacam-bench"))

# (figure, how to read it from a side's result, target ratio or None, "lower"/"higher" is better, compared to)
Figure = tuple[str, Any]


def run_side(side: str, pair: Any, image: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "bench.side", side,
        "--model", str(pair.text), "--mmproj", str(pair.mmproj), "--image", str(image),
        "--threads", str(args.threads), "--n-ctx", str(args.n_ctx), "--n-batch", str(args.n_batch),
        "--pin-seconds", str(args.pin_seconds),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "passive"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    if completed.returncode != 0:
        raise RuntimeError(f"bench side {side} failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def median(runs: list[dict[str, Any]], getter: Any) -> float:
    return float(statistics.median(getter(r) for r in runs))


def summarize(ours: list[dict[str, Any]], stock: list[dict[str, Any]]) -> dict[str, Any]:
    o = {
        "load_s": median(ours, lambda r: r["load_s"]),
        "turn1_image_encode_ms": median(ours, lambda r: r["turns"][0]["image_encode_ms"]),
        "turn1_prefill_ms": median(ours, lambda r: r["turns"][0]["prefill_ms"]),
        "turn1_ttft_ms": median(ours, lambda r: r["turns"][0]["ttft_ms"]),
        "turn2_ttft_ms": median(ours, lambda r: r["turns"][1]["ttft_ms"]),
        "turn3_ttft_ms": median(ours, lambda r: r["turns"][2]["ttft_ms"]),
        "pinned_ttft_ms": median(ours, lambda r: r["pinned"]["ttft_ms"]),
        "decode_tok_s": median(ours, lambda r: r["decode_tok_s"]),
        "peak_rss_mb": median(ours, lambda r: r["peak_rss_mb"]),
    }
    s = {
        "load_s": median(stock, lambda r: r["load_s"]),
        "turn1_image_encode_ms": median(stock, lambda r: r["turns"][0]["image_encode_ms"]),
        "turn1_ttft_ms": median(stock, lambda r: r["turns"][0]["ttft_ms"]),
        "turn2_ttft_ms": median(stock, lambda r: r["turns"][1]["ttft_ms"]),
        "turn3_ttft_ms": median(stock, lambda r: r["turns"][2]["ttft_ms"]),
        "decode_tok_s": median(stock, lambda r: r["decode_tok_s"]),
        "peak_rss_mb": median(stock, lambda r: r["peak_rss_mb"]),
    }
    follow_up = max(o["turn2_ttft_ms"], o["turn3_ttft_ms"])
    stock_follow_up = min(s["turn2_ttft_ms"], s["turn3_ttft_ms"])
    targets = [
        # name, measured ratio, target, passes when ratio <= target (or >= for "min")
        ("follow-up TTFT / our turn-1 TTFT", follow_up / o["turn1_ttft_ms"], 0.10, "max"),
        ("follow-up TTFT / stock follow-up TTFT", follow_up / stock_follow_up, 0.10, "max"),
        ("turn-1 TTFT / stock turn-1 TTFT", o["turn1_ttft_ms"] / s["turn1_ttft_ms"], 1.05, "max"),
        ("pinned-10s TTFT / stock turn-1 TTFT", o["pinned_ttft_ms"] / s["turn1_ttft_ms"], 0.10, "max"),
        ("decode tok/s / stock decode tok/s", o["decode_tok_s"] / s["decode_tok_s"], 0.95, "min"),
        ("peak RSS / stock peak RSS", o["peak_rss_mb"] / s["peak_rss_mb"], 1.10, "max"),
    ]
    return {
        "ours": o,
        "stock": s,
        "ratios": [
            {"name": name, "ratio": ratio, "target": target, "kind": kind,
             "met": ratio <= target if kind == "max" else ratio >= target}
            for name, ratio, target, kind in targets
        ],
    }  # fmt: skip


def format_table(summary: dict[str, Any]) -> str:
    o, s = summary["ours"], summary["stock"]
    lines = [f"{'figure':34} {'ours':>12} {'stock':>12} {'ours/stock':>11}"]
    for key in o:
        ours_value = o[key]
        stock_value = s.get(key)
        ratio = f"{ours_value / stock_value:11.3f}" if stock_value else f"{'':>11}"
        stock_text = f"{stock_value:12.1f}" if stock_value is not None else f"{'-':>12}"
        lines.append(f"{key:34} {ours_value:12.1f} {stock_text} {ratio}")
    lines.append("")
    lines.append(f"{'target':44} {'ratio':>8} {'goal':>8}  met")
    for row in summary["ratios"]:
        goal = ("<= " if row["kind"] == "max" else ">= ") + f"{row['target']:.2f}"
        lines.append(f"{row['name']:44} {row['ratio']:8.3f} {goal:>8}  {'yes' if row['met'] else 'NO'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny test models, seconds; checks the plumbing")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per side (default 3, quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--pin-seconds", type=float, default=None, help="how long the image is pinned (default 10)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--gui", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure the window (GUI stall, preview fps); default on in full mode")  # fmt: skip
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    if args.pin_seconds is None:
        args.pin_seconds = 0.5 if args.quick else 10.0

    sys.path.insert(0, str(REPO))
    from bench.scene import write_scene
    from models.make_test_models import write_benchmark_pair, write_tiny_pair

    started = time.perf_counter()
    cache = args.cache_dir / ("tiny" if args.quick else "tinyllama-1.1b")
    pair = write_tiny_pair(cache) if args.quick else write_benchmark_pair(cache)
    image = write_scene(args.cache_dir / "scene-640x480.png")
    print(f"models ready in {time.perf_counter() - started:.1f}s: {pair.text.name}, {pair.mmproj.name}", flush=True)

    ours: list[dict[str, Any]] = []
    stock: list[dict[str, Any]] = []
    for rep in range(reps):
        # Alternate which side goes first so neither always meets a cold or a warm page cache.
        order = ("ours", "stock") if rep % 2 == 0 else ("stock", "ours")
        for side in order:
            result = run_side(side, pair, image, args)
            (ours if side == "ours" else stock).append(result)
            print(f"  rep {rep + 1}/{reps} {side}: turn-1 TTFT {result['turns'][0]['ttft_ms']:.0f} ms", flush=True)

    summary = summarize(ours, stock)
    gui = None
    if args.gui if args.gui is not None else not args.quick:
        from bench.gui import measure_gui

        gui = measure_gui(pair, image, quick=args.quick)
        summary["ratios"] += [
            {"name": "GUI longest stall (ms)", "ratio": gui["gui_longest_stall_ms"], "target": 50, "kind": "max",
             "met": gui["gui_longest_stall_ms"] <= 50},
            {"name": "preview fps generating / idle", "ratio": gui["preview_fps_ratio"], "target": 0.9, "kind": "min",
             "met": gui["preview_fps_ratio"] >= 0.9},
        ]  # fmt: skip
    report = {
        "command": "python -m bench" + (" --quick" if args.quick else "") + f" --reps {reps} --threads {args.threads}",
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version()},
        "settings": {"threads": args.threads, "n_ctx": args.n_ctx, "n_batch": args.n_batch, "reps": reps,
                     "pin_seconds": args.pin_seconds, "quick": args.quick},
        "models": {"text": str(pair.text), "mmproj": str(pair.mmproj)},
        "summary": summary,
        "gui": gui,
        "runs": {"ours": ours, "stock": stock},
        "elapsed_s": time.perf_counter() - started,
    }  # fmt: skip
    print()
    if gui:
        for key, value in gui.items():
            print(f"{key:34} {value}")
        print()
    print(format_table(summary))
    print(f"\nelapsed {report['elapsed_s']:.0f}s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0
