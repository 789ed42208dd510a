"""`llavacam history`: list, show, search and export stored chats."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.core.history.store import HistoryStore


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("history", parents=[common], help="list, search and export stored chats")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="chats, newest first")
    show = actions.add_parser("show", parents=[common], help="print one chat")
    show.add_argument("id", type=int)
    search = actions.add_parser("search", parents=[common], help="find messages containing TEXT")
    search.add_argument("text")
    export = actions.add_parser("export", parents=[common], help="write a chat as Markdown or JSON")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=["md", "json"], default="md")
    export.add_argument("--out", type=Path, required=True, metavar="DIR")
    parser.set_defaults(func=run)


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def run(args: argparse.Namespace) -> int:
    from app.core.history.store import HistoryStore

    store = HistoryStore(getattr(args, "data_dir", None))
    if store.notice and store.read_only_reason != "another LlavaCam is running":
        print(f"llavacam: note: {store.notice}", file=sys.stderr)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                return _run(store, args)
            finally:
                for warning in caught:
                    print(f"llavacam: warning: {warning.message}", file=sys.stderr)
    finally:
        store.close()


def _run(store: HistoryStore, args: argparse.Namespace) -> int:
    if args.action == "list":
        for chat in store.list_chats():
            print(f"{chat.id:5}  {_when(chat.updated_at)}  {chat.title or '(untitled)'}")
    elif args.action == "show":
        chat = store.get_chat(args.id)
        print(f"# {chat.title}")
        for message in chat.messages:
            status = f" ({message.answered_by.label})" if message.answered_by is not None else ""
            status += "" if message.status == "complete" else f" ({message.status})"
            if not message.chosen:
                status += " (other version, not in the conversation)"
            frame = f" [frame {message.image.path.name}]" if message.image else ""
            print(f"\n{'You' if message.role == 'user' else 'LlavaCam'}{status}{frame}:\n{message.text}")
    elif args.action == "search":
        for chat, message in store.search(args.text):
            print(f"{chat.id:5}  {chat.title[:40]:40}  {message.role:9}  {message.text[:60]}")
    elif args.action == "export":
        print(store.export(args.id, args.out, args.format))
    return 0
