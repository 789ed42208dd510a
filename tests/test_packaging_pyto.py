"""The Pyto (iPhone) bundle: reproducible, the same core, Python 3.10, Pyto's modules only, and a working flow."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.llavacam_serve import llavacam_serve

REPO = Path(__file__).resolve().parents[1]
DOUBLE = REPO / "tests" / "support" / "pyto_double"


def build(out: Path) -> Path:
    result = subprocess.run([sys.executable, str(REPO / "packaging" / "ios" / "build_pyto.py"), str(out)],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("pyto")) / "LlavaCam"


def test_two_builds_are_byte_identical(tmp_path, bundle):
    again = build(tmp_path / "again")
    assert (again / "LlavaCam-pyto.zip").read_bytes() == (bundle.parent / "LlavaCam-pyto.zip").read_bytes()


def test_core_files_are_the_repositorys_and_listed_with_hashes(bundle):
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["on_device_inference"] is False
    assert set(manifest["pyto_modules"]) >= {"pyto_ui", "photos", "userkeys", "mainthread", "file_system", "PIL",
                                             "jinja2"}  # fmt: skip
    for relative, digest in manifest["core_files"].items():
        bundled = (bundle / relative).read_bytes()
        assert bundled == (REPO / relative).read_bytes(), relative
        assert hashlib.sha256(bundled).hexdigest() == digest
    assert "app/core/history/store.py" in manifest["core_files"]
    assert "inference/engine" in manifest["core_left_out"]
    assert (
        "does no on-device inference" in (bundle / "README_PYTO.md").read_text()
        or "not run the model" in (bundle / "README_PYTO.md").read_text()
    )


def python_files(bundle: Path) -> list[Path]:
    return sorted(bundle.rglob("*.py"))


def test_every_bundled_file_parses_as_python_3_10(bundle):
    for path in python_files(bundle):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 10))


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside `try: ... except ImportError:` is optional (the code has a fallback)."""
    child, parent = node, parents.get(node)
    while parent is not None:
        if isinstance(parent, ast.Try) and child in parent.body:
            for handler in parent.handlers:
                names = [handler.type] if not isinstance(handler.type, ast.Tuple) else handler.type.elts
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
        child, parent = parent, parents.get(parent)
    return False


def test_every_import_is_stdlib_bundled_or_provided_by_pyto(bundle):
    manifest = json.loads((bundle / "bundle.json").read_text())
    allowed = set(sys.stdlib_module_names) | set(manifest["pyto_modules"]) | {"app", "__future__"}
    problems = []
    for path in python_files(bundle):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if (
                    top == "app"
                    and not (bundle / Path(*name.split("."))).with_suffix(".py").exists()
                    and not (bundle / Path(*name.split("."))).is_dir()
                ):
                    problems.append(f"{path.relative_to(bundle)}: {name} is not in the bundle")
                elif top not in allowed and not _optional(node, parents):
                    problems.append(f"{path.relative_to(bundle)}: imports {name}")
    assert not problems, "\n".join(problems)


def test_core_imports_with_qt_cv2_and_llama_cpp_blocked():
    code = (
        "import sys, importlib, pkgutil\n"
        "for blocked in ('PySide6', 'cv2', 'llama_cpp'):\n"
        "    sys.modules[blocked] = None\n"
        "import app.core\n"
        "names = [m.name for m in pkgutil.walk_packages(app.core.__path__, 'app.core.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 15


def test_front_end_flow_against_a_real_server(bundle, tiny_models, tmp_path):
    with llavacam_serve(tmp_path / "server", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj),
                        model_id=None, n_ctx=2048) as url:  # fmt: skip
        flow_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(bundle), str(DOUBLE)])}
        flow = subprocess.run(
            [sys.executable, str(REPO / "tests" / "support" / "pyto_flow.py"), f"{url}/v1", str(tmp_path / "phone")],
            capture_output=True, text=True, env=flow_env, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert flow.returncode == 0, flow.stderr
        seen = json.loads(flow.stdout.strip().splitlines()[-1])
    assert Path(seen["module"]).is_relative_to(bundle), "the front end ran from the bundle"
    who = [detail for detail, _text in seen["cells"]]
    assert who == ["You · with the photo", "LlavaCam", "You", "LlavaCam", "You", "LlavaCam"]
    answers = [text for detail, text in seen["cells"] if detail == "LlavaCam"]
    for answer in answers[:2]:
        assert answer, answers
        assert not answer.startswith("Error"), answers
    assert seen["stop_enabled"] is False
    roles = [role for role, *_ in seen["history"]]
    assert roles == ["user", "assistant"] * 3
    assert seen["history"][0][3] is True, "the photo is stored with the first question"
    assert seen["history"][1][2] == "complete"
    assert seen["history"][5][2] in {"stopped", "complete"}  # Stop raced a short answer: either may win
    stored = [text for role, text, *_ in seen["history"] if role == "assistant"]
    assert stored == answers, "history holds exactly what the phone showed (the session records it)"
    assert "app/core/session.py" in json.loads((bundle / "bundle.json").read_text())["core_files"]
