"""`llavacam models`: list the catalog and installed pairs, download, verify, locate, add and delete them."""

from __future__ import annotations

import argparse
import sys
import threading
import warnings
from typing import Any

from app.core.inference.templates import TEMPLATE_FAMILIES
from app.core.models.download import Progress


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser("models", parents=[common], help="manage model pairs (text model + mmproj)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="catalog entries and installed pairs")
    for name, text in (("download", "download, verify and install a catalog pair"),
                       ("verify", "check an installed pair again"),
                       ("path", "print an installed pair's file paths"),
                       ("delete", "remove an installed pair")):  # fmt: skip
        action = actions.add_parser(name, parents=[common], help=text)
        action.add_argument("id")
        if name == "download":
            action.add_argument("--accept-licence", action="store_true",
                                help="accept the licence terms the entry shows before downloading")  # fmt: skip
    add = actions.add_parser("add", parents=[common], help="register a pair of local files (checked first)")
    add.add_argument("--model", required=True, metavar="TEXT.gguf")
    add.add_argument("--mmproj", metavar="MMPROJ.gguf")
    add.add_argument("--id", dest="model_id")
    add.add_argument("--name")
    add.add_argument("--template", choices=TEMPLATE_FAMILIES)
    parser.set_defaults(func=run)


def _size(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


class _ProgressLine:
    """One updating line on stderr: part, percent, bytes, rate, ETA."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, part: str, p: Progress) -> None:
        import time

        now = time.monotonic()
        if now - self.last < 0.2 and (p.total is None or p.done < p.total):
            return
        self.last = now
        percent = f"{100 * p.fraction:5.1f}%" if p.fraction is not None else "     "
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        sys.stderr.write(f"\r{part:6} {percent} {_size(p.done)} of {_size(p.total)} at {p.bytes_per_s / 1e6:.1f} MB/s"
                         f"{eta}   ")  # fmt: skip
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """Every action; warnings (a rebuilt installed.json, a damaged file downloaded again) become one line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return _run(args)
        finally:
            if args.action == "download":
                sys.stderr.write("\n")  # end the progress line
            for warning in caught:
                print(f"llavacam: warning: {warning.message}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from app.core.models.store import ModelStore

    store = ModelStore(getattr(args, "data_dir", None), getattr(args, "catalog", None))
    if args.action == "list":
        from app.core.models.advice import recommend, this_machine

        installed = {m.id: m for m in store.installed()}
        entries = store.catalog_entries()
        machine = this_machine()
        best = recommend(entries, machine)
        print(f"Catalog (this machine: {machine.describe()}; recommended: {best.id if best else '?'}):")
        for entry in entries:
            mark = "installed" if entry.id in installed else "not installed"
            memory = f"needs ~{entry.memory_gb:.1f} GB memory" if entry.memory_gb else "memory ?"
            size = f"~{_size(entry.total_size)} download" if entry.total_size else "size from the host"
            print(f"  {entry.id:20} {entry.name}  [{mark}; {size}; {memory}; "
                  f"{entry.licence}; {entry.status}]")  # fmt: skip
            if entry.best_for:
                print(f"  {'':20} best for: {entry.best_for}")
        known = {e.id for e in entries}
        others = [m for m in [*installed.values(), *store.builtin()] if m.origin != "catalog" or m.id not in known]
        if others:
            print("Local pairs and pairs no longer in the catalog (still usable):")
            for model in others:
                origin = model.origin if model.id in known or model.origin != "catalog" else "not in the catalog"
                print(f"  {model.id:20} {model.name}  [{origin}; {_size(model.size)}]")
        return 0
    if args.action == "download":
        from app.core.errors import LlavaCamError

        plan = store.plan(args.id)
        entry = plan.entry
        if entry.licence_terms and not args.accept_licence:
            print(f"{entry.name}: licence terms\n{entry.licence_terms}", file=sys.stderr)
            raise LlavaCamError(f"{entry.id}: read the licence terms above, then run the download again with "
                                "--accept-licence")  # fmt: skip
        sizes = " + ".join(f"{f.part} {_size(f.size)}" for f in plan.files)
        hashes = ("SHA-256 from the host, checked after download" if all(f.sha256 for f in plan.files)
                  else "the host gives no SHA-256 for some files: the first download's hash is remembered")  # fmt: skip
        print(f"{entry.id}: {sizes} = {_size(plan.total_size)} ({hashes}); {entry.status}", file=sys.stderr)
        cancel = threading.Event()
        try:
            model = store.download(args.id, progress=_ProgressLine(), cancel=cancel, plan=plan)
        except KeyboardInterrupt:
            cancel.set()
            raise
        print(f"installed {model.id}: {model.text} + {model.mmproj}")
        return 0
    if args.action == "verify":
        model = store.verify(args.id)
        print(f"{model.id}: OK ({model.text.name} + {model.mmproj.name if model.mmproj else 'no mmproj'})")
        return 0
    if args.action == "path":
        model = store.get(args.id)
        print(model.text)
        if model.mmproj:
            print(model.mmproj)
        return 0
    if args.action == "add":
        model = store.add_local(args.model, args.mmproj, model_id=args.model_id, name=args.name,
                                template=args.template)  # fmt: skip
        print(f"added {model.id}: {model.text} + {model.mmproj}")
        return 0
    if args.action == "delete":
        store.delete(args.id)
        print(f"deleted {args.id}")
        return 0
    raise AssertionError(args.action)
