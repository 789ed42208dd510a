"""Every model family's generated pair through the engine, each turn token-identical to llama.cpp from scratch.

One pair and one engine per family for the whole module (the pairs are a few hundred kB; loading is the cost).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.families import needs_for
from app.core.inference.images import load_image
from app.core.inference.sampling import GREEDY, SamplingSettings
from app.core.inference.templates import IMAGE_MARKER
from models.families import FAMILIES
from tests.support.reference import greedy_from_scratch

RUNNABLE = [name for name, family in FAMILIES.items() if not family.note]


def gradient(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    return image


def stripes(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height))
    image.putdata([(250, 240, 10) if (x // 4) % 2 else (10, 20, 200) for y in range(height) for x in range(width)])
    return image


RED = gradient(48, 40)
BLUE = stripes(40, 48)


@pytest.fixture(scope="module", params=RUNNABLE)
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """(family, pair, engine): loaded once per family."""
    spec = FAMILIES[request.param]
    pair = spec.write(tmp_path_factory.mktemp(spec.name), 0)
    config = EngineConfig(n_ctx=2048, n_threads=2, **spec.engine_config)
    with Engine(pair.text, pair.mmproj, config) as engine:
        yield spec, pair, engine


def greedy(max_tokens: int = 16) -> SamplingSettings:
    return GREEDY.with_(max_tokens=max_tokens, ignore_eos=True)


def reference_for(family, turn, images: list[Image.Image]) -> list[int]:
    spec, pair, engine = family
    history = engine.evaluated_units()[: turn.prompt_units]
    by_digest = {load_image(img).digest: img for img in images}
    return greedy_from_scratch(
        Path(pair.text), Path(pair.mmproj), history, by_digest, len(turn.tokens), n_ctx=2048,
        n_batch=engine._call(lambda: engine._native.n_batch),
        image_max_tokens=engine._call(lambda: engine._image_max_tokens),
    )  # fmt: skip


def test_loads_with_its_own_template_and_projector(family):
    spec, pair, engine = family
    engine.new_chat().result()
    assert engine.info.has_vision
    assert engine.info.template_family == "gguf"
    template = engine._call(lambda: engine._template)
    assert template.uses_parts, f"{spec.name}'s template walks lists of parts"
    assert IMAGE_MARKER not in template.image_text


def test_first_turn_streams_and_matches_from_scratch(family):
    _spec, _pair, engine = family
    engine.new_chat().result()
    turn = engine.ask("What is this?", RED, greedy())
    pieces = list(turn)
    stats = turn.stats
    assert stats is not None
    assert len(turn.tokens) == 16
    assert "".join(pieces) == turn.text
    assert stats.image_encode_ms > 0
    assert not stats.image_cached
    history = engine.evaluated_units()[: turn.prompt_units]
    assert any(isinstance(u, str) and u.startswith("image:") for u in history)
    assert turn.tokens == reference_for(family, turn, [RED])


def test_follow_up_evaluates_only_its_new_tokens_and_matches_from_scratch(family):
    spec, _pair, engine = family
    engine.new_chat().result()
    engine.ask("What is this?", RED, greedy()).wait()
    kv_after_first = engine.evaluated_units()
    through_image = max(i for i, u in enumerate(kv_after_first) if isinstance(u, str)) + 1
    follow = engine.ask("What colour is it?", None, greedy())
    stats = follow.wait()
    assert stats.image_cached
    assert stats.image_encode_ms == 0
    if spec.rewrites_history:
        # The template rewrites the first answer's turn: the cache goes back no further than the image.
        assert engine.evaluated_units()[:through_image] == kv_after_first[:through_image]
        assert 0 < stats.prompt_tokens <= follow.prompt_units - through_image
    else:
        assert engine.evaluated_units()[: len(kv_after_first)] == kv_after_first
        assert stats.prompt_tokens == follow.prompt_units - len(kv_after_first)
        assert 0 < stats.prompt_tokens < len(kv_after_first) // 2
    assert follow.tokens == reference_for(family, follow, [RED])


def test_new_image_in_a_later_turn_matches_from_scratch(family):
    spec, _pair, engine = family
    engine.new_chat().result()
    engine.ask("What is this?", RED, greedy()).wait()
    before = engine.evaluated_units()
    if spec.rewrites_history:
        before = before[: max(i for i, u in enumerate(before) if isinstance(u, str)) + 1]
    second = engine.ask("And this one?", BLUE, greedy())
    second.wait()
    assert engine.evaluated_units()[: len(before)] == before
    assert second.tokens == reference_for(family, second, [RED, BLUE])


def test_regenerate_and_an_edited_question_are_still_right(family):
    _spec, _pair, engine = family
    engine.new_chat().result()
    first = engine.ask("What is this?", RED, greedy())
    first.wait()
    units = engine.evaluated_units()
    through_image = max(i for i, u in enumerate(units) if isinstance(u, str)) + 1
    restores = engine._call(lambda: engine._checkpoints.restores)
    again = engine.regenerate(greedy())
    stats = again.wait()
    assert stats.image_encode_ms == 0, "regenerating does not encode the image again"
    assert stats.prompt_tokens <= again.prompt_units - through_image, "nothing up to the image is evaluated again"
    assert again.tokens == first.tokens
    assert again.tokens == reference_for(family, again, [RED])
    # An edit: the conversation replaced by one with another question about the same image.
    engine.set_history([]).result()
    edited = engine.ask("Describe the colours?", RED, greedy())
    edited_stats = edited.wait()
    assert edited_stats.image_encode_ms == 0, "the image's embeddings are reused"
    assert edited_stats.prompt_tokens <= edited.prompt_units - through_image
    assert edited.tokens == reference_for(family, edited, [RED])
    checkpoints = engine._call(lambda: engine._checkpoints)
    if not engine._call(lambda: engine._native.can_truncate):  # hybrid: the checkpoint after the image served
        assert checkpoints.restores == restores + 2


def image_chunks(engine: Engine) -> list[tuple[int, int]]:
    """(token count, positions) of each image chunk in the cache."""
    return engine._call(lambda: [(u.chunk.n_tokens, u.chunk.n_pos) for u in engine._kv if not isinstance(u, int)])


@pytest.mark.parametrize("name", [n for n in RUNNABLE if needs_for(FAMILIES[n].projector).mrope])
def test_mrope_image_takes_fewer_positions_than_tokens_and_caps_its_token_count(name, tmp_path):
    spec = FAMILIES[name]
    pair = spec.write(tmp_path, 0)
    wide = gradient(64, 32)
    config = EngineConfig(n_ctx=1024, n_threads=2, image_max_tokens=16)
    with Engine(pair.text, pair.mmproj, config) as engine:
        turn = engine.ask("What is this?", wide, greedy(8))
        turn.wait()
        [(n_tokens, n_pos)] = image_chunks(engine)
        assert n_tokens <= 16, "the image-token cap holds"
        assert n_pos < n_tokens, "an M-RoPE image advances positions by its grid's larger side"
        # The engine's position count follows n_pos: the answer is still llama.cpp's own.
        history = engine.evaluated_units()[: turn.prompt_units]
        reference = greedy_from_scratch(
            pair.text, pair.mmproj, history, {load_image(wide).digest: wide}, len(turn.tokens), n_ctx=1024,
            image_max_tokens=16,
        )  # fmt: skip
        assert turn.tokens == reference


# The tensors tools/mtmd/clip.cpp (llama.cpp 0.3.36) loads for a minicpmv4_6 projector besides the SigLIP blocks:
# the ViT merger (TN_VIT_MERGER_*) and the final merger (TN_MM_INP_NORM, TN_MM_UP, TN_MM_DOWN), with their biases.
MINICPMV46_MERGER_TENSORS = {
    f"{prefix}.{kind}"
    for prefix in ("v.vit_merger.ln1", "v.vit_merger.attn_q", "v.vit_merger.attn_k", "v.vit_merger.attn_v",
                   "v.vit_merger.attn_out", "v.vit_merger.ds_ln", "v.vit_merger.ds_ffn_up", "v.vit_merger.ds_ffn_down",
                   "mm.input_norm", "mm.up", "mm.down")
    for kind in ("weight", "bias")
}  # fmt: skip


def test_minicpm_v46_mmproj_holds_the_mergers_llama_cpp_loads(tmp_path):
    import gguf

    pair = FAMILIES["minicpmv46"].write(tmp_path, 0)
    reader = gguf.GGUFReader(str(pair.mmproj))
    names = {t.name for t in reader.tensors}
    assert {n for n in names if n.startswith(("v.vit_merger.", "mm."))} == MINICPMV46_MERGER_TENSORS
    assert str(reader.fields["clip.projector_type"].contents()) == "minicpmv4_6"
    assert reader.fields["clip.vision.projector.scale_factor"].contents() == 4
    assert reader.fields["clip.vision.wa_layer_indexes"].contents() == [0]
    shapes = {t.name: [int(d) for d in t.shape] for t in reader.tensors}
    assert shapes["v.position_embd.weight"] == [32, 70 * 70]  # every patch looked up on SigLIP's 70 x 70 grid
    assert shapes["mm.down.weight"] == [64, 64]  # into the text model's width


def test_minicpm_v46_image_is_an_overview_then_its_slices_in_their_wrapper_tokens(tmp_path):
    """mtmd's MiniCPM-V layout: <image>overview</image> then <slice>tile</slice> per tile; the overview of a 32 px
    view is 8 x 8 patches merged 4 x 4 into 2 x 2 tokens."""
    import gguf

    pair = FAMILIES["minicpmv46"].write(tmp_path, 0)
    reader = gguf.GGUFReader(str(pair.text))
    field = reader.fields["tokenizer.ggml.tokens"]
    pieces = [bytes(field.parts[i]).decode() for i in field.data]
    with Engine(pair.text, pair.mmproj, EngineConfig(n_ctx=1024, n_threads=2)) as engine:
        engine.ask("What is this?", RED, greedy(4)).wait()
        units = engine.evaluated_units()
        first = next(i for i, u in enumerate(units) if isinstance(u, str))
        image = units[first]
        layout = [u if isinstance(u, str) else pieces[u] for u in units[first - 1 : first + 8]]
        assert layout == ["<image>", image, "</image>", "<slice>", image, "</slice>", "<slice>", image, "</slice>"]
        assert image_chunks(engine)[0] == (4, 4)


# Which verbatim template (models/templates/) each family's pair carries; the README names each file's source and
# SHA-256, so an edit to a "verbatim" copy is caught here.
TEMPLATE_FILES = {"qwen3vl": "qwen3-vl.jinja", "qwen35": "qwen3.5.jinja", "gemma4": "gemma4.jinja",
                  "minicpmv46": "qwen3.5.jinja"}  # fmt: skip


@pytest.mark.parametrize(("name", "file"), sorted(TEMPLATE_FILES.items()))
def test_pair_carries_its_verbatim_template_with_the_recorded_hash(name, file, tmp_path):
    import hashlib

    import gguf

    folder = Path(__file__).resolve().parents[1] / "models" / "templates"
    text = (folder / file).read_text(encoding="utf-8")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert f"| `{file}` |" in readme
    assert f"`{digest[:8]}…{digest[-5:]}`" in readme, f"{file} differs from the copy its README describes"
    pair = FAMILIES[name].write(tmp_path, 0)
    field = gguf.GGUFReader(str(pair.text)).fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode("utf-8") == text
