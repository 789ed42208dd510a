"""The window's hostile inputs that need no window: a machine missing Qt's X11 libraries, a damaged settings.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from app.desktop.platform_check import check_platform, will_use_xcb, xcb_plugin
from app.desktop.settings import Settings, load_settings
from tests.hostile.serving import REPO


@pytest.fixture(scope="module")
def plugin_missing_xcb_cursor(tmp_path_factory):
    """A copy of PySide6's xcb plugin whose libxcb-cursor dependency names a version no machine has."""
    real = xcb_plugin()
    if real is None:
        pytest.fail("PySide6's xcb plugin is not where the check looks for it")
    root = tmp_path_factory.mktemp("qt")
    (root / "plugins" / "platforms").mkdir(parents=True)
    (root / "lib").symlink_to(real.parents[2] / "lib")  # the plugin finds Qt through $ORIGIN/../../lib
    data = real.read_bytes()
    assert data.count(b"libxcb-cursor.so.0\x00") == 1
    fake = root / "plugins" / "platforms" / "libqxcb.so"
    fake.write_bytes(data.replace(b"libxcb-cursor.so.0\x00", b"libxcb-cursor.so.9\x00"))
    return fake


def test_missing_xcb_library_is_named_with_install_commands(plugin_missing_xcb_cursor):
    advice = check_platform(plugin_missing_xcb_cursor)
    assert advice is not None
    lines = advice.splitlines()
    assert "libxcb-cursor.so.9" in lines[0]
    assert any(line.startswith("  Debian/Ubuntu:") and "sudo apt install" in line and "libxcb-cursor0" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("  Fedora:") and "sudo dnf install" in line and "xcb-util-cursor" in line
               for line in lines)  # fmt: skip
    assert any(line.startswith("  Arch:") and "sudo pacman -S" in line and "xcb-util-cursor" in line for line in lines)


def test_window_start_prints_the_advice_before_any_qapplication(plugin_missing_xcb_cursor, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        import app.desktop.platform_check as check
        check.xcb_plugin = lambda: Path({str(plugin_missing_xcb_cursor)!r})
        from app.cli import main
        code = main(["--data-dir", {str(tmp_path)!r}])
        from PySide6.QtWidgets import QApplication
        print("qapplication" if QApplication.instance() else "no qapplication")
        sys.exit(code)
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "QT_QPA_PLATFORM": "xcb"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stdout.strip() == "no qapplication"
    assert result.stderr.startswith("llavacam: the window cannot open: Qt's xcb platform plugin needs ")
    assert "libxcb-cursor.so.9" in result.stderr


def test_platform_check_applies_only_when_xcb_will_load():
    assert will_use_xcb({}) is sys.platform.startswith("linux")
    assert not will_use_xcb({"QT_QPA_PLATFORM": "offscreen"})
    assert not will_use_xcb({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"})


def test_settings_values_of_the_wrong_type_are_reset_and_named(tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps({
        "temperature": "x", "top_p": 0.5, "max_tokens": 10.5, "n_ctx": True, "template": "chatml",
        "model_path": 5, "seed": "abc", "threads": 100000}))  # fmt: skip
    settings, warning = load_settings(tmp_path)
    defaults = Settings()
    assert (settings.top_p, settings.template) == (0.5, "chatml")  # the valid values are kept
    assert (settings.temperature, settings.max_tokens, settings.n_ctx) == (0.2, 512, 4096)
    assert (settings.model_path, settings.seed, settings.threads) == (defaults.model_path, None, 0)
    assert warning is not None
    assert warning.endswith("to the default; kept the rest.")
    for named in ("temperature (not a number)", "max_tokens (not a whole number)", "n_ctx (not a number)",
                  "model_path (not text)", "seed (not a number)", "threads (outside 0..512)"):
        assert named in warning
    assert settings.sampling().temperature == 0.2  # Send works


def test_settings_file_that_is_not_an_object_is_defaults_with_a_notice(tmp_path):
    (tmp_path / "settings.json").write_text("[1, 2, 3]")
    settings, warning = load_settings(tmp_path)
    assert settings == Settings()
    assert warning == f"Settings file {tmp_path / 'settings.json'} does not hold an object; using defaults."


def test_settings_nan_temperature_is_reset(tmp_path):
    (tmp_path / "settings.json").write_text('{"temperature": NaN, "top_p": Infinity}')
    settings, warning = load_settings(tmp_path)
    assert (settings.temperature, settings.top_p) == (0.2, 0.95)
    assert warning is not None
    assert "temperature (not a finite number)" in warning


def test_pasted_image_over_the_pixel_cap_is_a_notice(qtbot, make_window, settings):
    from PySide6.QtCore import QMimeData
    from PySide6.QtGui import QImage

    window = make_window(settings, wait_model=False)
    huge = QImage(8000, 8000, QImage.Format.Format_Mono)  # 8 MB here, 192 MB once converted to RGB
    huge.fill(0)
    mime = QMimeData()
    mime.setImageData(huge)
    assert window.accept_mime(mime, source="clipboard")
    assert window.notice.isVisible()
    assert window.notice.text() == ("the clipboard's image: the image is 8000x8000 (64 megapixels); the limit is 50 "
                                    "megapixels")  # fmt: skip
    assert window.pinned is None
