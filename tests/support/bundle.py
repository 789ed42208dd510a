"""Load packaging/desktop/build_bundle.py (not a package: `packaging` would shadow the PyPI name)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "llavacam_build_bundle", Path(__file__).resolve().parents[2] / "packaging" / "desktop" / "build_bundle.py"
)
assert _spec is not None
assert _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
build_bundle = _module.build
