"""Real read-only folders and real full disks for hostile tests (they run as root, where chmod protects nothing).

A read-only bind mount of a folder onto itself, and a small tmpfs, both undone when the test ends.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def _unmount(folder: Path) -> None:
    """Unmount; a mount still busy (a file left open by a failing test) is detached lazily, never left behind."""
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        _run("umount", "-l", str(folder))


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """`folder` (and everything in it) read-only for everyone, root included, until the block ends."""
    _run("mount", "--bind", str(folder), str(folder))
    try:
        _run("mount", "-o", "remount,ro,bind", str(folder), str(folder))
        yield folder
    finally:
        _unmount(folder)


@contextmanager
def small_disk(folder: Path, size: str = "1m") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (created), unmounted when the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        _unmount(folder)


def fill(folder: Path) -> None:
    """Write to `folder` until the disk is full (the tmpfs of small_disk)."""
    handle = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for block in (65536, 4096, 1):
            try:
                while True:
                    os.write(handle, b"\0" * block)
            except OSError:
                continue
    finally:
        os.close(handle)
