"""`llavacam watch` end to end with the tiny llama.cpp models: one line per answer or event, the watch kept in the
history, Ctrl+C ends it cleanly. Video files are read at the watcher's own pace, so frame numbers are exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from app.cli import main
from app.core.history.store import HistoryStore
from tests.support.watch_video import write_colour_video

REPO = Path(__file__).resolve().parents[1]


def model_args(tiny_models) -> list[str]:
    return ["--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj), "--threads", "2"]


def test_json_lines_one_question_per_scene_and_the_watch_in_the_history(tiny_models, tmp_path, capsys):
    video = write_colour_video(tmp_path / "v.avi", ["blue"] * 12 + ["red"] * 12)
    code = main(["watch", "--camera", str(video), "-q", "What is this?", "--json", "--max-rate", "0",
                 "--max-tokens", "6", "--data-dir", str(tmp_path / "data"), *model_args(tiny_models)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    events = [json.loads(line) for line in captured.out.splitlines()]
    asked = [e for e in events if e["event"] in {"answer", "repeat"}]
    # two scenes: the first frame, and the red scene once it settled (frame 13); nothing else
    assert [e["frame"] for e in asked] == [0, 13]
    assert events[-1]["event"] == "end"
    assert events[-1]["text"] == "source ended"
    store = HistoryStore(tmp_path / "data")
    [chat] = store.list_chats()
    assert chat.title == "Watch: What is this?"
    turns = store.get_turns(chat.id)
    new_entries = [e for e in asked if e["event"] == "answer"]
    assert len(turns) == len(new_entries)
    assert all(t.image_path is not None and t.image_path.is_file() for t in turns)
    assert [t.answer for t in turns] == [e["text"] for e in new_entries]
    assert [t.question for t in turns] == [
        f"[{datetime.fromisoformat(e['time']).isoformat(timespec='seconds')}] What is this?" for e in new_entries
    ]
    assert f"the watch is kept as chat {chat.id}" in captured.err


def test_a_condition_answers_only_yes_or_no_with_the_random_weight_model(tiny_models, tmp_path, capsys):
    video = write_colour_video(tmp_path / "v.avi", ["blue"] * 6 + ["red"] * 6 + ["green"] * 6)
    code = main(["watch", "--camera", str(video), "--when", "the shape is red", "--json", "--max-rate", "0",
                 "--no-history", *model_args(tiny_models)])  # fmt: skip
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    answers = [e for e in events if e["event"] in {"answer", "repeat"}]
    assert [e["frame"] for e in answers] == [0, 7, 13]
    assert {e["question"] for e in answers} == {"Is the shape red?"}
    assert {e["text"] for e in answers} <= {"Yes", "No", "Yes.", "No."}


def test_ctrl_c_ends_the_watch_cleanly_with_it_saved(tiny_models, tmp_path):
    # colours change every other frame, so the watch keeps asking until it is interrupted
    video = write_colour_video(tmp_path / "long.avi", [["red", "blue"][(i // 2) % 2] for i in range(4000)])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "watch", "--camera", str(video), "-q", "What is this?", "--max-rate", "0",
         "--max-tokens", "4", "--json", "--data-dir", str(tmp_path / "data"), *model_args(tiny_models)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert process.stdout is not None
    first = json.loads(process.stdout.readline())
    assert first["event"] == "answer"
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0
    last = json.loads(out.splitlines()[-1])
    assert (last["event"], last["text"]) == ("end", "interrupted")
    store = HistoryStore(tmp_path / "data")
    [chat] = store.list_chats()
    assert store.get_turns(chat.id)
    assert "Traceback" not in err


def test_watch_with_a_preset_reads_each_new_scene_into_records(tiny_models, tmp_path, capsys):
    from app.core.history.records import RecordStore

    video = write_colour_video(tmp_path / "v.avi", ["blue"] * 8 + ["red"] * 8)
    data = tmp_path / "data"
    code = main(["watch", "--camera", str(video), "--extract", "todo", "--json", "--max-rate", "0",
                 "--data-dir", str(data), *model_args(tiny_models)])  # fmt: skip
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records = [e for e in events if e["event"] == "record"]
    # one extraction per scene: the first frame and the red scene once it settled; the greedy random model
    # writes one record each, with different titles (so nothing merges)
    assert [(e["frame"], e["merged"]) for e in records] == [(0, False), (9, False)]
    assert [e["event"] for e in events] == ["record", "record", "end"]
    store = HistoryStore(data)
    kept = RecordStore(store).list("todo")
    assert len(kept) == sum(1 for e in records if not e["merged"])
    [chat] = store.list_chats()
    assert chat.title == "Watch: todo"
    assert all(r.chat_id == chat.id for r in kept)
    store.close()
