"""Right answers from the trained demo pair, asserted word for word through the engine and the front ends.

Each test fails when its path breaks: a channel swap, an ignored EXIF orientation, a stale image cache, an answer
that never stops. Scenes are drawn by models/demo_scenes.py, the world the demo model was trained on.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import openai
import pytest
from PIL import Image

from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.sampling import SamplingSettings
from models.demo_scenes import Scene, draw
from tests.support.llavacam_serve import llavacam_serve

REPO = Path(__file__).resolve().parents[1]
GREEDY = SamplingSettings(temperature=0.0, max_tokens=32)
WHITE, GREY, DARK = (245, 245, 245), (200, 200, 200), (70, 70, 70)


def scene(shape: str, colour: str, position: str, size: tuple[int, int] = (64, 64), bg=WHITE) -> np.ndarray:
    return draw(Scene(shape, colour, position, bg, size[0], size[1]), random.Random(7))


@pytest.fixture(scope="module")
def engine(trained_models):
    with Engine(trained_models.text, trained_models.mmproj, EngineConfig(n_ctx=1024, n_threads=2)) as eng:
        yield eng


def ask(engine: Engine, question: str, image=None, sampling: SamplingSettings = GREEDY):
    turn = engine.ask(question, image, sampling)
    stats = turn.wait()
    return turn.text.strip(), stats


# --- engine ----------------------------------------------------------------------------------------------------


def test_first_turn_and_follow_up_about_the_same_frame(engine):
    engine.new_chat().result()
    frame = scene("circle", "red", "left")
    assert ask(engine, "Is it blue?", frame)[0] == "No."
    assert ask(engine, "What colour is it?")[0] == "It is red."


def test_swapping_red_and_blue_channels_flips_the_colour_answer(engine):
    frame = scene("square", "red", "centre")
    engine.new_chat().result()
    assert ask(engine, "What colour is the shape?", frame)[0] == "It is red."
    engine.new_chat().result()
    assert ask(engine, "What colour is the shape?", np.ascontiguousarray(frame[..., ::-1]))[0] == "It is blue."


def test_a_new_frame_of_the_same_size_is_encoded_not_served_from_the_old_ones_cache(engine):
    engine.new_chat().result()
    red = scene("circle", "red", "centre")
    blue = scene("circle", "blue", "centre")
    assert red.shape == blue.shape
    assert ask(engine, "What colour is it?", red)[0] == "It is red."
    answer, stats = ask(engine, "What colour is it?", blue)
    assert answer == "It is blue."
    assert stats.image_encode_ms > 0


def test_eos_ends_decoding_at_the_answers_last_token(engine):
    engine.new_chat().result()
    answer, stats = ask(engine, "What colour is it?", scene("triangle", "green", "centre"))
    assert answer == "It is green."
    assert stats.finish_reason == "stop"
    assert stats.decode_tokens == 4  # 'It', ' is', ' green', '.': EOS came next and decoding stopped there


def test_a_stop_string_ends_decoding_at_the_token_that_completes_it(engine):
    engine.new_chat().result()
    sampling = SamplingSettings(temperature=0.0, max_tokens=32, stop=("green",))
    answer, stats = ask(engine, "What colour is it?", scene("triangle", "green", "centre"), sampling)
    assert answer == "It is"
    assert stats.finish_reason == "stop"
    assert stats.decode_tokens == 3


def test_a_large_frame_is_downscaled_to_the_encoders_bound_and_still_answered_right(engine):
    big = scene("square", "blue", "right", size=(2400, 1800))
    picture = engine.load_image(big)
    assert (picture.width, picture.height) == (64, 48)  # twice the 32 px encoder input
    engine.new_chat().result()
    assert ask(engine, "Where is the shape?", big)[0] == "It is on the right."


# --- llavacam ask ----------------------------------------------------------------------------------------------


def run_ask(trained_models, image: Path, *questions: str) -> list[str]:
    args = ["ask", "--model", str(trained_models.text), "--mmproj", str(trained_models.mmproj), "--image",
            str(image), "--temperature", "0", "--max-tokens", "24", "--json"]  # fmt: skip
    for q in questions:
        args += ["-q", q]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120,
                            env=env, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line)["answer"].strip() for line in result.stdout.strip().splitlines()]


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def test_ask_png_jpeg_16_9_and_a_huge_frame(trained_models, tmp_path):
    png = save(scene("circle", "red", "left"), tmp_path / "a.png")
    assert run_ask(trained_models, png, "What colour is it?", "Is it green?") == ["It is red.", "No."]
    jpeg = save(scene("square", "blue", "right", size=(96, 96)), tmp_path / "b.jpg", quality=90)
    assert run_ask(trained_models, jpeg, "What colour is it?") == ["It is blue."]
    wide = save(scene("circle", "yellow", "right", size=(160, 90), bg=DARK), tmp_path / "c.png")
    assert run_ask(trained_models, wide, "What colour is the shape?") == ["It is yellow."]
    huge = save(scene("triangle", "purple", "centre", size=(3000, 3000)), tmp_path / "d.png")
    assert run_ask(trained_models, huge, "What colour is the shape?") == ["It is purple."]


def test_ask_follows_the_exif_orientation_of_a_jpeg(trained_models, tmp_path):
    stored = scene("circle", "green", "left", size=(96, 72))  # shown after a 90 degree clockwise turn: at the top
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=92, exif=exif.tobytes())
    assert run_ask(trained_models, path, "Where is it?") == ["It is at the top."]


# --- llavacam serve through the openai client, and the Pyto front end -------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with llavacam_serve(tmp_path_factory.mktemp("d")) as url:  # `llavacam serve --model-id demo`
        yield url


def data_uri(array: np.ndarray) -> str:
    import base64

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_serve_answers_right_through_the_openai_client_streamed_and_not(served):
    client = openai.OpenAI(base_url=served + "/v1", api_key="unused", max_retries=0, timeout=60)
    first = {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": data_uri(scene("triangle", "orange", "bottom"))}},
        {"type": "text", "text": "Is it blue?"},
    ]}  # fmt: skip
    reply = client.chat.completions.create(model="demo", messages=[first], temperature=0, max_tokens=24)
    assert reply.choices[0].message.content.strip() == "No."
    follow_up = [first, {"role": "assistant", "content": reply.choices[0].message.content},
                 {"role": "user", "content": "What colour is it?"}]  # fmt: skip
    stream = client.chat.completions.create(
        model="demo", messages=follow_up, temperature=0, max_tokens=24, stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces).strip() == "It is orange."


def test_ask_server_gets_right_answers_from_llavacam_serve(served, tmp_path):
    png = save(scene("square", "blue", "top", size=(96, 96)), tmp_path / "blue.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "app", "ask", "--server", served, "--image", str(png), "--temperature", "0",
         "--max-tokens", "24", "-q", "What colour is the shape?", "-q", "What shape is it?", "-q", "Where is it?"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    # the follow-ups are answered from the conversation the server is sent (the pair is trained on two-turn chats;
    # of the third turns, position holds up and shape does not, so shape is asked second)
    assert result.stdout.splitlines() == [
        "> What colour is the shape?", "It is blue.", "> What shape is it?", "It is a square.", "> Where is it?",
        "It is at the top."]  # fmt: skip


def test_pyto_front_end_gets_right_answers_from_serve(served, tmp_path):
    build = subprocess.run([sys.executable, str(REPO / "packaging" / "ios" / "build_pyto.py"), str(tmp_path / "b")],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert build.returncode == 0, build.stderr
    photo = save(scene("circle", "red", "centre", size=(64, 48)), tmp_path / "photo.png")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "b" / "LlavaCam"),
                                                          str(REPO / "tests" / "support" / "pyto_double")])}
    flow = subprocess.run(
        [sys.executable, str(REPO / "tests" / "support" / "pyto_flow.py"), served + "/v1", str(tmp_path / "phone"),
         str(photo)],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert flow.returncode == 0, flow.stderr
    seen = json.loads(flow.stdout.strip().splitlines()[-1])
    answers = [text for detail, text in seen["cells"] if detail == "LlavaCam"]
    assert answers[0].startswith("A red "), answers  # "What is this?" (the demo is weak on shapes: see benchmarks)
    assert answers[1] == "It is red."  # "What colour is it?"


# --- the built-in demo pair as a model id ----------------------------------------------------------------------


def test_demo_is_listed_whatever_the_catalog_and_answers_as_model_id_demo(tmp_path):
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[[model]]\nid = "other"\nname = "Other pair"\nlicence = "MIT"\n'
                       '[model.text]\nurl = "http://127.0.0.1:9/t.gguf"\nfilename = "t.gguf"\n'
                       '[model.mmproj]\nurl = "http://127.0.0.1:9/m.gguf"\nfilename = "m.gguf"\n')  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    common = ["--catalog", str(catalog), "--data-dir", str(tmp_path / "data")]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=120,
                              env=env, cwd=REPO)  # fmt: skip

    listed = cli("models", "list", *common)
    assert listed.returncode == 0, listed.stderr
    assert "demo                 Demo — colours and shapes (built in, a few MB)  [builtin;" in listed.stdout
    png = save(scene("square", "green", "top"), tmp_path / "g.png")
    asked = cli("ask", "--model-id", "demo", *common, "--image", str(png), "-q", "What colour is it?",
                "--temperature", "0", "--json")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["answer"].strip() == "It is green."
    deleted = cli("models", "delete", "demo", *common)
    assert deleted.returncode != 0
    assert "built into LlavaCam" in deleted.stderr
