"""The committed demo pair: its files, its chat template, and its forward pass (models/llava_numpy.py) against
llama.cpp's. Its accuracy is a benchmark (bench/accuracy.py), not a test; right answers through the front ends are
asserted in the tests of each front end."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from app.core.inference.images import RGBImage
from app.core.inference.templates import IMAGE_MARKER, TINYLLAMA_TEMPLATE, ChatMessage, ChatTemplate
from models import llava_numpy as ln
from models.train_test_model import DEMO_TEMPLATE

CONVERSATIONS = [
    [ChatMessage("user", "Hi")],
    [ChatMessage("system", "Be brief."), ChatMessage("user", "What colour is it?", image=True)],
    [
        ChatMessage("system", "S"),
        ChatMessage("user", "What is this?", image=True),
        ChatMessage("assistant", "A red circle."),
        ChatMessage("user", "Where is it? ünïcødé 🙂"),
    ],
]


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_demo_template_renders_plain_strings_byte_identically_to_tinyllamas(
    messages: list[ChatMessage], add_generation_prompt: bool
) -> None:
    demo = ChatTemplate(DEMO_TEMPLATE, "gguf").render(messages, add_generation_prompt=add_generation_prompt)
    tiny = ChatTemplate(TINYLLAMA_TEMPLATE, "gguf").render(messages, add_generation_prompt=add_generation_prompt)
    assert demo == tiny
    assert demo.count(IMAGE_MARKER) == sum(m.image for m in messages)


def test_demo_template_accepts_content_as_a_list_of_parts() -> None:
    from app.core.inference.templates import _compile

    parts = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "It is red."}]},
    ]
    text = _compile(DEMO_TEMPLATE).render(messages=parts, add_generation_prompt=True, eos_token="</s>")
    assert text == f"<|user|>\n{IMAGE_MARKER}\nWhat colour is it?</s>\n<|assistant|>\nIt is red.</s>\n<|assistant|>\n"


def test_demo_template_renders_the_same_prompt_through_llama_cpp_pythons_mtmd_handler() -> None:
    """That handler renders with eos_token = detokenize([eos]), which is "" for a control token, and turns an image
    part into a text part holding just the marker (llama_chat_format.MTMDChatHandler): the pair must still be given
    the prompt it was trained on, or a follow-up through that server is answered wrong."""
    from app.core.inference.templates import _compile

    ours = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What colour is it?"}]},
        {"role": "assistant", "content": "It is red."},
        {"role": "user", "content": "What shape is it?"},
    ]
    theirs = [{**ours[0], "content": [{"type": "text", "text": IMAGE_MARKER}, ours[0]["content"][1]]}, *ours[1:]]
    want = (f"<|user|>\n{IMAGE_MARKER}\nWhat colour is it?</s>\n<|assistant|>\nIt is red.</s>\n<|user|>\n"
            "What shape is it?</s>\n<|assistant|>\n")  # fmt: skip
    assert _compile(DEMO_TEMPLATE).render(messages=ours, add_generation_prompt=True, eos_token="</s>") == want
    assert _compile(DEMO_TEMPLATE).render(messages=theirs, add_generation_prompt=True, eos_token="") == want


def test_demo_files_match_their_sha256sums(trained_models) -> None:
    sums = (trained_models.text.parent / "SHA256SUMS").read_text().split("\n")
    expected = dict(reversed(line.split()) for line in sums if line.strip())
    for path in (trained_models.text, trained_models.mmproj):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == expected[path.name]


@pytest.fixture(scope="module")
def native(trained_models):
    from app.core.inference.native import NativeModel

    model = NativeModel(
        trained_models.text, trained_models.mmproj, n_ctx=512, n_batch=512, n_threads=1, n_gpu_layers=0
    )
    yield model
    model.close()


def _mtmd_embeddings(native, rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    units = native.image_chunks(IMAGE_MARKER, RGBImage(width, height, rgb.tobytes()))
    chunk = next(u for u in units if not isinstance(u, int))
    try:
        return native.encode_image(chunk)
    finally:
        native.free_chunk(chunk)


# Frames that fit the 32 px encoder without resampling: square, and letterboxed both ways.
@pytest.mark.parametrize(("width", "height"), [(32, 32), (32, 18), (18, 32)])
def test_numpy_image_embeddings_match_mtmds_encoder(native, trained_models, width: int, height: int) -> None:
    rgb = np.random.default_rng(width * 100 + height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    theirs = _mtmd_embeddings(native, rgb)
    ours = ln.embed_image(trained_models.mmproj, rgb)
    assert theirs.shape == ours.shape == (16, 128)
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * max(scale, 1.0), rtol=0)


# Frames clip.cpp resizes before the encoder, as the trainer's scenes mostly are (the engine hands it up to twice
# the encoder's side): the trainer must see the pixels the app's encoder sees, or what it learns of small shapes
# does not carry over. Scenes, not noise: a resize filter's differences are at edges.
@pytest.mark.parametrize(("width", "height"), [(64, 64), (48, 48), (64, 36), (48, 27), (36, 64), (64, 21), (33, 20)])
def test_numpy_letterbox_resizes_as_clip_cpp_does(native, trained_models, width: int, height: int) -> None:
    import random

    from models import demo_scenes as ds

    scene = ds.Scene("circle", "blue", "right", (70, 70, 70), width, height)
    rgb = ds.draw(scene, random.Random(width * height))
    theirs = _mtmd_embeddings(native, rgb)
    ours = ln.embed_image(trained_models.mmproj, rgb)
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, atol=2e-3 * max(scale, 1.0), rtol=0)


def test_text_forward_after_a_shared_prefix_matches_the_whole_sequence(trained_models) -> None:
    # the trainer runs the prompt prefix every conversation shares once and the rest after it
    params, cfg = ln.load_text(trained_models.text)
    x = params["token_embd.weight"][np.random.default_rng(1).integers(3, cfg.n_vocab, 30)]
    whole = ln.text_logits(params, x, cfg)
    _, past = ln.text_forward(params, x[:12], cfg)
    rest, _ = ln.text_forward(params, x[12:], cfg, past=past)
    np.testing.assert_allclose(rest @ params["output.weight"].T, whole[12:], atol=1e-4, rtol=0)


def test_numpy_text_logits_match_llama_cpps(trained_models) -> None:
    import llama_cpp

    params, cfg = ln.load_text(trained_models.text)
    tokens = [1, *np.random.default_rng(0).integers(3, cfg.n_vocab, 47).tolist()]
    llm = llama_cpp.Llama(str(trained_models.text), logits_all=True, n_ctx=128, n_threads=1, verbose=False)
    try:
        llm.eval(tokens)
        theirs = np.array(llm.scores[: len(tokens)])
    finally:
        llm.close()
    ours = ln.text_logits(params, params["token_embd.weight"][tokens], cfg)
    scale = float(np.abs(theirs).max())
    # fp16 tolerance: llama.cpp's CPU kernels round some intermediates (K/Q products) to half precision
    np.testing.assert_allclose(ours, theirs, atol=2**-8 * max(scale, 1.0), rtol=0)
    assert (ours.argmax(-1) == theirs.argmax(-1)).mean() > 0.97
