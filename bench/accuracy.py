"""How often the demo model answers exactly right, through `Engine`, greedy, on scenes it never saw in training.

    python -m bench.accuracy [--per-cell 200] [--out bench/results/accuracy.json] [--require-goal]

Cells: question kind (colour, shape, position, yes/no) x first turn or follow-up x square or non-square frame.
A follow-up asks a second question about the same frame after a first one (of a random kind, answered by the
model). Scenes come from models/demo_scenes.py with seeds from HELD_OUT_SEED up (training uses seeds below
TRAIN_SEED_LIMIT); an answer is right when it equals the expected one after stripping. Goal: >= 95 % in every cell.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

GOAL = 0.95


def run(per_cell: int, *, text: Path | None = None, mmproj: Path | None = None, threads: int = 1) -> dict[str, Any]:
    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.sampling import SamplingSettings
    from app.core.resources import demo_model_files
    from models import demo_scenes as ds

    if text is None or mmproj is None:
        text, mmproj = demo_model_files()
    greedy = SamplingSettings(temperature=0.0, max_tokens=24)
    cells: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with Engine(text, mmproj, EngineConfig(n_ctx=1024, n_threads=threads, n_gpu_layers=0)) as engine:
        for k_index, kind in enumerate(ds.BENCH_KINDS):
            for follow_up in (False, True):
                for square in (True, False):
                    turn_name = "follow-up" if follow_up else "first turn"
                    name = f"{kind} / {turn_name} / {'square' if square else 'non-square'}"
                    right, wrong_examples = 0, []
                    for i in range(per_cell):
                        seed = ds.HELD_OUT_SEED + (k_index * 4 + follow_up * 2 + (not square)) * 100_000 + i
                        rng = random.Random(seed)
                        scene = ds.random_scene(rng, square=square)
                        frame = ds.draw(scene, rng)
                        engine.new_chat().result()
                        if follow_up:
                            first_q, _ = ds.question(rng.choice(ds.KINDS), scene, rng)
                            engine.ask(first_q, frame, greedy).wait()
                            q, expected = ds.question(kind, scene, rng)
                            turn = engine.ask(q, None, greedy)
                        else:
                            q, expected = ds.question(kind, scene, rng)
                            turn = engine.ask(q, frame, greedy)
                        turn.wait()
                        answer = turn.text.strip()
                        if answer == expected:
                            right += 1
                        elif len(wrong_examples) < 3:
                            wrong_examples.append({"seed": seed, "question": q, "expected": expected, "got": answer})
                    cells[name] = {"right": right, "n": per_cell, "accuracy": right / per_cell,
                                   "wrong_examples": wrong_examples}  # fmt: skip
    return {"per_cell": per_cell, "seconds": time.perf_counter() - started, "goal": GOAL, "cells": cells,
            "model": {"text": str(text), "mmproj": str(mmproj)}}  # fmt: skip


def format_table(report: dict[str, Any]) -> str:
    lines = ["| cell | right | accuracy | goal met |", "| --- | ---: | ---: | :---: |"]
    for name, cell in report["cells"].items():
        met = "yes" if cell["accuracy"] >= report["goal"] else "**no**"
        lines.append(f"| {name} | {cell['right']}/{cell['n']} | {cell['accuracy'] * 100:.1f} % | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-cell", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", type=Path, default=None, help="text GGUF (default: the built-in demo)")
    parser.add_argument("--mmproj", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    parser.add_argument("--require-goal", action="store_true", help="exit 1 when a cell misses the goal")
    args = parser.parse_args(argv)
    report = run(args.per_cell, text=args.model, mmproj=args.mmproj, threads=args.threads)
    print(f"Demo model accuracy, exact answers, greedy, {args.per_cell} held-out scenes per cell "
          f"({report['seconds']:.0f} s):")  # fmt: skip
    print(format_table(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    missed = [n for n, c in report["cells"].items() if c["accuracy"] < GOAL]
    if missed:
        print(f"below the {GOAL:.0%} goal: {', '.join(missed)}", file=sys.stderr)
        if args.require_goal:
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
