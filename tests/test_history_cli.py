"""`llavacam history ...` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.core.history.store import HistoryStore

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=60)  # fmt: skip


def test_list_show_search_export(tmp_path):
    data = tmp_path / "data"
    store = HistoryStore(data)
    chat = store.create_chat()
    store.add_user_message(chat, "What is on the receipt?")
    writer = store.begin_answer(chat)
    writer.append("Milk and bread.")
    writer.finish()
    store.close()
    listed = cli("history", "list", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    assert "What is on the receipt?" in listed.stdout
    assert "Milk and bread." in cli("--data-dir", str(data), "history", "show", str(chat)).stdout
    assert "receipt" in cli("history", "search", "bread", "--data-dir", str(data)).stdout.lower()
    out = tmp_path / "export"
    exported = cli("history", "export", str(chat), "--format", "json", "--out", str(out), "--data-dir", str(data))
    assert exported.returncode == 0, exported.stderr
    assert json.loads(Path(exported.stdout.strip()).read_text())["messages"][1]["text"] == "Milk and bread."
    missing = cli("history", "show", "999", "--data-dir", str(data))
    assert missing.returncode == 2
    assert "no chat 999" in missing.stderr


def test_show_marks_regenerated_away_answers_and_json_says_which_is_chosen(tmp_path):
    data = tmp_path / "data"
    store = HistoryStore(data)
    chat = store.create_chat()
    store.add_user_message(chat, "What is it?")
    first = store.begin_answer(chat)
    first.append("A cat.")
    first.finish()
    again = store.begin_answer(chat, new_version=True)
    again.append("A small cat.")
    again.finish()
    store.close()
    shown = cli("history", "show", str(chat), "--data-dir", str(data)).stdout
    assert "LlavaCam (other version, not in the conversation):\nA cat." in shown
    assert "LlavaCam:\nA small cat." in shown
    out = tmp_path / "export"
    exported = cli("history", "export", str(chat), "--format", "json", "--out", str(out), "--data-dir", str(data))
    messages = json.loads(Path(exported.stdout.strip()).read_text())["messages"]
    assert [(m["text"], m["chosen"]) for m in messages if m["role"] == "assistant"] == [
        ("A cat.", False), ("A small cat.", True)]  # fmt: skip


def test_show_says_which_engine_and_model_gave_each_answer(tmp_path):
    from app.core.inference.answerer import AnsweredBy

    data = tmp_path / "data"
    store = HistoryStore(data)
    chat = store.create_chat()
    store.add_user_message(chat, "What colour is it?")
    for text, by in (("It is red.", AnsweredBy("this computer", "demo-llama")), ("Red.", None),
                     ("It is red!", AnsweredBy("127.0.0.1:8123", "demo"))):  # fmt: skip
        writer = store.begin_answer(chat, new_version=text != "It is red.", answered_by=by)
        writer.append(text)
        writer.finish()
    store.close()
    shown = cli("history", "show", str(chat), "--data-dir", str(data))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split("\n\n")[1:] == [
        "You:\nWhat colour is it?",
        "LlavaCam (demo-llama · this computer) (other version, not in the conversation):\nIt is red.",
        "LlavaCam (other version, not in the conversation):\nRed.",  # stored before answers kept their engine
        "LlavaCam (demo · 127.0.0.1:8123):\nIt is red!\n",
    ]
