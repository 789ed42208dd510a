"""Train the demo pair: a tiny LLaVA-layout model that really answers questions about coloured shapes.

    pip install -e '.[train]'     # JAX on the CPU, only for this script
    python -m models.train_test_model --out app/demo      # `make test-model`

It writes `demo-llama.gguf` (llama architecture, byte-fallback SentencePiece vocabulary, a Zephyr-layout chat
template) and `demo-mmproj.gguf` (CLIP "mlp" projector). The forward pass is models/llava_numpy.py's, run under
JAX; training text is tokenized by llama.cpp itself, segment by segment as the engine and mtmd do, so the model
learns the very token sequences it will see. Scenes and questions come from models/demo_scenes.py.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.core.inference.images import load_image
from app.core.inference.templates import DEFAULT_SYSTEM_PROMPT, IMAGE_MARKER, TINYLLAMA_TEMPLATE
from models import demo_scenes as ds
from models.llava_numpy import TextConfig, VisionConfig, image_embeddings, letterbox, normalise, text_forward
from models.make_test_models import CLIP_MEAN, CLIP_STD

TEXT_NAME = "demo-llama.gguf"
MMPROJ_NAME = "demo-mmproj.gguf"

# TinyLlama's Zephyr layout; plain-string content renders byte-identically to TINYLLAMA_TEMPLATE, and content may
# also be a list of {type: text|image} parts (an image part becomes mtmd's marker and a newline, as LLaVA places it).
# Two departures serve servers that render it themselves. llama-cpp-python's MTMDChatHandler passes eos_token as
# detokenize([eos]), which is "" for a control token, so the separators are written as TinyLlama's "</s>" (the same
# bytes the app renders; mtmd parses it back to EOS). And that handler turns an image part into a text part holding
# just the marker before rendering, so such a part gets the image's newline too. Without either, its prompt is not
# the one the pair was trained on and the follow-up "What shape is it?" was answered "It is red.".
DEMO_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['content'] is string %}\n"
    "{% set content = message['content'] %}\n"
    "{% else %}\n"
    "{% set ns = namespace(text='') %}\n"
    "{% for part in message['content'] %}\n"
    "{% if part['type'] == 'text' and part['text'] != '" + IMAGE_MARKER + "' %}\n"
    "{% set ns.text = ns.text + part['text'] %}\n"
    "{% else %}\n"
    "{% set ns.text = ns.text + '" + IMAGE_MARKER + "\\n' %}\n"
    "{% endif %}\n"
    "{% endfor %}\n"
    "{% set content = ns.text %}\n"
    "{% endif %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\\n' + content + '</s>' }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\\n' + content + '</s>' }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\\n'  + content + '</s>' }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}"
)
assert TINYLLAMA_TEMPLATE  # the layout above follows it line for line

TEXT = TextConfig(n_embd=128, n_layer=3, n_head=4, n_head_kv=2, n_ff=256, n_vocab=0)
VISION = VisionConfig(
    image_size=32, patch_size=8, n_embd=64, n_ff=128, n_layer=3, n_head=4, mean=CLIP_MEAN, std=CLIP_STD,
    use_gelu=False,
)  # fmt: skip
N_IMG = VISION.n_patches  # image embeddings per image


def _words() -> list[str]:
    text = DEFAULT_SYSTEM_PROMPT + " " + " ".join(
        q for qs in ds._QUESTIONS.values() for q in qs
    )
    text += " is the shape it a there on in at of " + " ".join(ds.SHAPES) + " " + " ".join(ds.COLOURS)
    text += " left right top bottom centre center middle yes no this that what where which colour color see"
    text += " image picture photo camera you do does can tell me how many"
    from models.make_test_models import _WORDS

    words = {w.strip(".,?!'") for w in text.replace("'", " ").split()} | set(_WORDS)
    return sorted(w for w in words if w)


_CAPITALISED = {"it", "yes", "no", "a", "what", "where", "which", "is", "the", "there", "this", "describe"}


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """unk, bos, eos, 256 byte tokens, then pieces: every word with all its prefixes (llama.cpp's SPM merges only
    adjacent symbols whose concatenation is a piece), with and without the leading space mark."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    pieces: dict[str, None] = {}
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    for p in ["▁", *chars, *"0123456789", *".,?!:;'\"()-/<>|\n", "\n\n", "<|", "|>", "▁\n"]:
        pieces[p] = None
    for word in _words():
        for variant in (word, word.capitalize()) if word in _CAPITALISED else (word,):
            for k in range(1, len(variant) + 1):
                pieces["▁" + variant[:k]] = None
                pieces[variant[:k]] = None
    for word in ("user", "system", "assistant"):
        for k in range(1, len(word) + 1):
            pieces[word[:k]] = None
    normal = list(pieces)
    tokens += normal
    types += [gguf.TokenType.NORMAL] * len(normal)
    scores = [0.0] * 259 + [float(len(p)) - i * 1e-6 for i, p in enumerate(normal)]
    return tokens, scores, [int(t) for t in types]


# --- files ---------------------------------------------------------------------------------------------------------


def write_text_gguf(path: Path, p: dict[str, np.ndarray], cfg: TextConfig) -> Path:
    from models.gguf_writing import add_spm_tokenizer, add_text_header, gguf_file

    tokens, scores, types = vocabulary()
    with gguf_file(path, "llama") as w:
        add_text_header(
            w, name="LlavaCam demo - colours and shapes", n_ctx_train=2048, n_embd=cfg.n_embd,
            n_layer=cfg.n_layer, n_ff=cfg.n_ff, n_head=cfg.n_head, n_head_kv=cfg.n_head_kv, eps=cfg.eps,
        )  # fmt: skip
        w.add_description("Trained by models/train_test_model.py on synthetic scenes of one coloured shape.")
        w.add_rope_dimension_count(cfg.n_embd // cfg.n_head)
        add_spm_tokenizer(w, tokens, scores, types, eos=2, add_bos=True, chat_template=DEMO_TEMPLATE)
        for name in _text_names(cfg):
            w.add_tensor(name, np.ascontiguousarray(p[name], dtype=np.float32))
    return path


def write_mmproj_gguf(path: Path, p: dict[str, np.ndarray], cfg: VisionConfig, text_n_embd: int) -> Path:
    from models.gguf_writing import add_clip_header, gguf_file

    with gguf_file(path, "clip") as w:
        add_clip_header(
            w, "mlp", name="LlavaCam demo - colours and shapes mmproj", image_size=cfg.image_size,
            patch_size=cfg.patch_size, n_embd=cfg.n_embd, n_ff=cfg.n_ff, n_layer=cfg.n_layer, n_head=cfg.n_head,
            projection_dim=text_n_embd, eps=cfg.eps, mean=cfg.mean, std=cfg.std, llava_projector=True,
            use_gelu=cfg.use_gelu,
        )  # fmt: skip
        for name in _vision_names(cfg):
            w.add_tensor(name, np.ascontiguousarray(p[name], dtype=np.float32))
    return path


def _text_names(cfg: TextConfig) -> list[str]:
    names = ["token_embd.weight", "output_norm.weight", "output.weight"]
    for i in range(cfg.n_layer):
        names += [f"blk.{i}.{n}.weight" for n in ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                   "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")]  # fmt: skip
    return names


def _vision_names(cfg: VisionConfig) -> list[str]:
    names = ["v.patch_embd.weight", "v.class_embd", "v.position_embd.weight", "v.pre_ln.weight", "v.pre_ln.bias"]
    for i in range(cfg.n_layer):
        for part in ("attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2", "ffn_up", "ffn_down"):
            names += [f"v.blk.{i}.{part}.weight", f"v.blk.{i}.{part}.bias"]
    return names + ["mm.0.weight", "mm.0.bias", "mm.2.weight", "mm.2.bias"]


def init_params(rng: np.random.Generator, text: TextConfig, vision: VisionConfig) -> dict[str, np.ndarray]:
    def mat(rows: int, cols: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * scale / np.sqrt(cols)).astype(np.float32)

    e, hd, v = text.n_embd, text.n_embd // text.n_head, text.n_vocab
    deep = 1.0 / np.sqrt(2 * text.n_layer)
    p: dict[str, np.ndarray] = {
        "token_embd.weight": (rng.standard_normal((v, e)) * 0.5).astype(np.float32),
        "output_norm.weight": np.ones(e, np.float32),
        "output.weight": mat(v, e, 0.5),
    }
    for i in range(text.n_layer):
        b = f"blk.{i}."
        p[b + "attn_norm.weight"] = np.ones(e, np.float32)
        p[b + "ffn_norm.weight"] = np.ones(e, np.float32)
        p[b + "attn_q.weight"] = mat(e, e)
        p[b + "attn_k.weight"] = mat(hd * text.n_head_kv, e)
        p[b + "attn_v.weight"] = mat(hd * text.n_head_kv, e)
        p[b + "attn_output.weight"] = mat(e, e, deep)
        p[b + "ffn_gate.weight"] = mat(text.n_ff, e)
        p[b + "ffn_up.weight"] = mat(text.n_ff, e)
        p[b + "ffn_down.weight"] = mat(e, text.n_ff, deep)
    ve, ps = vision.n_embd, vision.patch_size
    p["v.patch_embd.weight"] = (rng.standard_normal((ve, 3, ps, ps)) / np.sqrt(3 * ps * ps)).astype(np.float32)
    p["v.class_embd"] = (rng.standard_normal(ve) * 0.1).astype(np.float32)
    p["v.position_embd.weight"] = (rng.standard_normal((vision.n_patches + 1, ve)) * 0.1).astype(np.float32)
    p["v.pre_ln.weight"] = np.ones(ve, np.float32)
    p["v.pre_ln.bias"] = np.zeros(ve, np.float32)
    for i in range(vision.n_layer):
        b = f"v.blk.{i}."
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            p[b + part + ".weight"] = mat(ve, ve)
            p[b + part + ".bias"] = np.zeros(ve, np.float32)
        for norm in ("ln1", "ln2"):
            p[b + norm + ".weight"] = np.ones(ve, np.float32)
            p[b + norm + ".bias"] = np.zeros(ve, np.float32)
        p[b + "ffn_up.weight"] = mat(vision.n_ff, ve)
        p[b + "ffn_up.bias"] = np.zeros(vision.n_ff, np.float32)
        p[b + "ffn_down.weight"] = mat(ve, vision.n_ff, 0.5)
        p[b + "ffn_down.bias"] = np.zeros(ve, np.float32)
    p["mm.0.weight"] = mat(e, ve)
    p["mm.0.bias"] = np.zeros(e, np.float32)
    p["mm.2.weight"] = mat(e, e)
    p["mm.2.bias"] = np.zeros(e, np.float32)
    return p


# --- data ----------------------------------------------------------------------------------------------------------


class Tokenizer:
    """llama.cpp's own tokenizer on the vocabulary of a written text GGUF (special tokens parsed, no BOS)."""

    def __init__(self, text_gguf: Path) -> None:
        import llama_cpp

        self._llm = llama_cpp.Llama(str(text_gguf), vocab_only=True, verbose=False)
        self._cache: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        cached = self._cache.get(text)
        if cached is None:
            cached = self._cache[text] = list(self._llm.tokenize(text.encode(), add_bos=False, special=True))
        return cached

    def answer(self, before: str, answer: str) -> list[int]:
        """The answer's tokens as the model must generate them after the prompt text `before`."""
        head, full = self(before), self(before + answer)
        if full[: len(head)] != head:
            raise RuntimeError(f"tokenizing {answer!r} after the prompt changes the prompt's own tokens")
        return full[len(head) :]


def render(turns: list[tuple[str, bool, str | None]]) -> str:
    """The engine's prompt text: system prompt, then user turns (image first), answers as the engine stores them."""
    from app.core.inference.templates import ChatMessage, ChatTemplate

    template = ChatTemplate(DEMO_TEMPLATE, "gguf")
    messages = []
    for q, has_image, a in turns:
        messages.append(ChatMessage("user", q, image=has_image))
        if a is not None:
            messages.append(ChatMessage("assistant", a))
    return template.render_with_system_fallback(DEFAULT_SYSTEM_PROMPT, messages, add_generation_prompt=True)


def conversation_tokens(
    tok: Tokenizer, turns: list[tuple[str, bool, str]]
) -> tuple[list[int], list[int], list[bool]]:
    """Token ids (-1 for an image slot), image index per slot (-1 for text), and which positions are trained.

    Segment by segment as the engine builds it: BOS; text before each image (mtmd tokenizes it on its own); the
    image; the rest of the prompt; then the answer's own tokens and EOS; the next turn's text starts after them.
    """
    ids: list[int] = [1]
    img: list[int] = [-1]
    target: list[bool] = [False]
    done: list[tuple[str, bool, str | None]] = []
    pos = 0
    n_images = 0
    eos_pending = False  # an answer's EOS is the first token of the next turn's text (the template writes it)

    def text(tokens: list[int]) -> None:
        nonlocal eos_pending
        for t in tokens:
            if eos_pending and t != 2:
                raise RuntimeError("the text after an answer must start with EOS")
            ids.append(t)
            img.append(-1)
            target.append(eos_pending)
            eos_pending = False

    for q, has_image, a in turns:
        prompt = render([*done, (q, has_image, None)])
        parts = prompt[pos:].split(IMAGE_MARKER)
        for part in parts[:-1]:
            text(tok(part))  # mtmd tokenizes the text before the image on its own
            for j in range(N_IMG):
                ids.append(-1)
                img.append(n_images * N_IMG + j)
                target.append(False)
            n_images += 1
        tail = parts[-1]
        text(tok(tail))
        # the generation prompt ends '<|assistant|>\n'; a past answer renders as '<|assistant|>\n' + answer + EOS
        for t in tok.answer(tail, a):
            ids.append(t)
            img.append(-1)
            target.append(True)
        eos_pending = True
        done.append((q, has_image, a))
        pos = len(prompt) + len(a)
    ids.append(2)
    img.append(-1)
    target.append(True)
    return ids, img, target


def frame(scene: ds.Scene, rng: random.Random) -> np.ndarray:
    """The encoder's 32x32 input for a scene, through the engine's own downscale and a letterbox."""
    rgb = ds.draw(scene, rng)
    pic = load_image(rgb, max_side=2 * VISION.image_size)
    arr = np.frombuffer(pic.pixels, np.uint8).reshape(pic.height, pic.width, 3)
    return letterbox(arr, VISION.image_size)


# Colour is learnt first; shape, position and yes/no need more examples (weights per demo_scenes.KINDS, then the
# two training-only kinds below). Shapes in letterboxed frames (about 7 px across) and yes/no as a follow-up were
# the last cells under 95 %, hence the most weight on shape and yes/no, and more non-square frames and follow-ups.
KIND_WEIGHTS = (1.0, 6.0, 3.0, 5.0, 1.0, 1.5, 0.7)
SQUARE_FRAMES = 0.3
FOLLOW_UPS = 0.55  # of conversations; NEW_FRAMES more ask about a second frame in the same chat
NEW_FRAMES = 0.2
# of the follow-up conversations, a third question about the same frame: people ask on, and a pair trained on two
# turns answered the third at random (a reopened chat's next question is a third turn)
THIRD_TURNS = 0.4
# Training-only kinds that make the first answer token depend on the image ("colour?" -> "red.") and on the
# question's own word ("red?" -> "red."). A yes/no answer is decided at that token from both; without these, neither
# is there to compare (the other answers start "It is"), and yes/no stayed at chance for thousands of steps.
AUX_KINDS = ("name", "echo")


def _kind(rng: random.Random) -> str:
    return rng.choices((*ds.KINDS, *AUX_KINDS), weights=KIND_WEIGHTS)[0]


def _question(kind: str, scene: ds.Scene, rng: random.Random) -> tuple[str, str]:
    if kind == "name":
        topic = rng.choice(("colour", "shape", "position"))
        value = {"colour": scene.colour, "shape": scene.shape, "position": scene.position}[topic]
        return {"colour": "colour?", "shape": "shape?", "position": "where?"}[topic], f"{value}."
    if kind == "echo":
        value = rng.choice([*ds.COLOURS, *ds.SHAPES, *ds.POSITIONS])
        return f"{value}?", f"{value}."
    return ds.question(kind, scene, rng)


def make_examples(tok: Tokenizer, seeds: range, max_len: int) -> dict[str, np.ndarray]:
    n = len(seeds)
    ids = np.zeros((n, max_len), np.int32)
    img = np.full((n, max_len), -1, np.int32)
    tgt = np.zeros((n, max_len), np.float32)
    nxt = np.zeros((n, max_len), np.int32)
    pixels = np.zeros((n, 2, VISION.image_size, VISION.image_size, 3), np.uint8)
    for row, seed in enumerate(seeds):
        rng = random.Random(seed)
        scene = ds.random_scene(rng, square=rng.random() < SQUARE_FRAMES)
        pixels[row, 0] = frame(scene, rng)
        first_q, first_a = _question(_kind(rng), scene, rng)
        convo: list[tuple[str, bool, str]] = [(first_q, True, first_a)]
        r = rng.random()
        if r < FOLLOW_UPS:  # a follow-up about the same frame
            q, a = _question(_kind(rng), scene, rng)
            convo.append((q, False, a))
            if rng.random() < THIRD_TURNS:
                q, a = _question(_kind(rng), scene, rng)
                convo.append((q, False, a))
        elif r < FOLLOW_UPS + NEW_FRAMES:  # a new frame in the same chat
            other = ds.random_scene(rng, square=rng.random() < SQUARE_FRAMES)
            pixels[row, 1] = frame(other, rng)
            q, a = _question(_kind(rng), other, rng)
            convo.append((q, True, a))
        seq, slots, trained = conversation_tokens(tok, convo)
        if len(seq) + 1 > max_len:
            raise RuntimeError(f"conversation of {len(seq)} tokens exceeds {max_len}")
        # inputs are positions 0..n-2, targets the next token; a trained position predicts a trained token
        seq_arr = np.array(seq)
        ids[row, : len(seq)] = np.maximum(seq_arr, 0)
        img[row, : len(seq)] = slots
        nxt[row, : len(seq) - 1] = np.maximum(seq_arr[1:], 0)
        tgt[row, : len(seq) - 1] = np.array(trained[1:], np.float32)
    return {"ids": ids, "img": img, "tgt": tgt, "next": nxt, "pixels": pixels}


def shared_prefix(*sets: dict[str, np.ndarray]) -> np.ndarray:
    """The token ids every conversation starts with before its first image (BOS, system prompt, '<|user|>')."""
    first = sets[0]["ids"][0]
    n = int(np.argmax(sets[0]["img"][0] >= 0))
    for d in sets:
        same = (d["ids"][:, :n] == first[:n]).all(0) & (d["img"][:, :n] < 0).all(0)
        n = int(np.argmin(same)) if not same.all() else n
    return first[:n].copy()


def split_off_prefix(d: dict[str, np.ndarray], n_prefix: int) -> dict[str, np.ndarray]:
    """The conversations after the shared prefix, with each one's trained positions listed (K per row, padded).

    The prefix is a third of every sequence and the same for all, so the trainer runs it once per step; and only
    the trained positions (the answers, about one in ten) need the vocabulary-wide output projection.
    """
    tgt = d["tgt"][:, n_prefix:]
    if d["tgt"][:, :n_prefix].any():
        raise RuntimeError("a trained position inside the shared prefix")
    k = int(tgt.sum(1).max())
    pos = np.zeros((len(tgt), k), np.int32)
    mask = np.zeros((len(tgt), k), np.float32)
    for row, t in enumerate(tgt):
        where = np.nonzero(t)[0]
        pos[row, : len(where)] = where
        mask[row, : len(where)] = 1.0
    nxt = np.take_along_axis(d["next"][:, n_prefix:], pos, 1)
    used = (d["ids"][:, n_prefix:] != 0) | (d["img"][:, n_prefix:] >= 0)  # padding: id 0 and no image slot
    length = used.shape[1] - np.argmax(used[:, ::-1], 1)
    return {"ids": d["ids"][:, n_prefix:], "img": d["img"][:, n_prefix:], "pixels": d["pixels"], "pos": pos,
            "next": nxt, "mask": mask, "length": length.astype(np.int32)}  # fmt: skip


def length_buckets(lengths: np.ndarray, n_buckets: int = 3) -> list[tuple[int, np.ndarray]]:
    """Rows grouped by length (each group padded to its longest, rounded up to 8): a one-turn chat is half the
    length of a three-turn one, and a batch padded to the longest of the whole set spent a third on padding."""
    order = np.argsort(lengths, kind="stable")
    out = []
    for part in np.array_split(order, n_buckets):
        if len(part):
            out.append((int(-(-lengths[part].max() // 8) * 8), part))
    return out


# --- training ------------------------------------------------------------------------------------------------------


def train(
    out: Path, *, minutes: float, seed: int, batch: int, resume: Path | None = None, lr: float = 1e-3,
    clip: float = 1.0, focal: float = 2.0, examples: int = 24_000, log: Any = sys.stdout,
) -> None:
    import jax
    import jax.numpy as jnp

    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    tokens, _, _ = vocabulary()
    text_cfg = TextConfig(**{**TEXT.__dict__, "n_vocab": len(tokens)})
    params = init_params(np.random.default_rng(seed), text_cfg, VISION)
    if resume is not None:  # go on from a written pair (Adam's moments start again)
        from models.llava_numpy import load_text, load_vision

        params.update(load_text(resume / TEXT_NAME)[0])
        params.update(load_vision(resume / MMPROJ_NAME)[0])
    text_path = write_text_gguf(out / TEXT_NAME, params, text_cfg)
    tok = Tokenizer(text_path)
    max_len = 160
    print(f"vocab {len(tokens)}; building data", file=log, flush=True)
    data = make_examples(tok, range(seed * 100_000, seed * 100_000 + examples), max_len)
    held = make_examples(tok, range(ds.TRAIN_SEED_LIMIT - 1000, ds.TRAIN_SEED_LIMIT), max_len)
    prefix = shared_prefix(data, held)
    data, held = split_off_prefix(data, len(prefix)), split_off_prefix(held, len(prefix))
    buckets = length_buckets(data["length"])
    print(f"data ready in {time.time() - started:.0f}s; shared prefix {len(prefix)} tokens, then "
          f"{', '.join(f'{len(rows)} of <= {n}' for n, rows in buckets)}", file=log, flush=True)  # fmt: skip

    def forward(p: dict[str, Any], past: Any, ids: Any, img: Any, pixels: Any, pos: Any) -> Any:
        embs = jax.vmap(
            lambda px: image_embeddings(p, normalise(px, VISION, jnp), VISION, jnp, round_f16=False)
        )(pixels).reshape(-1, text_cfg.n_embd)
        x = jnp.where((img >= 0)[:, None], embs[jnp.maximum(img, 0)], p["token_embd.weight"][ids])
        hidden, _ = text_forward(p, x, text_cfg, jnp, past=past)
        return hidden[pos] @ p["output.weight"].T  # logits at the trained positions only

    def batch_logits(p: dict[str, Any], b: dict[str, Any]) -> Any:
        _, past = text_forward(p, p["token_embd.weight"][jnp.asarray(prefix)], text_cfg, jnp)
        return jax.vmap(lambda i, m, px, q: forward(p, past, i, m, px, q))(b["ids"], b["img"], b["pixels"], b["pos"])

    def loss_fn(p: dict[str, Any], b: dict[str, Any]) -> Any:
        logp = jax.nn.log_softmax(batch_logits(p, b), -1)
        nll = -jnp.take_along_axis(logp, b["next"][..., None], -1)[..., 0]
        # focal weighting: most answer tokens ("It", "is", ".") are learnt at once; what is left to learn is the
        # one word that depends on the image (a yes/no decision, a shape), which plain NLL dilutes to a plateau
        weight = (1.0 - jnp.exp(-nll)) ** focal if focal else 1.0
        return (nll * weight * b["mask"]).sum() / b["mask"].sum()

    @jax.jit
    def step(p: Any, m: Any, v: Any, b: Any, lr: Any, t: Any) -> Any:
        loss, g = jax.value_and_grad(loss_fn)(p, b)
        # clip the global gradient norm: without it Adam jumped out of what it was learning (held-out answers fell)
        norm = jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(g)))
        g = jax.tree.map(lambda g_: g_ * jnp.minimum(1.0, clip / (norm + 1e-6)), g)
        m = jax.tree.map(lambda m_, g_: 0.9 * m_ + 0.1 * g_, m, g)
        v = jax.tree.map(lambda v_, g_: 0.999 * v_ + 0.001 * g_ * g_, v, g)
        p = jax.tree.map(
            lambda p_, m_, v_: p_ - lr * (m_ / (1 - 0.9**t)) / (jnp.sqrt(v_ / (1 - 0.999**t)) + 1e-8), p, m, v
        )
        return p, m, v, loss

    @jax.jit
    def exact(p: Any, b: Any) -> Any:
        wrong = ((batch_logits(p, b).argmax(-1) != b["next"]) & (b["mask"] > 0)).any(-1)
        return 1.0 - wrong.mean()

    def batch_of(rows: dict[str, np.ndarray], idx: np.ndarray, width: int) -> dict[str, Any]:
        # the token-wide arrays are cut to the bucket's width; "length" only chose the bucket
        return {k: jnp.asarray(x[idx, :width] if k in ("ids", "img") else x[idx]) for k, x in rows.items()
                if k != "length"}  # fmt: skip

    jp = {k: jnp.asarray(v) for k, v in params.items()}
    m = jax.tree.map(jnp.zeros_like, jp)
    v = jax.tree.map(jnp.zeros_like, jp)
    rng = np.random.default_rng(seed)
    held_len = int(held["length"][:400].max())
    held_b = batch_of(held, np.arange(min(400, len(held["length"]))), held_len)
    weights = np.array([len(rows) for _, rows in buckets], np.float64)
    budget = minutes * 60
    t = 0
    good = 0
    while True:
        t += 1
        width, rows = buckets[rng.choice(len(buckets), p=weights / weights.sum())]
        idx = rows[rng.integers(0, len(rows), batch)]
        b = batch_of(data, idx, width)
        elapsed = time.time() - started
        # cosine decay over the time budget: a constant rate left the last words noisy (held-out answers
        # flickered between right and wrong from one checkpoint to the next)
        rate = lr * min(1.0, t / 100) * max(0.03, 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget))))
        jp, m, v, loss = step(jp, m, v, b, jnp.float32(rate), jnp.float32(t))
        if t % 50 == 0:
            acc = float(exact(jp, held_b))
            print(f"step {t} loss {float(loss):.4f} held-out exact {acc:.4f} {elapsed:.0f}s", file=log, flush=True)
            good = good + 1 if acc >= 0.998 else 0
            if t % 200 == 0 or good >= 3 or elapsed > budget:
                save(out, {k: np.asarray(x) for k, x in jp.items()}, text_cfg)
            if good >= 3 or elapsed > budget:
                break
    print(f"done in {time.time() - started:.0f}s after {t} steps", file=log, flush=True)


def save(out: Path, params: dict[str, np.ndarray], text_cfg: TextConfig) -> None:
    write_text_gguf(out / TEXT_NAME, params, text_cfg)
    write_mmproj_gguf(out / MMPROJ_NAME, params, VISION, text_cfg.n_embd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write the pair into")
    parser.add_argument("--minutes", type=float, default=95.0, help="stop after this long even if not converged")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip")
    parser.add_argument("--focal", type=float, default=2.0, help="focal-loss exponent (0: plain NLL)")
    parser.add_argument("--resume", type=Path, default=None, help="start from the pair in this folder")
    parser.add_argument("--examples", type=int, default=60_000, help="training conversations drawn for this run")
    args = parser.parse_args(argv)
    train(
        args.out, minutes=args.minutes, seed=args.seed, batch=args.batch, resume=args.resume, lr=args.lr,
        clip=args.clip, focal=args.focal, examples=args.examples,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
