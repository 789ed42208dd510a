"""The engine on a real (tiny, generated) LLaVA pair: streaming, determinism, cache reuse, prepare, cancel."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from app.core.errors import EngineError, ModelFileError, PromptTooLongError
from app.core.inference.engine import Engine, EngineConfig, PastTurn
from app.core.inference.images import load_image
from app.core.inference.sampling import GREEDY, SamplingSettings
from tests.support.reference import greedy_from_scratch


def gradient(width: int, height: int, flip: bool = False) -> Image.Image:
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            r = 255 - x * 255 // width if flip else x * 255 // width
            image.putpixel((x, y), (r, y * 255 // height, 128))
    return image


def checkerboard(width: int, height: int, cell: int = 4) -> Image.Image:
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            on = (x // cell + y // cell) % 2
            image.putpixel((x, y), (250, 240, 10) if on else (10, 20, 200))
    return image


@pytest.fixture
def red_image() -> Image.Image:
    return gradient(48, 40)


@pytest.fixture
def blue_image() -> Image.Image:
    return checkerboard(40, 48)


@pytest.fixture
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as eng:
        yield eng


def greedy(max_tokens: int = 24, **changes) -> SamplingSettings:
    return GREEDY.with_(max_tokens=max_tokens, **changes)


def reference_for(engine: Engine, turn, images: dict, tiny_models, n_ctx: int = 2048) -> list[int]:
    history = engine.evaluated_units()[: turn.prompt_units]
    by_digest = {load_image(img).digest: img for img in images}
    return greedy_from_scratch(tiny_models.text, tiny_models.mmproj, history, by_digest, len(turn.tokens), n_ctx=n_ctx)


def test_answer_streams_in_pieces_that_add_up_to_the_answer(engine, red_image):
    turn = engine.ask("What is this?", red_image, greedy(32))
    pieces = list(turn)
    stats = turn.stats
    assert stats is not None
    assert len(pieces) > 1, "the answer should arrive token by token, not in one piece"
    assert "".join(pieces) == turn.text
    assert stats.decode_tokens == len(turn.tokens) > 1
    assert stats.image_encode_ms > 0
    assert not stats.image_cached
    assert stats.ttft_ms > 0
    assert stats.prefill_ms > 0
    assert stats.decode_tok_s > 0
    assert stats.finish_reason in {"stop", "length"}


def test_greedy_answers_are_deterministic(engine, red_image):
    first = engine.ask("What is this?", red_image, greedy())
    first.wait()
    engine.new_chat().result()
    second = engine.ask("What is this?", red_image, greedy())
    second.wait()
    assert first.tokens == second.tokens
    assert len(first.tokens) > 0


def test_different_images_give_different_answers(engine, red_image, blue_image):
    red = engine.ask("What is this?", red_image, greedy())
    red.wait()
    engine.new_chat().result()
    blue = engine.ask("What is this?", blue_image, greedy())
    blue.wait()
    assert red.tokens != blue.tokens


def test_first_turn_matches_from_scratch_evaluation(engine, red_image, tiny_models):
    turn = engine.ask("What is this?", red_image, greedy())
    turn.wait()
    history = engine.evaluated_units()[: turn.prompt_units]
    assert history[0] == 1, "the prompt starts with BOS"
    assert sum(1 for u in history if isinstance(u, str)) == 1, "exactly one image in the prompt"
    assert turn.tokens == reference_for(engine, turn, [red_image], tiny_models)


def test_follow_up_reuses_the_cache_and_matches_from_scratch(engine, red_image, tiny_models):
    first = engine.ask("What is this?", red_image, greedy())
    first_stats = first.wait()
    kv_after_first = engine.evaluated_units()
    follow = engine.ask("What colour is it?", None, greedy())
    stats = follow.wait()

    assert stats.image_encode_ms == 0, "the image must not be encoded again"
    assert stats.image_cached
    units = engine.evaluated_units()
    assert units[: len(kv_after_first)] == kv_after_first, "the first turn stays in the cache untouched"
    # Only the new text (plus the last answer token, fed once its end-of-turn follows) is evaluated.
    new_units = follow.prompt_units - len(kv_after_first)
    assert stats.prompt_tokens == new_units
    assert stats.prompt_tokens < first_stats.prompt_tokens
    assert follow.tokens == reference_for(engine, follow, [red_image], tiny_models)

    third = engine.ask("And what else?", None, greedy())
    third_stats = third.wait()
    assert third_stats.image_cached
    assert third_stats.image_encode_ms == 0
    assert third.tokens == reference_for(engine, third, [red_image], tiny_models)


def test_new_image_in_a_later_turn_is_encoded_and_appended(engine, red_image, blue_image, tiny_models):
    engine.ask("What is this?", red_image, greedy()).wait()
    before = engine.evaluated_units()
    second = engine.ask("And this one?", blue_image, greedy())
    stats = second.wait()
    assert stats.image_encode_ms > 0
    assert not stats.image_cached
    units = engine.evaluated_units()
    assert units[: len(before)] == before
    images = [u for u in units if isinstance(u, str)]
    assert len(images) == 2
    assert images[0] != images[1]
    assert second.tokens == reference_for(engine, second, [red_image, blue_image], tiny_models)


def test_prepared_image_leaves_only_the_question_to_evaluate(engine, tiny_models, red_image):
    future = engine.prepare(red_image)
    assert future.result(timeout=60) is True
    prepared_units = engine.evaluated_units()
    assert isinstance(prepared_units[-1], str), "preparation evaluates the prompt through the image"
    turn = engine.ask("What is this?", red_image, greedy())
    stats = turn.wait()
    assert stats.image_encode_ms == 0
    assert stats.prompt_tokens == turn.prompt_units - len(prepared_units)

    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as fresh:
        unprepared = fresh.ask("What is this?", red_image, greedy())
        unprepared.wait()
        assert fresh.evaluated_units()[: unprepared.prompt_units] == engine.evaluated_units()[: turn.prompt_units]
    assert turn.tokens == unprepared.tokens, "prepared or not, the answer is token-identical"


def hold(engine: Engine) -> threading.Event:
    """Keep the inference thread busy until the event is set, so what is asked meanwhile is queued behind it."""
    release = threading.Event()
    engine._submit(lambda: release.wait(60))
    return release


def encoded_images(engine: Engine) -> list[str]:
    """The digests of the images the engine has run its vision encoder on (its embedding cache, oldest first)."""
    return engine._call(lambda: list(engine._embeddings))


def test_question_asked_during_preparation_waits_for_it(engine, red_image):
    release = hold(engine)
    future = engine.prepare(red_image)
    turn = engine.ask("What is this?", red_image, greedy())  # queued behind the preparation
    release.set()
    stats = turn.wait()
    assert future.result(timeout=60) is True, "the preparation was not started over or abandoned"
    assert (stats.image_encode_ms, stats.image_cached) == (0.0, True)
    question_units = turn.prompt_units - engine.evaluated_units().index(f"image:{load_image(red_image).digest}") - 1
    assert stats.prompt_tokens == question_units, "the answer evaluated only what follows the prepared image"


def test_new_preparation_replaces_the_old_one(engine, red_image, blue_image, tiny_models):
    release = hold(engine)  # both preparations are queued
    abandoned = engine.prepare(red_image)
    latest = engine.prepare(blue_image)
    release.set()
    assert (abandoned.result(timeout=60), latest.result(timeout=60)) == (False, True), (
        "the first preparation was abandoned, and says so")  # fmt: skip
    blue = load_image(blue_image).digest
    assert encoded_images(engine) == [blue], "the abandoned preparation did no work"
    turn = engine.ask("What is this?", blue_image, greedy())
    stats = turn.wait()
    assert (stats.image_encode_ms, stats.image_cached) == (0.0, True)
    images = [u for u in engine.evaluated_units() if isinstance(u, str)]
    assert images == [f"image:{blue}"]
    assert turn.tokens == reference_for(engine, turn, [blue_image], tiny_models)
    later = engine.ask("What is this?", red_image, greedy()).wait()
    assert (later.image_encode_ms > 0, later.image_cached) == (True, False), "asked about, the image is read now"
    assert encoded_images(engine) == [blue, load_image(red_image).digest]


def test_a_question_about_another_image_abandons_the_preparation(engine, red_image, blue_image, tiny_models):
    release = hold(engine)
    preparing = engine.prepare(red_image)
    turn = engine.ask("What is this?", blue_image, greedy())  # the question went elsewhere
    release.set()
    stats = turn.wait()
    assert preparing.result(timeout=60) is False, "the preparation for the frame not asked about says so"
    assert encoded_images(engine) == [load_image(blue_image).digest], "and it did no work"
    assert (stats.image_encode_ms > 0, stats.image_cached) == (True, False), "the answer read its own image"
    assert turn.tokens == reference_for(engine, turn, [blue_image], tiny_models)


def test_cancel_stops_within_one_token(engine, red_image):
    turn = engine.ask("Tell me everything.", red_image, SamplingSettings(temperature=0.8, seed=7, max_tokens=400))
    seen_at_cancel = None
    for _piece in turn:
        if seen_at_cancel is None:
            seen_at_cancel = len(turn.tokens)
            turn.cancel()
    assert turn.stats is not None
    assert turn.stats.finish_reason == "cancelled"
    assert seen_at_cancel is not None
    assert len(turn.tokens) <= seen_at_cancel + 1


def test_cancel_from_another_thread_via_engine(engine, red_image):
    turn = engine.ask("Tell me everything.", red_image, SamplingSettings(temperature=0.8, seed=3, max_tokens=400))
    first_piece = threading.Event()

    def consume() -> None:
        for _ in turn:
            first_piece.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert first_piece.wait(60)
    engine.cancel()
    consumer.join(60)
    assert turn.stats is not None
    assert turn.stats.finish_reason == "cancelled"
    assert len(turn.tokens) < 400
    # The engine keeps working after a cancel, and the stopped answer stays in the conversation.
    engine.ask("Shorter please.", None, greedy(8)).wait()
    assert [t.question for t in engine.history] == ["Tell me everything.", "Shorter please."]


def test_context_overflow_rebuilds_from_recent_turns_and_keeps_the_image(tiny_models, red_image):
    config = EngineConfig(n_ctx=256, n_threads=2)
    with Engine(tiny_models.text, tiny_models.mmproj, config) as engine:
        first = engine.ask("What is this picture showing us here?", red_image, greedy(40))
        first.wait()
        rebuilt = None
        for i in range(12):
            turn = engine.ask(f"Question number {i}: tell me more about it?", None, greedy(40))
            stats = turn.wait()
            if stats.context_rebuilt:
                rebuilt = turn
                break
        assert rebuilt is not None, "a long conversation in a 256-token context must be rebuilt"
        assert rebuilt.stats.dropped_turns >= 1
        units = engine.evaluated_units()
        assert sum(1 for u in units if isinstance(u, str)) == 1, "the current image stays after a rebuild"
        assert len(engine.history) < i + 2
        assert rebuilt.tokens == reference_for(engine, rebuilt, [red_image], tiny_models, n_ctx=256)


def test_prompt_too_long_for_the_context_is_a_clear_error(tiny_models, red_image):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=128, n_threads=2)) as engine:
        turn = engine.ask("why " * 400, red_image, greedy())
        with pytest.raises(PromptTooLongError, match=f"context holds {engine.info.n_ctx}"):
            turn.wait()
        # Nothing was lost: the engine still answers a question that fits.
        ok = engine.ask("What is this?", red_image, greedy(8))
        ok.wait()
        assert [t.question for t in engine.history] == ["What is this?"]


def test_stop_string_ends_the_answer_before_it(engine, red_image):
    probe = engine.ask("What is this?", red_image, greedy(40))
    probe.wait()
    text = probe.text
    assert len(text) > 6
    stop = text[len(text) // 2 : len(text) // 2 + 3]
    engine.new_chat().result()
    turn = engine.ask("What is this?", red_image, greedy(40, stop=(stop,)))
    stats = turn.wait()
    assert stats.finish_reason == "stop"
    assert stop not in turn.text
    assert text.startswith(turn.text)


def test_max_tokens_bounds_the_answer(engine, red_image):
    turn = engine.ask("What is this?", red_image, SamplingSettings(temperature=0.7, seed=1, max_tokens=5))
    stats = turn.wait()
    assert stats.decode_tokens <= 5
    if stats.decode_tokens == 5:
        assert stats.finish_reason == "length"


def test_seeded_sampling_is_reproducible(engine, red_image):
    settings = SamplingSettings(temperature=0.9, seed=1234, max_tokens=24)
    a = engine.ask("What is this?", red_image, settings)
    a.wait()
    engine.new_chat().result()
    b = engine.ask("What is this?", red_image, settings)
    b.wait()
    assert a.tokens == b.tokens


def test_regenerate_replaces_the_last_answer(engine, red_image):
    engine.ask("What is this?", red_image, greedy()).wait()
    again = engine.regenerate(SamplingSettings(temperature=0.9, seed=5, max_tokens=16))
    again.wait()
    history = engine.history
    assert [t.question for t in history] == ["What is this?"]
    assert history[0].answer == again.text


def test_set_history_continues_a_stored_chat(engine, red_image, tiny_models):
    first = engine.ask("What is this?", red_image, greedy())
    first.wait()
    stored = engine.history
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as other:
        other.set_history([PastTurn(t.question, t.answer, load_image(red_image)) for t in stored]).result()
        cont = other.ask("And the colour?", None, greedy())
        cont.wait()
        assert [t.question for t in other.history] == ["What is this?", "And the colour?"]
        assert cont.tokens == reference_for(other, cont, [red_image], tiny_models)


def test_text_only_question_without_mmproj(tiny_models):
    with Engine(tiny_models.text, None, EngineConfig(n_ctx=512, n_threads=2)) as engine:
        turn = engine.ask("Hello there?", None, greedy(8))
        turn.wait()
        assert turn.tokens
        with pytest.raises(EngineError, match="no vision projector"):
            engine.ask("What is this?", Image.new("RGB", (8, 8)))


def test_bad_model_files_raise_model_file_error_and_keep_the_process_alive(tmp_path, tiny_models, mismatched_mmproj):
    with pytest.raises(ModelFileError, match="no such file|not found|does not exist"):
        Engine(tmp_path / "missing.gguf", None)
    html = tmp_path / "page.gguf"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(ModelFileError, match="page.gguf"):
        Engine(html, None)
    with pytest.raises(ModelFileError):
        Engine(tiny_models.text, mismatched_mmproj)
    with pytest.raises(ModelFileError):
        Engine(tiny_models.mmproj, tiny_models.text)
    # Still alive and able to load a good pair.
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512)) as engine:
        assert engine.info.has_vision


def test_closed_engine_refuses_work(tiny_models, red_image):
    engine = Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512))
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.ask("What is this?", red_image)


def test_ignore_eos_always_generates_max_tokens(engine, red_image):
    turn = engine.ask("What is this?", red_image, greedy(48, ignore_eos=True))
    stats = turn.wait()
    assert stats.decode_tokens == 48
    assert stats.finish_reason == "length"


def test_load_progress_is_reported_up_to_complete(tiny_models):
    seen: list[float] = []
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=512), load_progress=seen.append):
        pass
    assert seen
    assert seen[-1] == pytest.approx(1.0)
    assert seen == sorted(seen)


def test_async_stream_gives_the_same_pieces_on_the_loop_without_a_thread(engine, red_image):
    import asyncio

    blocking = list(engine.ask("What is this?", red_image, greedy(16)))
    engine.new_chat().result()
    threads_before = set(threading.enumerate())

    async def consume() -> tuple[list[str], set[threading.Thread]]:
        turn = engine.ask("What is this?", red_image, greedy(16))
        pieces = [piece async for piece in turn.stream()]
        return pieces, set(threading.enumerate()) - threads_before

    pieces, new_threads = asyncio.run(consume())
    assert pieces == blocking
    assert new_threads == set()  # no relay thread: the inference thread posts to the loop itself


def test_cancelling_the_consuming_task_stops_the_answer_between_two_tokens(engine, red_image):
    import asyncio

    async def consume_then_cancel() -> tuple[object, int]:
        turn = engine.ask("Tell me everything.", red_image, SamplingSettings(temperature=0.8, seed=7, max_tokens=400))
        first = asyncio.Event()
        seen: list[int] = []

        async def reader() -> None:
            async for _piece in turn.stream():
                if not first.is_set():
                    seen.append(len(turn.tokens))
                    first.set()

        task = asyncio.ensure_future(reader())
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return turn, seen[0]

    turn, seen_at_cancel = asyncio.run(consume_then_cancel())
    stats = turn.wait()  # the rest of the turn's events are still there for a blocking reader
    assert stats.finish_reason == "cancelled"
    assert len(turn.tokens) <= seen_at_cancel + 2


def test_history_holds_the_turn_as_soon_as_wait_returns(engine, red_image, monkeypatch):
    # A descheduled inference thread (a loaded CI machine) used to finish the turn before publishing the history,
    # so a caller woken by wait() read the history without its own turn. Widen that window on purpose.
    publish = Engine._publish_history

    def slow_publish(self: Engine) -> None:
        time.sleep(0.2)
        publish(self)

    monkeypatch.setattr(Engine, "_publish_history", slow_publish)
    turn = engine.ask("What is this?", red_image, greedy(max_tokens=2))
    turn.wait()
    assert [(t.question, t.answer) for t in engine.history] == [("What is this?", turn.text)]


def test_cpus_with_amx_keep_the_weights_out_of_llama_cpps_extra_buffers():
    # llama.cpp 0.3.36's AMX matrix multiply segfaults on a real-size Q4_0 model on this project's Xeon VM
    # (llama.cpp issue 20824); plain CPU buffers run it. Elsewhere llama.cpp's repacked layouts stay on.
    from app.core.inference.native import use_extra_buffers

    amx = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | REPACK = 1 | "
    assert use_extra_buffers(None, amx) is False
    assert use_extra_buffers(None, amx.replace("AMX_INT8 = 1 | ", "")) is True
    assert use_extra_buffers(True, amx) is True
    assert use_extra_buffers(False, "CPU : AVX2 = 1 | REPACK = 1 | ") is False
