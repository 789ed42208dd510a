"""The Answerer protocol: the local engine satisfies it, so ChatSession runs on it as on a remote client."""

from __future__ import annotations

import ast
from pathlib import Path

from PIL import Image

from app.core.inference.answerer import Answerer, AnswerStream, PastTurn
from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.sampling import GREEDY

REPO = Path(__file__).resolve().parents[1]


def test_the_protocol_module_imports_neither_the_engine_nor_native_code():
    tree = ast.parse((REPO / "app/core/inference/answerer.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and ("engine" in m or "native" in m or "llama" in m)}


def test_the_local_engine_is_an_answerer_and_its_turn_an_answer_stream(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=1024, n_threads=2)) as engine:
        assert isinstance(engine, Answerer)
        answerer: Answerer = engine
        answerer.set_history([PastTurn("Hello?", "Hi.")]).result(30)
        stream = answerer.ask("What is this?", engine.load_image(Image.new("RGB", (32, 32), "red")),
                              GREEDY.with_(max_tokens=6))  # fmt: skip
        assert isinstance(stream, AnswerStream)
        stats = stream.wait()
        assert stream.finished
        assert stats.decode_tokens == len(stream.tokens)  # type: ignore[attr-defined]
        assert [t.question for t in engine.history] == ["Hello?", "What is this?"]
