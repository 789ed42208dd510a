"""The cost of showing a streamed answer: the chat's block renderer against re-parsing the whole answer on every
update (what the bubble did before). Offscreen, no model: a Markdown answer of paragraphs, a list and a code block
is fed in 20-character pieces. Prints one JSON line per answer length.

    python -m bench.chat_render [--lengths 2000,8000]   (32000 takes minutes: the old way is that slow)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

PIECE = 20


def sample_answer(length: int) -> str:
    """Markdown like a model's long answer: paragraphs, a list and a fenced code block, repeated to `length`."""
    unit = ("The frame shows a **red** square near the top left, on a plain background; nothing else moves.\n\n"
            "- colour: red\n- shape: square\n- position: top left\n\n"
            "```python\nprint('red square', (12, 40))\n```\n\n")  # fmt: skip
    return (unit * (length // len(unit) + 1))[:length]


def measure(length: int) -> dict[str, Any]:
    from PySide6.QtGui import QTextDocument

    from app.core.inference.answerer import TurnStats
    from app.desktop import chat_view
    from app.desktop.chat_view import MARKDOWN_FEATURES, Bubble

    answer = sample_answer(length)
    parsed: list[int] = []
    real = chat_view.render_markdown

    def counting(document: QTextDocument, markdown: str) -> None:
        parsed.append(len(markdown))
        real(document, markdown)

    chat_view.render_markdown = counting
    try:
        bubble = Bubble("assistant")
        longest = 0.0
        start = time.perf_counter()
        for offset in range(0, len(answer), PIECE):
            before = time.perf_counter()
            bubble.append(answer[offset : offset + PIECE])
            longest = max(longest, time.perf_counter() - before)
        bubble.finish(TurnStats(finish_reason="stop"))
        blocks_s = time.perf_counter() - start
    finally:
        chat_view.render_markdown = real

    shown_s, shown_longest = _shown(answer, lambda view: view.add(Bubble("assistant")).append)
    label_s, label_longest = _shown(answer, _old_label)

    document = QTextDocument()
    whole_parsed = 0
    whole_longest = 0.0
    start = time.perf_counter()
    for offset in range(0, len(answer), PIECE):
        text = answer[: offset + PIECE]
        before = time.perf_counter()
        document.setMarkdown(text, MARKDOWN_FEATURES)
        whole_longest = max(whole_longest, time.perf_counter() - before)
        whole_parsed += len(text)
    whole_s = time.perf_counter() - start
    updates = len(range(0, len(answer), PIECE))
    return {
        "answer_chars": length,
        "updates": updates,
        "blocks_parsed_chars": sum(parsed),
        "blocks_longest_update_ms": round(longest * 1000, 2),
        "blocks_total_ms": round(blocks_s * 1000, 1),
        "whole_parsed_chars": whole_parsed,
        "whole_longest_update_ms": round(whole_longest * 1000, 2),
        "whole_total_ms": round(whole_s * 1000, 1),
        "shown_blocks_total_ms": round(shown_s * 1000, 1),
        "shown_blocks_longest_update_ms": round(shown_longest * 1000, 2),
        "shown_whole_label_total_ms": round(label_s * 1000, 1),
        "shown_whole_label_longest_update_ms": round(label_longest * 1000, 2),
    }


def _old_label(view: Any) -> Any:
    """The bubble before: one word-wrapped Markdown QLabel given the whole answer on every update."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QLabel

    label = QLabel()
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.MarkdownText)
    label.setMaximumWidth(560)
    view._layout.insertWidget(view._layout.count() - 1, label)
    shown = [""]

    def append(piece: str) -> None:
        shown[0] += piece
        label.setText(shown[0])

    return append


def _shown(answer: str, make_append: Any) -> tuple[float, float]:
    """Total and longest update time with the chat on screen (offscreen), layout and painting included."""
    from PySide6.QtWidgets import QApplication

    from app.desktop.chat_view import ChatView

    view = ChatView()
    view.resize(600, 800)
    view.show()
    append = make_append(view)
    QApplication.processEvents()
    longest = 0.0
    start = time.perf_counter()
    for offset in range(0, len(answer), PIECE):
        before = time.perf_counter()
        append(answer[offset : offset + PIECE])
        view.grab()  # lay out and paint what is in view, as a window on screen would
        longest = max(longest, time.perf_counter() - before)
    total = time.perf_counter() - start
    view.close()
    view.deleteLater()
    return total, longest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="2000,8000", help="answer lengths in characters, comma-separated")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    for length in (int(n) for n in args.lengths.split(",")):
        print(json.dumps(measure(length)), flush=True)
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
