"""Before the QApplication exists: can Qt's xcb platform plugin load? If not, say which library is missing.

PySide6's wheels carry Qt but not the X11 libraries its xcb plugin links against; on a bare Linux machine Qt then
only says "could not load the Qt platform plugin" and aborts. This asks the dynamic linker (`ldd`) what the plugin
still needs and prints the package that provides it for Debian/Ubuntu, Fedora and Arch. No Qt import is needed, so
the check survives any redesign of the window.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Library (without its version) -> (Debian/Ubuntu, Fedora, Arch) package.
PACKAGES: dict[str, tuple[str, str, str]] = {
    "libxcb-cursor": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor"),
    "libxcb-icccm": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm"),
    "libxcb-image": ("libxcb-image0", "xcb-util-image", "xcb-util-image"),
    "libxcb-keysyms": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms"),
    "libxcb-render-util": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil"),
    "libxcb-util": ("libxcb-util1", "xcb-util", "xcb-util"),
    "libxkbcommon-x11": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11"),
    "libxkbcommon": ("libxkbcommon0", "libxkbcommon", "libxkbcommon"),
    "libxcb-xinerama": ("libxcb-xinerama0", "libxcb", "libxcb"),
    "libxcb-randr": ("libxcb-randr0", "libxcb", "libxcb"),
    "libxcb-shape": ("libxcb-shape0", "libxcb", "libxcb"),
    "libxcb-xkb": ("libxcb-xkb1", "libxcb", "libxcb"),
    "libxcb-sync": ("libxcb-sync1", "libxcb", "libxcb"),
    "libxcb-xfixes": ("libxcb-xfixes0", "libxcb", "libxcb"),
    "libxcb-render": ("libxcb-render0", "libxcb", "libxcb"),
    "libxcb-shm": ("libxcb-shm0", "libxcb", "libxcb"),
    "libxcb-xinput": ("libxcb-xinput0", "libxcb", "libxcb"),
    "libxcb-glx": ("libxcb-glx0", "libxcb", "libxcb"),
    "libxcb": ("libxcb1", "libxcb", "libxcb"),
    "libX11-xcb": ("libx11-xcb1", "libX11-xcb", "libx11"),
    "libX11": ("libx11-6", "libX11", "libx11"),
    "libEGL": ("libegl1", "libglvnd-egl", "libglvnd"),
    "libGL": ("libgl1", "libglvnd-glx", "libglvnd"),
    "libOpenGL": ("libopengl0", "libglvnd-opengl", "libglvnd"),
    "libGLX": ("libglx0", "libglvnd-glx", "libglvnd"),
    "libfontconfig": ("libfontconfig1", "fontconfig", "fontconfig"),
    "libfreetype": ("libfreetype6", "freetype", "freetype2"),
    "libdbus-1": ("libdbus-1-3", "dbus-libs", "dbus"),
    "libglib-2.0": ("libglib2.0-0", "glib2", "glib2"),
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt."""
    import importlib.util

    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    plugin = Path(next(iter(spec.submodule_search_locations))) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def will_use_xcb(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Whether Qt is about to load the xcb plugin (Linux, no other platform asked for, not a Wayland session)."""
    if not sys.platform.startswith("linux"):
        return False
    requested = environ.get("QT_QPA_PLATFORM", "")
    if requested:
        return requested.split(";")[0].split(":")[0] == "xcb"
    return not (environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland")


def missing_libraries(plugin: Path) -> list[str]:
    """The shared libraries `plugin` needs that the dynamic linker cannot find (empty if none, or no ldd)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    try:
        output = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def _package_key(library: str) -> str:
    return library.split(".so", 1)[0]


def install_advice(missing: list[str]) -> str:
    """What to tell the user: the missing libraries and one install command per distribution family."""
    packages = [PACKAGES.get(_package_key(name)) for name in missing]
    known = [p for p in packages if p is not None]
    unknown = [name for name, p in zip(missing, packages, strict=True) if p is None]
    lines = [f"llavacam: the window cannot open: Qt's xcb platform plugin needs {', '.join(missing)}, "
             f"which {'is' if len(missing) == 1 else 'are'} not installed. Install:"]  # fmt: skip
    if known:
        for index, (label, command) in enumerate((("Debian/Ubuntu", "sudo apt install"), ("Fedora", "sudo dnf install"),
                                                  ("Arch", "sudo pacman -S"))):  # fmt: skip
            names = " ".join(dict.fromkeys(p[index] for p in known))
            lines.append(f"  {label + ':':15} {command} {names}")
    if unknown:
        lines.append(f"  (and whichever package provides {', '.join(unknown)})")
    lines.append("Or run headless: `llavacam ask` and `llavacam serve` need no window.")
    return "\n".join(lines)


def check_platform(plugin: Path | None = None, environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """None when the window can open (or the check does not apply); else the advice to print."""
    if plugin is None:
        if not will_use_xcb(environ):
            return None
        plugin = xcb_plugin()
        if plugin is None:
            return None
    missing = [name for name in missing_libraries(plugin) if not name.startswith("libQt6")]
    return install_advice(missing) if missing else None
