"""`llavacam extract`: a frame → typed records (to-do, expense, contact, or your own JSON schema).

Prints the records (one JSON object per line with --json, else one line each), and keeps them in the history
next to a chat holding the frame, merged into an open record with the same title. `--export-csv FILE` and
`--export-ics FILE` (to-dos) write the stored records of that kind.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from app.commands.ask import add_model_arguments, add_server_arguments, check_threads, chosen_model_files, model_files
from app.core.errors import LlavaCamError, printable


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "extract",
        parents=[common],
        help="turn an image into records (to-do, expense, contact, your schema)",
        description="Read typed records from an image with JSON-schema-constrained decoding.",
    )
    add_model_arguments(parser)
    parser.add_argument("--schema", required=True, metavar="todo|expense|contact|FILE.json")
    parser.add_argument("--image", metavar="IMG", help="the image to read (omit with --export-* only)")
    parser.add_argument("--max-tokens", type=int, default=None, metavar="N", help="default: the schema's bound")
    parser.add_argument("--n-ctx", type=int, default=4096, metavar="N")
    parser.add_argument("--threads", type=int, default=None, metavar="N")
    parser.add_argument("--no-history", action="store_true", help="print the records without keeping them")
    parser.add_argument("--export-csv", type=Path, metavar="FILE", help="write this kind's stored records as CSV")
    parser.add_argument("--export-ics", type=Path, metavar="FILE", help="write stored to-dos as iCalendar VTODOs")
    parser.add_argument("--json", action="store_true", help="one JSON object per record")
    parser.add_argument("--verbose", action="store_true")
    add_server_arguments(parser)
    parser.set_defaults(func=run)


def _preset(name: str) -> Any:
    from app.core.extract.schemas import PRESETS, load_schema_file

    if name in PRESETS:
        return PRESETS[name]
    path = Path(name)
    if path.suffix.lower() != ".json":
        raise LlavaCamError(f"--schema {printable(name)}: give todo, expense, contact or a FILE.json")
    return load_schema_file(path)


def run(args: argparse.Namespace) -> int:
    from app.core.history.store import HistoryStore

    check_threads(args.threads)
    if args.max_tokens is not None and not 1 <= args.max_tokens <= 8192:
        raise LlavaCamError(f"--max-tokens {args.max_tokens}: give 1 to 8192")
    preset = _preset(args.schema)
    if args.export_ics is not None and preset.name != "todo":
        raise LlavaCamError("--export-ics writes to-dos: use it with --schema todo")
    if not args.image and args.export_csv is None and args.export_ics is None:
        raise LlavaCamError("give an image with --image (or --export-csv/--export-ics FILE)")
    store = None if args.no_history else HistoryStore(getattr(args, "data_dir", None))
    if store is not None and store.read_only:
        print(f"llavacam: the records are not kept: {store.read_only_reason}", file=sys.stderr)
        store = None
    try:
        _extract_and_export(args, preset, store)
    finally:
        if store is not None:
            store.close()
    return 0


def _extract_and_export(args: argparse.Namespace, preset: Any, store: Any) -> None:
    from app.core.extract.extractor import extract, with_dates
    from app.core.extract.keep import keep_extraction
    from app.core.history.records import RecordStore, to_csv, to_ics
    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.images import load_image

    if args.image:
        chosen = None if args.server else chosen_model_files(args)  # contradicting options: said first
        image = load_image(args.image)  # a bad image fails before the model loads
        captured = datetime.now().astimezone()
        if args.server:
            from app.commands.ask_remote import ServerAside, server_chat
            from app.core.extract.schemas import request_schema

            aside = ServerAside(server_chat(args), request_schema(preset))
            result = extract(aside, image, preset, max_tokens=args.max_tokens)
        else:
            files = model_files(args, chosen)
            if not files.mmproj:
                raise LlavaCamError("reading an image needs the vision projector: add --mmproj MMPROJ.gguf")
            config = EngineConfig(n_ctx=args.n_ctx, n_threads=args.threads, template=files.template,
                                  verbose=args.verbose)  # fmt: skip
            with Engine(files.text, files.mmproj, config) as engine:
                result = extract(engine, image, preset, max_tokens=args.max_tokens)
        records = [with_dates(r, preset, captured) for r in result.records]
        stored: list[tuple[Any, bool]] = []
        if store is not None:
            keeping = keep_extraction(store, preset, image, result, captured_at=captured,
                                      title=f"{preset.label}: {args.image}", source=str(args.image))  # fmt: skip
            records, stored = keeping.read, keeping.stored
        for index, record in enumerate(records):
            merged = stored[index][1] if stored else False
            if args.json:
                line = {"kind": preset.name, "record": record, "merged": merged}
                if stored:
                    line["id"] = stored[index][0].id
                print(json.dumps(line, ensure_ascii=False), flush=True)
            else:
                shown = ", ".join(f"{k}: {v}" for k, v in record.items() if v not in ("", None))
                print(printable(f"{'(merged) ' if merged else ''}{shown}", limit=2000), flush=True)
        if not records:
            print("llavacam: no records found in the image", file=sys.stderr)
    if store is not None and (args.export_csv is not None or args.export_ics is not None):
        kept = RecordStore(store).list(preset.name)
        fields = list(preset.record.get("properties", {}))
        if args.export_csv is not None:
            _write(args.export_csv, to_csv(kept, fields))
        if args.export_ics is not None:
            _write(args.export_ics, to_ics(kept))


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise LlavaCamError(f"cannot write {printable(path)}: {exc.strerror or exc}") from exc
