"""Watch mode: the change detector, the watch loop's timeline and conditions, and the engine's aside questions.

The loop tests drive `Watcher` with a frame source fed at the watcher's own pace (one frame per step, counts, no
wall clock) and a labelled scripted answerer, `ColourReader`, that reads the shape's colour from the pixels: they
check when the watcher asks and what it does with answers, not inference. Inference is checked against the real
tiny llama.cpp models at the end (engine calls, the yes/no grammar, the chat's cache kept).
"""

from __future__ import annotations

import numpy as np
import pytest

from app.core.inference.engine import Engine, EngineConfig
from app.core.inference.sampling import GREEDY
from app.core.watch import (
    YES_NO_GRAMMAR,
    ChangeSettings,
    Condition,
    EngineAnswerer,
    Frame,
    ListSource,
    Watcher,
    condition_question,
)

COLOURS = {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 40), "yellow": (230, 220, 30)}
FAST = ChangeSettings(min_interval=0.0)


def scene(colour: str, *, brightness: float = 1.0, noise_seed: int | None = None, w: int = 64, h: int = 48):
    """A square of `colour` in the middle of a grey background, like the trained model's scenes."""
    frame = np.full((h, w, 3), 128, np.float32)
    frame[h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = COLOURS[colour]
    if noise_seed is not None:
        frame += np.random.default_rng(noise_seed).normal(0, 6, frame.shape)
    return np.clip(frame * brightness, 0, 255).astype(np.uint8)


class ColourReader:
    """Scripted answerer (not a model): names the colour at the frame's centre; counts its calls."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def colour(self, frame: Frame) -> str:
        h, w = frame.rgb.shape[:2]
        pixel = frame.rgb[h // 2, w // 2].astype(int)
        return min(COLOURS, key=lambda c: sum(abs(p - q) for p, q in zip(pixel, COLOURS[c], strict=True)))

    def __call__(self, question: str, frame: Frame, grammar: str | None) -> str:
        self.asked.append(frame.index)
        colour = self.colour(frame)
        if grammar is not None:
            return "Yes." if colour in question else "No."
        return f"The shape is {colour}."


class Clock:
    """The watch's clock advances one second per frame taken (counts, not wall-clock time)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TickingSource(ListSource):
    def __init__(self, frames, clock: Clock) -> None:
        super().__init__(frames)
        self.clock = clock

    def next_frame(self):
        self.clock.now += 1.0
        return super().next_frame()


def test_a_static_scene_is_asked_about_once():
    reader = ColourReader()
    frames = [scene("blue", noise_seed=i) for i in range(40)]
    watcher = Watcher(reader, "What colour is the shape?", change=FAST)
    assert watcher.run(ListSource(frames)) == "source ended"
    assert reader.asked == [0]
    assert [e.answer for e in watcher.timeline.entries] == ["The shape is blue."]


def test_changing_light_and_flicker_cause_no_question():
    reader = ColourReader()
    # the room's light drifts and a lamp flickers every other frame; sensor noise on every frame
    frames = [scene("blue", brightness=(0.6 + i * 0.02) * (1.25 if i % 2 else 1.0), noise_seed=i) for i in range(30)]
    watcher = Watcher(reader, "What colour is the shape?", change=FAST)
    watcher.run(ListSource(frames))
    assert reader.asked == [0]


def test_a_looping_videos_seam_is_not_a_change():
    reader = ColourReader()
    loop = [scene("green", noise_seed=i) for i in range(10)]
    loop[-1] = np.zeros_like(loop[-1])  # the seam: one black frame as the video restarts
    watcher = Watcher(reader, "What colour is the shape?", change=FAST)
    watcher.run(ListSource(loop * 4))
    assert reader.asked == [0]


def test_colours_cycling_give_one_timeline_entry_per_change():
    reader = ColourReader()
    order = ["red", "blue", "green", "yellow", "red"]
    frames = [scene(c, noise_seed=10 * k + i) for k, c in enumerate(order) for i in range(6)]
    watcher = Watcher(reader, "What colour is the shape?", change=FAST)
    watcher.run(ListSource(frames))
    assert [e.answer for e in watcher.timeline.entries] == [f"The shape is {c}." for c in order]
    # each change is asked about once it has settled (two frames that agree), never before it happened
    assert reader.asked == [0, 7, 13, 19, 25]


def test_identical_consecutive_answers_are_folded():
    reader = ColourReader()
    # the square moves (a change the detector sees) but stays red: the answer is the same
    frames = [scene("red") for _ in range(4)] + [np.roll(scene("red"), 8, axis=1) for _ in range(4)]
    watcher = Watcher(reader, "What colour is the shape?", change=FAST)
    watcher.run(ListSource(frames))
    assert reader.asked == [0, 5]
    [entry] = watcher.timeline.entries
    assert (entry.answer, entry.repeats, entry.frame_index, entry.last_frame_index) == ("The shape is red.", 2, 0, 5)
    assert [e.kind for e in watcher.events] == ["answer", "repeat", "end"]


def test_the_re_ask_rate_is_capped():
    reader = ColourReader()
    clock = Clock()
    frames = [scene(["red", "blue", "green", "yellow"][(i // 2) % 4], noise_seed=i) for i in range(40)]
    watcher = Watcher(reader, "What colour?", change=ChangeSettings(min_interval=10.0), clock=clock)
    watcher.run(TickingSource(frames, clock))
    # a scene that changes every 2 s is asked about at most once per 10 s (40 frames → 4 questions)
    assert len(reader.asked) == 4
    assert all(b - a >= 10 for a, b in zip(reader.asked, reader.asked[1:], strict=False))


def test_interval_mode_asks_on_the_timer_even_when_nothing_changes():
    reader = ColourReader()
    clock = Clock()
    watcher = Watcher(reader, "What colour?", interval=5.0, clock=clock)
    watcher.run(TickingSource([scene("red") for _ in range(20)], clock))
    assert reader.asked == [0, 5, 10, 15]
    assert len(watcher.timeline.entries) == 1
    assert watcher.timeline.entries[0].repeats == 4


def test_tell_me_when_fires_once_on_the_first_answer_at_or_after_the_change():
    reader = ColourReader()
    turns_red = 17
    frames = [scene("blue" if i < turns_red else "red", noise_seed=i) for i in range(40)]
    watcher = Watcher(reader, condition=Condition("Tell me when the shape is red", cooldown=0), change=FAST)
    watcher.run(ListSource(frames))
    matches = [e for e in watcher.events if e.kind == "match"]
    assert [(m.kind, m.text) for m in matches] == [("match", "Tell me when the shape is red")]
    first_after = min(i for i in reader.asked if i >= turns_red)
    assert matches[0].frame_index == first_after == turns_red + 1
    assert [e.answer for e in watcher.timeline.entries] == ["No.", "Yes."]


def test_a_condition_does_not_fire_again_until_it_went_back_to_no_and_the_cooldown_passed():
    reader = ColourReader()
    clock = Clock()
    pattern = ["red"] * 4 + ["blue"] * 4 + ["red"] * 4 + ["blue"] * 20 + ["red"] * 4
    frames = [scene(c, noise_seed=i) for i, c in enumerate(pattern)]
    watcher = Watcher(reader, condition=Condition("the shape is red", cooldown=15.0), change=FAST, clock=clock)
    watcher.run(TickingSource(frames, clock))
    fired = [e.frame_index for e in watcher.events if e.kind == "match"]
    # yes at 0 fires; yes again at 9 is within the cooldown; yes at 33 (after no at 13) fires
    assert fired == [0, 33]


def test_a_condition_can_end_the_watch_on_its_first_match_or_a_time_limit():
    frames = [scene("blue")] * 5 + [scene("red")] * 50
    watcher = Watcher(ColourReader(), condition=Condition("the shape is red", end_on_match=True), change=FAST)
    assert watcher.run(ListSource(frames)) == "matched"
    assert watcher.frames_seen == 7
    clock = Clock()
    timed = Watcher(ColourReader(), "What colour?", time_limit=12.0, clock=clock)
    assert timed.run(TickingSource([scene("blue")] * 50, clock)) == "time limit"
    assert timed.frames_seen == 12


def test_a_preset_reads_each_new_scene_once_and_again_when_pre_empted():
    read: list[int] = []

    def on_scene(frame: Frame) -> bool:
        read.append(frame.index)
        return len(read) != 2  # the second reading is pre-empted by a chat question

    frames = [scene("blue")] * 5 + [scene("red")] * 6
    watcher = Watcher(ColourReader(), condition=None, question=None, change=FAST, on_scene=on_scene)
    watcher.run(ListSource(frames))
    assert read == [0, 6, 7]


def test_condition_questions():
    assert condition_question("Tell me when the shape is red") == "Is the shape red?"
    assert condition_question("let me know when there is a circle.") == "Is there a circle?"
    assert condition_question("the cups are empty") == "Are the cups empty?"
    assert condition_question("someone waves") == "Is it true that someone waves?"
    with pytest.raises(ValueError, match="the condition is empty"):
        condition_question("tell me when ")


# --- the real engine (tiny random-weight llama.cpp models) ----------------------------------------------------------


@pytest.fixture
def engine(tiny_models):
    with Engine(tiny_models.text, tiny_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as eng:
        yield eng


class CountingEngine:
    """The real engine; counts the questions the watch sends it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.calls = 0

    def ask_aside(self, *args, **kwargs):
        self.calls += 1
        return self.engine.ask_aside(*args, **kwargs)


def test_a_static_scene_of_n_frames_costs_exactly_one_engine_call(engine):
    counting = CountingEngine(engine)
    watcher = Watcher(EngineAnswerer(counting, max_tokens=6), "What is this?", change=FAST)
    watcher.run(ListSource([scene("red", noise_seed=i) for i in range(25)]))
    assert counting.calls == 1
    assert len(watcher.timeline.entries) == 1


def test_the_yes_no_grammar_holds_even_for_a_random_weight_model(engine):
    answers = set()
    for colour in COLOURS:
        turn = engine.ask_aside("Is the shape red?", scene(colour), GREEDY.with_(max_tokens=8, grammar=YES_NO_GRAMMAR))
        stats = turn.wait()
        assert stats.finish_reason == "stop"
        answers.add(turn.text)
    assert answers <= {"Yes", "No", "Yes.", "No."}
    assert answers


def _check_the_chat_cache_is_kept(engine):
    def chat(with_watch: bool):
        engine.new_chat().result()
        engine.ask("What is this?", scene("red"), GREEDY.with_(max_tokens=6)).wait()
        held, history = engine.evaluated_units(), engine.history
        if with_watch:
            aside = engine.ask_aside("Is the shape blue?", scene("blue"), GREEDY.with_(max_tokens=6))
            assert aside.wait().finish_reason in {"stop", "length"}
            assert engine.evaluated_units() == held
            assert engine.history == history
        follow_up = engine.ask("And its colour?", None, GREEDY.with_(max_tokens=6))
        return follow_up.wait(), follow_up.tokens

    alone, alone_tokens = chat(with_watch=False)
    after_watch, after_watch_tokens = chat(with_watch=True)
    # the follow-up evaluates only its own tokens, as without the watch, and reads the same cache (same answer)
    assert after_watch.prompt_tokens == alone.prompt_tokens
    assert after_watch.image_encode_ms == 0.0
    assert after_watch_tokens == alone_tokens
    assert [t.question for t in engine.history] == ["What is this?", "And its colour?"]


def test_a_watch_question_keeps_the_chats_cache(engine):
    _check_the_chat_cache_is_kept(engine)


@pytest.mark.parametrize("family", ["smolvlm2", "lfm2", "qwen3vl", "gemma4", "qwen35"])
def test_a_watch_question_keeps_every_familys_chat_state(tmp_path_factory, family):
    # transformers share the stash's cells; LFM2's and Qwen3.5's recurrent state cannot, and Gemma 4's sliding
    # window prunes cells: their state is saved and loaded back
    from models.families import FAMILIES

    spec = FAMILIES[family]
    if spec.note:
        pytest.skip(spec.note)
    pair = spec.write(tmp_path_factory.mktemp(family), 0)
    config = EngineConfig(n_ctx=2048, n_threads=2, **spec.engine_config)
    with Engine(pair.text, pair.mmproj, config) as model:
        _check_the_chat_cache_is_kept(model)


def test_a_chat_question_pre_empts_a_running_watch_question(engine):
    long = GREEDY.with_(max_tokens=1500, ignore_eos=True)
    aside = engine.ask_aside("Describe everything.", scene("green"), long)
    next(iter(aside))  # it is generating
    chat = engine.ask("What is this?", scene("red"), GREEDY.with_(max_tokens=4))
    chat_stats = chat.wait()
    assert aside.wait().finish_reason == "cancelled"
    assert chat_stats.finish_reason in {"stop", "length"}
    assert [t.question for t in engine.history] == ["What is this?"]



def _watch_on_the_trained_pair(trained_models, order: list[str], **watch: object) -> Watcher:
    """A watch on the trained demo pair over a centred square of each colour in `order`, five frames each."""
    from models.demo_scenes import Scene, draw

    frames = [draw(Scene("square", c, "centre", (200, 200, 200), 48, 48)) for c in order for _ in range(5)]
    with Engine(trained_models.text, trained_models.mmproj, EngineConfig(n_ctx=2048, n_threads=2)) as trained:
        watcher = Watcher(EngineAnswerer(trained, max_tokens=8), change=FAST, **watch)
        watcher.run(ListSource(frames))
    return watcher


def test_the_trained_model_gives_one_timeline_entry_per_colour_change(trained_models):
    order = ["red", "blue", "green", "blue"]
    watcher = _watch_on_the_trained_pair(trained_models, order, question="What colour is the shape?")
    assert [e.answer for e in watcher.timeline.entries] == [f"It is {c}." for c in order]
    assert [e.frame_index for e in watcher.timeline.entries] == [0, 6, 11, 16]
    assert watcher.engine_calls == 4


def test_the_trained_model_tells_when_the_shape_turns_red(trained_models):
    # "Tell me when" end to end on the trained pair: the yes/no grammar, the model's own answers, one notification
    condition = Condition("Tell me when the shape is red", cooldown=0)
    watcher = _watch_on_the_trained_pair(trained_models, ["blue", "green", "red", "blue"], condition=condition)
    matches = [e for e in watcher.events if e.kind == "match"]
    assert [(m.text, m.frame_index) for m in matches] == [("Tell me when the shape is red", 11)]
    assert [e.answer for e in watcher.timeline.entries] == ["No.", "Yes.", "No."]
