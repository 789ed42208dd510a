"""`llavacam watch`: a standing question about a camera (or a video/image file), one line per answer or event.

Ctrl+C ends the watch cleanly: the question in flight is cancelled, the watch is already in the history (each
answer is stored as it comes), and a last "end" line says why it ended. `--json` prints one object per line:
{"event": "answer"|"repeat"|"match"|"end", "text", "frame", "time", "question"}. With `--extract PRESET` each
new scene is also read into records (the to-do list that fills itself): {"event": "record", "record", "merged",
"frame", "time"} per record, merged into an open record with the same title, or {"event": "error", "text", ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from app.commands.ask import (
    add_model_arguments,
    add_server_arguments,
    check_number,
    check_threads,
    chosen_model_files,
    model_files,
)
from app.core.errors import LlavaCamError, printable


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "watch",
        parents=[common],
        help="keep asking about the camera when the scene changes",
        description="Ask a standing question about a camera, again whenever the scene changes (or on an interval).",
    )
    add_model_arguments(parser)
    parser.add_argument("--camera", default="0", metavar="INDEX|PATH", help="camera index, or a video/image file")
    parser.add_argument("-q", "--question", metavar="QUESTION", help="the standing question")
    parser.add_argument("--when", metavar="CONDITION", help="tell me when CONDITION (a yes/no question is asked)")
    parser.add_argument("--until-match", action="store_true", help="end the watch on the condition's first match")
    parser.add_argument("--cooldown", type=float, default=30.0, metavar="S", help="seconds between two matches")
    parser.add_argument("--extract", metavar="todo|expense|contact|FILE.json",
                        help="also read each new scene into records of this preset (kept in the history)")
    parser.add_argument("--interval", type=float, default=None, metavar="S", help="ask every S seconds instead")
    parser.add_argument("--sensitivity", type=float, default=0.5, metavar="X", help="0 (big changes) .. 1 (small)")
    parser.add_argument("--max-rate", type=float, default=2.0, metavar="S", help="at most one question per S seconds")
    parser.add_argument("--time-limit", type=float, default=None, metavar="S", help="end the watch after S seconds")
    parser.add_argument("--no-frames", action="store_true", help="keep the answers in the history, not the frames")
    parser.add_argument("--max-frames", type=int, default=200, metavar="N", help="frames kept in the history")
    parser.add_argument("--no-history", action="store_true", help="do not keep the watch in the history")
    parser.add_argument("--max-tokens", type=int, default=64, metavar="N")
    parser.add_argument("--n-ctx", type=int, default=4096, metavar="N", help="context size in tokens")
    parser.add_argument("--threads", type=int, default=None, metavar="N")
    parser.add_argument("--json", action="store_true", help="one JSON object per answer or event")
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's own log")
    add_server_arguments(parser)
    parser.set_defaults(func=run)


def _line(event: Any, as_json: bool) -> str:
    if as_json:
        return json.dumps(event.to_dict(), ensure_ascii=False)
    stamp = event.at.strftime("%H:%M:%S")
    if event.kind == "match":
        return f"{stamp} MATCH {event.text} (frame {event.frame_index})"
    if event.kind == "end":
        return f"watch ended: {event.text}"
    return f"{stamp} {'(same) ' if event.kind == 'repeat' else ''}{event.text}"


@contextlib.contextmanager
def _local_answerer(engine: Any, max_tokens: int) -> Iterator[Any]:
    from app.core.watch import EngineAnswerer

    with engine:
        yield EngineAnswerer(engine, max_tokens=max_tokens), engine


def run(args: argparse.Namespace) -> int:
    from app.capture import CameraFrames, parse_source
    from app.core.inference.engine import Engine, EngineConfig
    from app.core.watch import ChangeSettings, Condition, Watcher

    if not args.question and not args.when and not args.extract:
        raise LlavaCamError("give a question with -q, a condition with --when, or a preset with --extract")
    preset = None
    if args.extract:
        from app.commands.extract import _preset

        preset = _preset(args.extract)
    for option, value, low, high in (("--sensitivity", args.sensitivity, 0.0, 1.0),
                                     ("--max-rate", args.max_rate, 0.0, 86400.0),
                                     ("--cooldown", args.cooldown, 0.0, 86400.0)):  # fmt: skip
        check_number(option, value, low, high)
    if args.interval is not None:
        check_number("--interval", args.interval, 0.0, 86400.0)
    if args.time_limit is not None:
        check_number("--time-limit", args.time_limit, 0.0, 10 * 86400.0)
    check_threads(args.threads)
    if not 1 <= args.max_frames <= 100_000:
        raise LlavaCamError(f"--max-frames {args.max_frames}: give 1 to 100000 (or --no-frames to keep none)")
    if not 1 <= args.max_tokens <= 4096:
        raise LlavaCamError(f"--max-tokens {args.max_tokens}: give 1 to 4096")
    condition = Condition(args.when, cooldown=args.cooldown, end_on_match=args.until_match) if args.when else None
    if condition is not None:
        try:
            condition.question  # noqa: B018 - checks the condition before the model loads
        except ValueError as exc:
            raise LlavaCamError(str(exc)) from exc
    chosen = None if args.server else chosen_model_files(args)  # contradicting options: said before the camera
    source = parse_source(args.camera)
    frames = CameraFrames(source)  # a bad camera or file fails now, before the model loads
    recorder = None
    try:
        if args.server:
            from app.commands.ask_remote import ServerAside, server_answerer, server_chat

            chat = server_chat(args)  # unreachable, a wrong token: said now, before the first frame
            reader: Any = None
            if preset is not None:
                from app.core.extract.schemas import request_schema

                reader = ServerAside(chat, request_schema(preset))
            answerers: Any = contextlib.nullcontext((server_answerer(chat, args.max_tokens), reader))
        else:
            files = model_files(args, chosen)  # no model at all: said after a bad camera file
            if not files.mmproj:
                raise LlavaCamError("watching a camera needs the vision projector: add --mmproj MMPROJ.gguf")
            config = EngineConfig(n_ctx=args.n_ctx, n_threads=args.threads, template=files.template,
                                  verbose=args.verbose)  # fmt: skip
            answerers = _local_answerer(Engine(files.text, files.mmproj, config), args.max_tokens)
        if not args.no_history:
            from app.core.history.store import HistoryStore
            from app.core.watch.record import FrameRetention, WatchRecorder

            store = HistoryStore(getattr(args, "data_dir", None))
            if store.read_only:
                print(f"llavacam: the watch is not kept: {store.read_only_reason}", file=sys.stderr)
                store.close()
            else:
                title = f"Watch: {args.question or args.when or args.extract}"
                retention = FrameRetention(store_frames=not args.no_frames, max_frames=args.max_frames)
                recorder = WatchRecorder(store, title, source=frames.name, retention=retention)
        with answerers as (answerer, engine):
            if recorder is not None:
                answerer = recorder.remembering(answerer)

            def on_event(event: Any) -> None:
                if recorder is not None:  # stored first: a line printed is a line kept
                    recorder.on_event(event)
                print(printable(_line(event, args.json), limit=4000), flush=True)

            on_scene = _scene_reader(engine, preset, recorder, args.json) if preset is not None else None
            watcher = Watcher(
                answerer,
                args.question,
                condition=condition,
                on_scene=on_scene,
                change=ChangeSettings(sensitivity=args.sensitivity, min_interval=args.max_rate),
                interval=args.interval,
                time_limit=args.time_limit,
                on_event=on_event,
            )
            watcher.run(frames)  # Ctrl+C ends it with an "end" line ("interrupted"); the answers are stored
    finally:
        frames.close()
        if recorder is not None:
            recorder.store.close()
    if recorder is not None and recorder.has_chat:
        print(f"llavacam: the watch is kept as chat {recorder.chat_id} (llavacam history show {recorder.chat_id})",
              file=sys.stderr)  # fmt: skip
    return 0


def _scene_reader(engine: Any, preset: Any, recorder: Any, as_json: bool) -> Any:
    """on_scene for `--extract`: the frame's records, kept (merged by title) in the watch's chat, one line each."""
    from app.core.extract.scene import SceneRead, SceneRecords

    def say(read: SceneRead) -> None:
        frame = read.frame
        stamp = frame.captured_at.isoformat()
        if read.error:
            _emit({"event": "error", "text": read.error, "frame": frame.index, "time": stamp}, as_json)
            return
        for index, data in enumerate(read.records):
            merged = read.stored[index][1] if read.stored else False
            _emit({"event": "record", "record": data, "merged": merged, "frame": frame.index, "time": stamp},
                  as_json)  # fmt: skip

    return SceneRecords(engine, preset, recorder, on_read=say)


def _emit(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        text = json.dumps(line, ensure_ascii=False)
    elif line["event"] == "record":
        fields = ", ".join(f"{k}: {v}" for k, v in line["record"].items() if v not in ("", None))
        text = f"{line['time'][11:19]} {'(merged) ' if line['merged'] else ''}{fields}"
    else:
        text = f"{line['time'][11:19]} error: {line['text']}"
    print(printable(text, limit=4000), flush=True)
