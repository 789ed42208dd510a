"""`python -m bench --quick` runs the benchmark's own code on the tiny models, so it cannot rot.

It checks the output's shape only: timings are the benchmark's business, never a unit test's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_benchmark_produces_the_report(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--gui", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ours/stock" in result.stdout
    report = json.loads(out.read_text())
    summary = report["summary"]
    for key in ("load_s", "turn1_image_encode_ms", "turn1_prefill_ms", "turn1_ttft_ms", "turn2_ttft_ms",
                "turn3_ttft_ms", "pinned_ttft_ms", "decode_tok_s", "peak_rss_mb"):  # fmt: skip
        assert isinstance(summary["ours"][key], float), key
    for key in ("turn1_ttft_ms", "turn2_ttft_ms", "decode_tok_s", "peak_rss_mb"):
        assert summary["stock"][key] > 0, key
    names = {row["name"] for row in summary["ratios"]}
    assert "decode tok/s / stock decode tok/s" in names
    assert "preview fps generating / idle" in names
    assert all(isinstance(row["met"], bool) for row in summary["ratios"])
    assert set(report["gui"]) >= {"gui_longest_stall_ms", "preview_fps_idle", "preview_fps_generating"}
    assert len(report["runs"]["ours"]) == len(report["runs"]["stock"]) == 1
    ours = report["runs"]["ours"][0]
    assert ours["turns"][1]["image_encode_ms"] == 0, "the follow-up reuses the image"
    assert ours["turns"][2]["decode_tokens"] == 64, "EOS is ignored for the decode figure"


def test_quick_remote_benchmark_reports_the_serve_to_local_ratios(tmp_path):
    out = tmp_path / "remote.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.remote", "--quick", "--threads", "2", "--cache-dir", str(tmp_path / "cache"),
         "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["figures"]) == {f"{side}_{what}_{clock}_ms" for side in ("local", "remote")
                                      for what in ("turn1", "followup") for clock in ("ttft", "cpu")}  # fmt: skip
    assert [row["name"] for row in report["ratios"]] == [
        "serve turn-1 TTFT / local turn-1 TTFT",
        "serve follow-up TTFT / local follow-up TTFT",
        "serve turn-1 CPU to first token / local turn-1 CPU to first token",
        "serve follow-up CPU to first token / local follow-up CPU to first token",
    ]
    assert all(row["ratio"] > 0 and isinstance(row["met"], bool) for row in report["ratios"])
    assert len(report["runs"]["local"]) == len(report["runs"]["remote"]) == 1


def test_quick_watch_benchmark_reports_the_static_and_scene_change_ratios(tmp_path):
    out = tmp_path / "watch.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bench.watch", "--quick", "--seconds", "2", "--reps", "2", "--threads", "2",
         "--cache-dir", str(tmp_path / "cache"), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["name"] for row in report["ratios"]] == [
        "static scene CPU after the first answer, watch / 1 s interval",
        "static scene CPU, first answer + 2 s, watch / 1 s interval",
        "scene change -> first token, watch (aside) / fresh turn",
        "scene change -> first token, CPU time, watch (aside) / fresh turn",
    ]
    assert [row["target"] for row in report["ratios"]] == [0.05, None, 1.2, 1.2]
    assert report["watch"]["engine_calls"] == 1, "a static scene costs one question, the first"
    assert report["fixed_1s_interval"]["engine_calls"] >= 2
    assert len(report["watch_turns"]) == len(report["fresh_turns"]) == 2
    assert all(turn["image_cached"] is False for turn in report["watch_turns"] + report["fresh_turns"])


def test_quick_gui_actions_benchmark_reports_a_stall_per_action_and_the_typed_ttft(tmp_path):
    out = tmp_path / "gui_actions.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run(
        [sys.executable, "-m", "bench.gui_actions", "--quick", "--cache-dir", str(tmp_path / "cache"),
         "--out", str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert list(report["stalls_ms"]) == [
        "start", "open_large_chat", "show_earlier_turns", "leave_large_chat", "search", "switch_camera",
        "close_during_load"]
    assert all(isinstance(value, float) for value in report["stalls_ms"].values())
    assert report["notes"]["camera_switched"] is True
    assert report["notes"]["large_chat_turns"] == 10
    assert report["notes"]["close_seconds"] is not None
    assert set(report["ttft_ms"]) == {"unprepared_first_turn", "typed_3s", "typed_10s", "typed_outlast"}
    assert all(value > 0 for values in report["ttft_ms"].values() for value in values), "every trial got a token"
    assert [row["name"] for row in report["ratios"]][-1] == "typing outlasts preparation: TTFT / unprepared first turn"
