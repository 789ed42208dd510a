"""The demo model's world: one coloured shape at a position on a plain background, and questions about it.

Shared by the trainer (models/train_test_model.py), the accuracy benchmark (bench/accuracy.py) and the tests, so
all three draw the same scenes and expect the same answer strings. NumPy and Pillow only.

Seeds below TRAIN_SEED_LIMIT are for training; HELD_OUT_SEED and up are never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

SHAPES = ("square", "circle", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 215, 30),
    "purple": (140, 50, 185),
    "orange": (245, 135, 20),
}
POSITIONS = ("left", "right", "top", "bottom", "centre")
BACKGROUNDS = ((245, 245, 245), (200, 200, 200), (70, 70, 70), (15, 15, 15))
_CENTRES = {"left": (0.22, 0.5), "right": (0.78, 0.5), "top": (0.5, 0.23), "bottom": (0.5, 0.77), "centre": (0.5, 0.5)}
_WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
          "centre": "in the centre"}  # fmt: skip

TRAIN_SEED_LIMIT = 1_000_000_000
HELD_OUT_SEED = 2_000_000_000
KINDS = ("colour", "shape", "position", "yesno", "what")
BENCH_KINDS = ("colour", "shape", "position", "yesno")

_QUESTIONS = {
    "colour": ("What colour is the shape?", "What color is it?", "What colour is it?"),
    "shape": ("What shape is it?", "What shape is this?", "Which shape is it?"),
    "position": ("Where is the shape?", "Where is it?"),
    "what": ("What is this?", "What do you see?"),
}


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    position: str
    background: tuple[int, int, int]
    width: int
    height: int


def answer_for(kind: str, scene: Scene) -> str:
    if kind == "colour":
        return f"It is {scene.colour}."
    if kind == "shape":
        return f"It is a {scene.shape}."
    if kind == "position":
        return f"It is {_WHERE[scene.position]}."
    if kind == "what":
        return f"{'An' if scene.colour[0] in 'aeiou' else 'A'} {scene.colour} {scene.shape}."
    raise ValueError(kind)


def question(kind: str, scene: Scene, rng: random.Random) -> tuple[str, str]:
    """A question of `kind` about `scene` and its exact expected answer."""
    if kind != "yesno":
        return rng.choice(_QUESTIONS[kind]), answer_for(kind, scene)
    yes = rng.random() < 0.5
    topic = rng.choice(("colour", "shape", "position"))
    if topic == "colour":
        value = scene.colour if yes else rng.choice([c for c in COLOURS if c != scene.colour])
        text = rng.choice((f"Is the shape {value}?", f"Is it {value}?"))
    elif topic == "shape":
        value = scene.shape if yes else rng.choice([s for s in SHAPES if s != scene.shape])
        text = rng.choice((f"Is there a {value}?", f"Is it a {value}?"))
    else:
        value = scene.position if yes else rng.choice([p for p in POSITIONS if p != scene.position])
        text = f"Is it {_WHERE[value]}?"
    return text, "Yes." if yes else "No."


def random_scene(rng: random.Random, *, square: bool) -> Scene:
    if square:
        width = height = rng.choice((32, 48, 64, 96, 128, 256))
    else:
        long_side = rng.choice((32, 48, 64, 96, 128, 256))
        ratio = rng.choice((4 / 3, 16 / 9, 3 / 2, 2.0, 3 / 4, 9 / 16))
        width, height = (long_side, round(long_side / ratio)) if ratio > 1 else (round(long_side * ratio), long_side)
    colour = rng.choice(list(COLOURS))
    background = rng.choice(BACKGROUNDS)
    return Scene(rng.choice(SHAPES), colour, rng.choice(POSITIONS), background, width, height)


def scene_for_seed(seed: int, *, square: bool) -> Scene:
    return random_scene(random.Random(seed), square=square)


def draw(scene: Scene, rng: random.Random | None = None) -> np.ndarray:
    """The scene as an (H, W, 3) uint8 RGB frame (a little jitter in size, place and colour when `rng` is given)."""
    from PIL import Image, ImageDraw

    rng = rng or random.Random(0)
    w, h = scene.width, scene.height
    jitter = (lambda c: max(0, min(255, c + rng.randint(-18, 18)))) if rng else (lambda c: c)
    image = Image.new("RGB", (w, h), tuple(jitter(c) for c in scene.background))
    d = ImageDraw.Draw(image)
    m = min(w, h)
    s = m * rng.uniform(0.34, 0.44)
    fx, fy = _CENTRES[scene.position]
    cx = w * (fx + rng.uniform(-0.03, 0.03))
    cy = h * (fy + rng.uniform(-0.03, 0.03))
    if scene.position in ("left", "right"):
        cx = min(max(cx, s / 2 + 1), w - s / 2 - 1)
    if scene.position in ("top", "bottom"):
        cy = min(max(cy, s / 2 + 1), h - s / 2 - 1)
    fill = tuple(jitter(c) for c in COLOURS[scene.colour])
    box = (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)
    if scene.shape == "square":
        d.rectangle(box, fill=fill)
    elif scene.shape == "circle":
        d.ellipse(box, fill=fill)
    else:
        d.polygon([(cx, cy - s / 2), (cx + s / 2, cy + s / 2), (cx - s / 2, cy + s / 2)], fill=fill)
    return np.asarray(image, dtype=np.uint8)
