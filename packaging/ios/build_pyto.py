"""Build the Pyto (iPhone) bundle: `make pyto` -> dist/ios/LlavaCam/ and a reproducible dist/ios/LlavaCam-pyto.zip.

Standard library only. The bundle holds the same app/core files as the repository (byte-identical, SHA-256 in
bundle.json), the Pyto front end and README_PYTO.md; everything else they import is the standard library or ships
with Pyto (listed in bundle.json). Core
modules that need llama.cpp (the engine) or only serve the desktop (model downloads) stay out: on the phone the
model runs on a computer, reached over an OpenAI-compatible API.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Paths under app/core, without ".py".
CORE_MODULES = ("__init__", "errors", "paths", "remote/__init__", "remote/protocol", "remote/stdlib",
                "remote/trust", "resources", "history/__init__", "history/records", "history/store",
                "inference/__init__", "inference/answerer", "inference/images", "inference/sampling", "inference/stops",
                "inference/templates", "session")  # fmt: skip
LEFT_OUT = {
    "inference/engine": "runs llama.cpp, which iOS does not let Pyto load: the computer answers instead",
    "inference/native": "the llama.cpp bindings (same reason)",
    "remote/aio": "the asyncio transport needs httpx: the phone uses remote/stdlib, over the same protocol",
    "models": "model files, their checks and downloads live on the computer",
    "watch": "watch mode runs where the engine is (`llavacam watch` on the computer)",
    "extract": "constrained decoding needs llama.cpp's grammar sampler (the records it makes are in history/records)",
}
PYTO_MODULES = ("pyto_ui", "photos", "userkeys", "mainthread", "file_system", "PIL", "jinja2", "numpy")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path = ROOT / "dist" / "ios") -> Path:
    folder = out / "LlavaCam"
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "app").mkdir(parents=True)
    shutil.copy2(ROOT / "app" / "__init__.py", folder / "app" / "__init__.py")
    core_files = {}
    for name in CORE_MODULES:
        target = folder / "app" / "core" / f"{name}.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / "app" / "core" / f"{name}.py", target)
        core_files[f"app/core/{name}.py"] = sha256(target)
    shutil.copyfile(HERE / "pyto_main.py", folder / "pyto_main.py")
    shutil.copyfile(HERE / "README_PYTO.md", folder / "README_PYTO.md")
    files = {str(p.relative_to(folder)): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {
        "name": "LlavaCam for Pyto",
        "python": "3.10",
        "entry": "pyto_main.py",
        "core_files": core_files,
        "core_left_out": LEFT_OUT,
        "pyto_modules": list(PYTO_MODULES),
        "on_device_inference": False,
        "files": files,
    }
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    archive = out / "LlavaCam-pyto.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(Path("LlavaCam") / path.relative_to(folder)), ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes(), compresslevel=9)
    return archive


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dist" / "ios"))
