"""Child process: run the Pyto front end from the built bundle against a real server, with the Pyto test double.

    PYTHONPATH=<bundle>:<tests/support/pyto_double> python pyto_flow.py SERVER_URL DATA_DIR [PHOTO]
Prints a JSON summary of what the user would see and what the history holds.
"""

from __future__ import annotations

import json
import sys

import photos  # the test double
import pyto_main
from PIL import Image

from app.core.history.store import HistoryStore


def wait(app: pyto_main.PytoApp) -> None:
    if app.worker is not None:
        app.worker.join(120)


def main(server: str, data_dir: str, photo: str | None = None) -> None:
    app = pyto_main.PytoApp(data_dir)
    app.server_field.text = server
    photos.queued.append(Image.open(photo).convert("RGB") if photo else Image.new("RGB", (64, 48), (200, 30, 30)))
    app.camera_button.tap()
    app.question_field.text = "What is this?"
    app.send_button.tap()
    wait(app)
    app.question_field.text = "What colour is it?"
    app.send_button.tap()
    wait(app)
    app.question_field.text = "Tell me everything."
    app.send_button.tap()
    app.stop_button.tap()  # Stop at once: the answer ends stopped (or had already finished)
    wait(app)
    cells = [(c.detail_text_label.text, c.text_label.text) for c in app.section.cells]
    store = HistoryStore(data_dir)
    chat = store.get_chat(store.list_chats()[0].id)
    print(json.dumps({
        "module": pyto_main.__file__,
        "cells": cells,
        "status": app.status.text,
        "stop_enabled": app.stop_button.enabled,
        "history": [(m.role, m.text, m.status, m.image is not None) for m in chat.messages],
    }))  # fmt: skip


if __name__ == "__main__":
    main(*sys.argv[1:4])
