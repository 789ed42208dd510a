"""Settings as one typed dataclass (settings.json, the token file apart), the one set of --model/--mmproj/--model-id
rules, and the Watch settings enforced where a watch is stored. Core only: no Qt, no model."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.core.history.store import HistoryStore
from app.core.inference.engine import EngineConfig
from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT
from app.core.models.resolve import ModelChoiceError, ModelFiles, require_model_files, resolve_model_files
from app.core.remote.protocol import ServerConfig
from app.core.resources import demo_model_files
from app.core.settings import (
    Settings,
    load_server_token,
    load_settings,
    save_server_token,
    save_settings,
    token_path,
)
from app.core.watch import ChangeSettings, ListSource, Watcher
from app.core.watch.record import FrameRetention, WatchRecorder

# --- settings.json --------------------------------------------------------------------------------------------------


def test_saved_settings_are_exactly_the_dataclass_fields(tmp_path):
    settings = Settings(camera="1", model_path="/m/text.gguf", engine="server", server_url="https://gpu:8080",
                        server_model="llava", server_fingerprint="AB:CD", watch_sound=False, watch_max_frames=50,
                        theme="dark", seed=7)  # fmt: skip
    save_settings(tmp_path, settings)
    assert json.loads((tmp_path / "settings.json").read_text(encoding="utf-8")) == {
        "camera": "1", "model_path": "/m/text.gguf", "mmproj_path": "", "template": "auto",
        "engine": "server", "threads": 0, "gpu_layers": -1, "n_ctx": 4096,
        "server_url": "https://gpu:8080", "server_model": "llava", "server_ca_file": "", "server_fingerprint": "AB:CD",
        "system_prompt": DEFAULT_SYSTEM_PROMPT, "temperature": 0.2, "top_p": 0.95, "max_tokens": 512, "seed": 7,
        "watch_sound": False, "watch_store_frames": True, "watch_max_frames": 50,
        "theme": "dark",
    }  # fmt: skip
    assert load_settings(tmp_path) == (settings, None)


def test_an_old_settings_file_with_extra_loads_without_it(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({"model_path": "/m/a.gguf", "extra": {"x": 1}}))
    settings, warning = load_settings(tmp_path)
    assert (settings, warning) == (Settings(model_path="/m/a.gguf"), None)
    assert not hasattr(settings, "extra")


def test_unknown_choices_and_non_booleans_are_reset_and_named(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({
        "engine": "cloud", "theme": "purple", "template": "llama9", "watch_sound": "yes", "watch_store_frames": 0,
        "watch_max_frames": 0, "server_url": "http://box:1"}))  # fmt: skip
    settings, warning = load_settings(tmp_path)
    assert (settings.engine, settings.theme, settings.template) == ("local", "system", "auto")
    assert (settings.watch_sound, settings.watch_store_frames, settings.watch_max_frames) == (True, True, 200)
    assert settings.server_url == "http://box:1"
    assert warning == (f"Settings file {tmp_path / 'settings.json'}: reset template (not one of auto, tinyllama, "
                       "vicuna, chatml), engine (not one of local, server), watch_sound (not true or false), "
                       "watch_store_frames (not true or false), watch_max_frames (outside 1..100000), theme (not one "
                       "of system, light, dark) to the default; kept the rest.")  # fmt: skip


def test_settings_reach_the_engine_as_an_engine_config():
    settings = Settings(n_ctx=2048, threads=3, gpu_layers=0, template="chatml", system_prompt="Be brief.")
    assert settings.engine_config() == EngineConfig(n_ctx=2048, n_threads=3, n_gpu_layers=0, template="chatml",
                                                    system_prompt="Be brief.")  # fmt: skip
    automatic = Settings(threads=0, template="auto", system_prompt="")
    assert automatic.engine_config() == EngineConfig(n_ctx=4096, n_threads=None, n_gpu_layers=-1, template=None,
                                                     system_prompt=DEFAULT_SYSTEM_PROMPT)  # fmt: skip


def test_who_answers():
    assert (Settings().can_answer, Settings(model_path="/m/a.gguf").can_answer) == (False, True)
    server = Settings(engine="server", model_path="/m/a.gguf")
    assert (server.uses_server, server.can_answer) == (True, False)  # a server needs its address
    assert Settings(engine="server", server_url="http://box:8080").can_answer


# --- the server token: its own file, mode 0600, never in settings.json -----------------------------------------------


def test_the_token_is_stored_apart_readable_only_by_the_user(tmp_path):
    os.umask(0o022)  # a umask that would make an ordinary new file world-readable
    save_settings(tmp_path, Settings(engine="server", server_url="http://box:8080"))
    save_server_token(tmp_path, "  sek-123  ")
    path = token_path(tmp_path)
    assert path == tmp_path / "server-token"
    # Tests run as root, who can read any file: the mode is what protects it from other users.
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="utf-8") == "sek-123"
    assert load_server_token(tmp_path) == "sek-123"
    assert "sek-123" not in (tmp_path / "settings.json").read_text(encoding="utf-8")
    assert "sek-123" not in repr(ServerConfig("http://box:8080", "sek-123", "llava"))  # nor in a log line
    save_server_token(tmp_path, "")
    assert (path.exists(), load_server_token(tmp_path)) == (False, None)


# --- --model / --mmproj / --model-id: one set of rules ---------------------------------------------------------------


def test_model_paths_are_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_model_files("m/text.gguf", "~/proj.gguf") == ModelFiles(
        tmp_path / "m" / "text.gguf", tmp_path / "home" / "proj.gguf", None, None
    )
    assert resolve_model_files("text.gguf") == ModelFiles(tmp_path / "text.gguf", None)
    assert resolve_model_files() is None


def test_an_installed_pair_brings_its_files_and_name(tmp_path):
    files = require_model_files(model_id="demo", data_dir=tmp_path)
    text, mmproj = demo_model_files()
    assert (files.text, files.mmproj, files.template, files.name) == (text, mmproj, None, "demo")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "a.gguf", "model_id": "demo"}, "give either --model or --model-id, not both"),
        ({"mmproj": "p.gguf", "model_id": "demo"},
         "--mmproj goes with --model: an installed pair (--model-id) brings its own projector"),
        ({"mmproj": "p.gguf"}, "--mmproj needs the text model too: add --model TEXT.gguf"),
        ({}, "give a model: --model TEXT.gguf [--mmproj MMPROJ.gguf], or --model-id ID (see `llavacam models list`)"),
    ],
)  # fmt: skip
def test_contradicting_model_options_are_named(tmp_path, options, message):
    with pytest.raises(ModelChoiceError) as caught:
        require_model_files(**options, data_dir=tmp_path)
    assert str(caught.value) == message


@pytest.mark.parametrize("command", [["ask", "-q", "hi"], ["serve"], ["watch", "-q", "hi"],
                                     ["extract", "--schema", "todo", "--image", "x.png"], []])  # fmt: skip
def test_every_command_and_the_window_follow_the_same_rules(tmp_path, capsys, monkeypatch, command):
    """`llavacam ask/serve/watch/extract` and the window (no subcommand) refuse the same contradiction the same way."""
    import app.desktop.window

    def no_window(*args, **kwargs):
        raise AssertionError("the window opened despite contradicting model options")

    monkeypatch.setattr(app.desktop.window, "MainWindow", no_window)  # a broken rule must fail here, not hang
    # An id that is not installed: a broken rule ends in an error too, never in a server that starts and waits.
    code = main(["--data-dir", str(tmp_path), *command, "--model", "a.gguf", "--model-id", "no-such-pair"])
    assert (code, capsys.readouterr().err) == (2, "llavacam: error: give either --model or --model-id, not both\n")


# --- Watch settings: which frames a watch keeps ---------------------------------------------------------------------

COLOURS = [(220, 30, 30), (30, 40, 220), (30, 200, 40), (230, 220, 30), (200, 30, 200)]


def cycling_colours(per_colour: int = 4) -> list[np.ndarray]:
    frames = []
    for colour in COLOURS:
        frame = np.full((48, 64, 3), 128, np.uint8)
        frame[12:36, 21:43] = colour
        frames += [frame] * per_colour
    return frames


def colour_reader(question: str, frame, grammar: str | None) -> str:
    pixel = tuple(int(v) for v in frame.rgb[24, 32])
    return f"The shape is colour {COLOURS.index(pixel)}."


def watch_into_history(tmp_path: Path, settings: Settings) -> tuple[HistoryStore, int]:
    store = HistoryStore(tmp_path)
    recorder = WatchRecorder(store, "Watch: colour", source="camera", retention=settings.watch_retention())
    watcher = Watcher(recorder.remembering(colour_reader), "What colour?", change=ChangeSettings(min_interval=0.0),
                      on_event=recorder.on_event)  # fmt: skip
    watcher.run(ListSource(cycling_colours()))
    return store, recorder.chat_id


def test_a_watch_keeps_only_the_newest_frames_the_setting_allows(tmp_path):
    store, chat_id = watch_into_history(tmp_path, Settings(watch_max_frames=2))
    try:
        questions = [m for m in store.get_chat(chat_id).messages if m.role == "user"]
        answers = [m.text for m in store.get_chat(chat_id).messages if m.role == "assistant"]
        assert answers == [f"The shape is colour {i}." for i in range(5)]  # every answer's text is kept
        assert [m.image is not None for m in questions] == [False, False, False, True, True]
        assert len(list(store.images_dir.glob("*.jpg"))) == 2  # the older frames' files are gone too
    finally:
        store.close()


def test_a_watch_can_keep_no_frames_at_all(tmp_path):
    store, chat_id = watch_into_history(tmp_path, Settings(watch_store_frames=False))
    try:
        messages = store.get_chat(chat_id).messages
        assert [m.text for m in messages if m.role == "assistant"] == [f"The shape is colour {i}." for i in range(5)]
        assert [m.image for m in messages] == [None] * 10
        assert list(store.images_dir.glob("*.jpg")) == []
        # nor for records read during the watch
        recorder = WatchRecorder(store, "Watch: list", retention=FrameRetention(store_frames=False))
        from app.core.watch.watcher import Frame

        frame = Frame(cycling_colours()[0], 0, datetime(2026, 1, 2, tzinfo=timezone.utc))
        assert recorder.frame_for_records(frame) is None
        assert list(store.images_dir.glob("*.jpg")) == []
    finally:
        store.close()


def test_frame_retention_refuses_a_cap_of_no_frames():
    with pytest.raises(ValueError, match=r"^a watch keeps at least 1 frame \(none: store_frames=False\), not 0$"):
        FrameRetention(max_frames=0)


def test_watch_cli_refuses_max_frames_zero(tmp_path, capsys):
    code = main(["--data-dir", str(tmp_path), "watch", "-q", "hi", "--camera", "x.avi", "--max-frames", "0"])
    assert (code, capsys.readouterr().err) == (
        2, "llavacam: error: --max-frames 0: give 1 to 100000 (or --no-frames to keep none)\n")  # fmt: skip


def test_a_watchs_answers_store_which_engine_and_model_gave_them(tmp_path):
    """Like chat answers (history migration 5): the engine and model are kept with each watch answer."""
    from app.core.inference.answerer import AnsweredBy

    def reader(question: str, frame, grammar: str | None) -> str:
        return colour_reader(question, frame, grammar)

    reader.answered_by = AnsweredBy("this computer", "demo-llama")  # as EngineAnswerer says it
    store = HistoryStore(tmp_path)
    try:
        recorder = WatchRecorder(store, "Watch: colour", retention=FrameRetention(store_frames=False))
        watcher = Watcher(recorder.remembering(reader), "What colour?", change=ChangeSettings(min_interval=0.0),
                          on_event=recorder.on_event)  # fmt: skip
        watcher.run(ListSource(cycling_colours()))
        rows = store.conn.execute("SELECT text, engine, engine_model FROM messages WHERE chat_id = ? AND role = "
                                  "'assistant' ORDER BY id", (recorder.chat_id,)).fetchall()  # fmt: skip
        assert [tuple(r) for r in rows] == [(f"The shape is colour {i}.", "this computer", "demo-llama")
                                            for i in range(5)]  # fmt: skip
    finally:
        store.close()
