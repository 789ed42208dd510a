"""The second defence: the first load of a model pair runs in a child process, so a crash cannot take the app down.

The pure-Python checks (modelfile.py) refuse every malformed file we know of; llama.cpp may still abort or
segfault on one they miss. So a pair that is not yet known good is first loaded by a child process that loads
it, encodes one small image and evaluates a few tokens. A crash there becomes one line naming the file; a pass is
remembered in the data dir (by path, size, modification time, a hash of the file's first MiB and the
llama-cpp-python version), so a known-good pair starts as fast as before. `models add`, `models verify`, `ask`,
`serve` and the window all call `ensure_pair_safe` before loading a pair in their own process.

The child is `python -m app.core.models.probe TEXT [MMPROJ]`, or in the desktop bundle (where sys.executable is
the frozen app) the app itself with PROBE_FLAG as its first argument (packaging/desktop/launcher.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import LlavaCamError, LoadCancelled, ModelFileError
from app.core.models.modelfile import check_pair

PROBE_FLAG = "--llavacam-probe"
VERDICTS = "probed-pairs.json"
HEADER_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 600.0
_MAX_PROBLEM = 300
# Tests of the second defence set this in the child's environment: it skips the first defence's file checks there,
# so a file those checks refuse meets llama.cpp itself (and crashes the child, not the app).
UNCHECKED_ENV = "LLAVACAM_PROBE_UNCHECKED"
_verdicts_lock = threading.Lock()


class ProbeFailedError(ModelFileError):
    """llama.cpp refused or crashed on the pair in the probe process (the app itself is unharmed)."""


@dataclass(frozen=True)
class ProbeResult:
    cached: bool  # True: the pair was already known good, no child ran
    seconds: float  # how long the child took (0 when cached)


def ensure_pair_safe(
    text: str | os.PathLike[str],
    mmproj: str | os.PathLike[str] | None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    starting: Callable[[], object] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ProbeResult:
    """Check the pair, then probe it in a child process unless it is known good. Raises ModelFileError.

    `starting` is called just before a child is started (so a window can say why this first load takes longer).
    Once `cancelled()` says True, the child is killed and LoadCancelled raised (a window closing meanwhile)."""
    import time

    check_pair(text, mmproj)
    key = pair_fingerprint(text, mmproj)
    store = _verdict_file(data_dir)
    if not force and _read_verdicts(store).get(key) == "ok":
        return ProbeResult(cached=True, seconds=0.0)
    if starting is not None:
        starting()
    started = time.monotonic()
    _run_probe(Path(text), Path(mmproj) if mmproj else None, timeout_s, cancelled)
    elapsed = time.monotonic() - started
    with _verdicts_lock:
        verdicts = _read_verdicts(store)
        verdicts[key] = "ok"
        _write_verdicts(store, verdicts)
    return ProbeResult(cached=False, seconds=elapsed)


def pair_fingerprint(text: str | os.PathLike[str], mmproj: str | os.PathLike[str] | None) -> str:
    """What a verdict is remembered by: each file's path, size, mtime and first MiB, and the llama.cpp build."""
    digest = hashlib.sha256(f"llama-cpp-python {_llama_cpp_version()}\n".encode())
    for path in (text, mmproj):
        if path is None:
            digest.update(b"no mmproj\n")
            continue
        file = Path(path).resolve()
        stat = file.stat()
        digest.update(f"{file}\n{stat.st_size}\n{stat.st_mtime_ns}\n".encode())
        with file.open("rb") as handle:
            digest.update(hashlib.sha256(handle.read(HEADER_BYTES)).digest())
    return digest.hexdigest()


def probe_command(text: Path, mmproj: Path | None) -> list[str]:
    """How to start the probe child: the frozen app with PROBE_FLAG, or this module under the same Python."""
    files = [str(text)] + ([str(mmproj)] if mmproj else [])
    if getattr(sys, "frozen", False):
        return [sys.executable, PROBE_FLAG, *files]
    return [sys.executable, "-m", "app.core.models.probe", *files]


def _run_probe(text: Path, mmproj: Path | None, timeout_s: float,
               cancelled: Callable[[], bool] | None = None) -> None:  # fmt: skip
    import time

    env = dict(os.environ)
    # The child must find this checkout's `app` even when started from elsewhere.
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        child = subprocess.Popen(
            probe_command(text, mmproj), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError as exc:
        raise LlavaCamError(f"could not start the model test process: {exc}") from exc
    deadline = time.monotonic() + timeout_s
    with child:
        while True:
            try:
                stdout, _stderr = child.communicate(timeout=0.1)  # a short wait, so a cancel is seen at once
                break
            except subprocess.TimeoutExpired:
                if cancelled is not None and cancelled():
                    child.kill()
                    child.communicate()
                    raise LoadCancelled(f"{text}: the test load was cancelled") from None
                if time.monotonic() > deadline:
                    child.kill()
                    child.communicate()
                    raise ProbeFailedError(text, f"a test load of this pair did not finish within {timeout_s:.0f} s "
                                                 "(too large for this machine?)") from None  # fmt: skip
    stage, report = "text", None
    for line in stdout.splitlines():
        if line.startswith("stage "):
            stage = line[6:].strip()
        elif line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                report = None
    if child.returncode == 0 and report and report.get("ok"):
        return
    if report and report.get("ok") is False:
        path = str(report.get("path") or text)
        problem = str(report.get("problem") or "llama.cpp refused it")
        raise ProbeFailedError(path, _bounded(problem))
    # No report: the child died. Name the file that was being loaded when it did.
    blamed = mmproj if stage in ("mmproj", "image") and mmproj else text
    what = {"text": "loading this model", "mmproj": "loading this vision projector",
            "image": "encoding an image with this vision projector", "decode": "evaluating tokens with this model",
            }.get(stage, "loading this model")  # fmt: skip
    raise ProbeFailedError(
        blamed,
        f"llama.cpp crashed ({_exit_reason(child.returncode)}) {what}: the file is "
        "malformed or not supported by this version; the app was not affected",
    )


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _bounded(problem: str) -> str:
    line = " ".join(problem.split())
    return line if len(line) <= _MAX_PROBLEM else line[: _MAX_PROBLEM - 3] + "..."


def _llama_cpp_version() -> str:
    try:
        from importlib.metadata import version

        return version("llama_cpp_python")
    except Exception:
        try:
            import llama_cpp

            return str(getattr(llama_cpp, "__version__", "unknown"))
        except Exception:
            return "unknown"


def _verdict_file(data_dir: str | os.PathLike[str] | None) -> Path:
    from app.core.paths import data_dir as resolve

    return resolve(data_dir) / VERDICTS


def _read_verdicts(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_verdicts(path: Path, verdicts: dict[str, Any]) -> None:
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(verdicts, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:  # a read-only or full data dir: not remembering only costs another probe next time
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)


# --- the child --------------------------------------------------------------------------------------------------


def probe_main(argv: list[str]) -> int:
    """In the child: load, encode one small image, evaluate a few tokens. Prints stages, then one JSON line."""
    import numpy as np

    from app.core.inference.engine import Engine, EngineConfig
    from app.core.inference.sampling import SamplingSettings

    if not argv or len(argv) > 2:
        print(json.dumps({"ok": False, "problem": "usage: probe TEXT.gguf [MMPROJ.gguf]"}), flush=True)
        return 2
    text, mmproj = argv[0], (argv[1] if len(argv) > 1 else None)

    def stage(name: str) -> None:
        print(f"stage {name}", flush=True)

    def progress(fraction: float) -> None:
        if fraction >= 1.0 and mmproj:
            stage("mmproj")  # the text model is in; the context and the projector come next

    if os.environ.get(UNCHECKED_ENV) == "1":
        from app.core.models import modelfile

        modelfile._check_text = lambda *args: None  # type: ignore[assignment]
        modelfile._check_vision = lambda *args: None  # type: ignore[assignment]
    stage("text")
    try:
        config = EngineConfig(n_ctx=2048, image_cache_size=1)  # the GPU too, where the app will use it
        with Engine(text, mmproj, config, load_progress=progress) as engine:
            picture: Any = None
            if mmproj:
                stage("image")
                pixels = np.zeros((64, 64, 3), dtype=np.uint8)
                pixels[16:48, 16:48] = (200, 40, 40)
                picture = pixels
            else:
                stage("decode")
            turn = engine.ask("Hi", picture, SamplingSettings(temperature=0.0, max_tokens=3))
            turn.wait()
    except ModelFileError as exc:
        print(json.dumps({"ok": False, "path": exc.path, "problem": exc.problem}), flush=True)
        return 3
    except LlavaCamError as exc:
        print(json.dumps({"ok": False, "problem": str(exc)}), flush=True)
        return 3
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(probe_main(sys.argv[1:]))
