"""Command line: `llavacam` opens the window; subcommands run headless.

Each subcommand lives in its own module under `app.commands` and exposes
`register(subparsers, common) -> None`, where `common` is a parent parser carrying the options every
command accepts (so `--data-dir` works before or after the subcommand).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from app import __version__
from app.core.errors import LlavaCamError, printable

# Modules under app.commands, each adding one subcommand.
COMMAND_MODULES = ("ask", "extract", "history", "models", "serve", "watch")


def _common_parser(*, for_subcommand: bool) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # On subparsers the default is SUPPRESS so a value given before the subcommand is not overwritten.
    default = argparse.SUPPRESS if for_subcommand else None
    common.add_argument(
        "--data-dir",
        default=default,
        metavar="DIR",
        help="keep settings, history and downloaded models in DIR instead of the per-user default",
    )
    common.add_argument(
        "--catalog", default=default, metavar="FILE", help="model catalog TOML replacing the built-in one"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llavacam",
        description="Ask a local vision-language model about what your camera sees.",
        parents=[_common_parser(for_subcommand=False)],
    )
    parser.add_argument("--version", action="version", version=f"llavacam {__version__}")
    # Options of the window (used when no subcommand is given).
    parser.add_argument("--model", metavar="TEXT.gguf", help="text model GGUF")
    parser.add_argument("--mmproj", metavar="MMPROJ.gguf", help="vision projector GGUF")
    parser.add_argument("--model-id", metavar="ID", help="an installed catalog model pair")
    parser.add_argument("--camera", metavar="INDEX|PATH", help="camera index, or a video/image file to use as camera")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    common = _common_parser(for_subcommand=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"app.commands.{name}").register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    try:
        if func is None:
            from app.desktop.main import run_window

            return run_window(args)
        return int(func(args) or 0)
    except LlavaCamError as exc:
        print(f"llavacam: error: {printable(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llavacam: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get("LLAVACAM_DEBUG"):
            raise
        print(
            f"llavacam: unexpected error: {type(exc).__name__}: {printable(exc)} (set LLAVACAM_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1


def main_gui() -> int:
    """Entry point for double-click launchers: always the window."""
    return main([a for a in sys.argv[1:] if a])
