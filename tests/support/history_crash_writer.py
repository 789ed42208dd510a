"""Child process for the crash test: stream a real answer into the history, then hang mid-answer until killed."""

from __future__ import annotations

import sys
import time

from app.core.history.store import HistoryStore
from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.images import load_image
from app.core.inference.sampling import SamplingSettings


def main(data: str, text_model: str, mmproj: str, image_path: str) -> None:
    store = HistoryStore(data)
    chat = store.create_chat()
    image = load_image(image_path)
    store.add_user_message(chat, "What is on the receipt?", store.save_image(image, source="camera 0"))
    writer = store.begin_answer(chat, "tiny", {"temperature": 0.8})
    with Engine(text_model, mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as engine:
        turn = engine.ask("What is on the receipt?", image, SamplingSettings(temperature=0.8, seed=3, max_tokens=400,
                                                                             ignore_eos=True))  # fmt: skip
        for count, piece in enumerate(turn, start=1):
            writer.append(piece)
            if count == 30:
                writer.flush()
                print("flushed", flush=True)
                time.sleep(120)  # the test kills us here, mid-answer


if __name__ == "__main__":
    main(*sys.argv[1:5])
