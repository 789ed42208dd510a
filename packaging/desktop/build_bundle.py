"""Build the one-folder desktop app with PyInstaller (`make bundle`), then add the Linux launcher entry beside it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def build(dist: Path = ROOT / "dist", work: Path = ROOT / "build" / "pyinstaller") -> Path:
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(dist), "--workpath", str(work),
         str(ROOT / "packaging" / "desktop" / "llavacam.spec")],
        check=True,
    )  # fmt: skip
    folder = dist / "LlavaCam"
    if sys.platform.startswith("linux"):
        # The .desktop entry and its icon sit beside the executable, ready for ~/.local/share/applications.
        shutil.copy2(ROOT / "resources" / "llavacam.desktop", folder / "llavacam.desktop")
        shutil.copy2(ROOT / "resources" / "llavacam.png", folder / "llavacam.png")
    return folder


if __name__ == "__main__":
    print(build())
