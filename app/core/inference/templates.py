"""Chat templates: the model's own `tokenizer.chat_template`, or a built-in one chosen by model family.

Rendering follows Hugging Face semantics (sandboxed Jinja, `trim_blocks`, `lstrip_blocks`). Two kinds of template:

- Plain-string templates (TinyLlama's Zephyr, Vicuna, ChatML) concatenate `message['content']`: the image goes as
  LLaVA's training preprocessing placed it, at the start of the user turn, then a newline, then the question.
- Templates of modern vision models (SmolVLM, Qwen-VL, Gemma, LFM2, ...) iterate `content` as a list of
  `{type: image|text}` parts and write their own image placeholder (`<image>`, `<start_of_image>`,
  `<|vision_start|><|image_pad|><|vision_end|>`). Those get lists of parts, and whatever the template writes for
  the image part is replaced by llama.cpp's media marker, so the image lands exactly where the template puts it
  (mtmd then adds the model's own wrapper tokens around the image embeddings).

Which kind a template is, and what it writes for an image, is found by rendering a probe conversation once.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from app.core.errors import LlavaCamError

IMAGE_MARKER = "<__media__>"  # llama.cpp's mtmd default media marker

DEFAULT_SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# TinyLlama-1.1B-Chat's Zephyr template, as published in its tokenizer_config.json.
TINYLLAMA_TEMPLATE = (
    "{% for message in messages %}\n"
    "{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n"
    "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n"
    "{{ '<|assistant|>' }}\n"
    "{% endif %}\n"
    "{% endfor %}"
)

# LLaVA-1.5 (Vicuna). Only for Vicuna-based models: never for TinyLlama.
VICUNA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ 'USER: ' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'] + eos_token + '\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

BUILTIN_TEMPLATES: dict[str, str] = {
    "tinyllama": TINYLLAMA_TEMPLATE,
    "vicuna": VICUNA_TEMPLATE,
    "chatml": CHATML_TEMPLATE,
}

# The one list of template choices every front end offers ("auto": the model's own template, else a guess).
TEMPLATE_FAMILIES: tuple[str, ...] = ("auto", *BUILTIN_TEMPLATES)


class TemplateError(LlavaCamError, ValueError):
    """The chat template could not be rendered (a ValueError too, for callers that catch those)."""


# A model's own template is code from the model file: it runs sandboxed and within these limits, so a hostile one
# (nested `range(100000)` loops, `'A' * 4000000000`, doubling a string in a loop) fails fast instead of hanging or
# exhausting memory. Real templates use a tiny fraction of each.
MAX_TEMPLATE_TEXT = 4_000_000  # characters (or items) in any value a template builds, and in its output
MAX_TEMPLATE_STEPS = 2_000_000  # loop iterations, calls, attribute lookups and operators in one render
MAX_TEMPLATE_SECONDS = 5.0


@dataclass(frozen=True)
class ChatMessage:
    """One message. With `image`, `content` is the question alone and the template decides where the image goes."""

    role: str  # "system" | "user" | "assistant"
    content: str
    image: bool = False


def guess_family(*names: str | None) -> str:
    """The built-in template family for a model that carries no template of its own."""
    text = " ".join(n for n in names if n).lower()
    if "tinyllama" in text or "tinyllava" in text or "tiny-llava" in text or "tinymodel" in text:
        return "tinyllama"
    if "qwen" in text or "chatml" in text or "smolvlm" in text:
        return "chatml"
    if "vicuna" in text or "llava-v1.5" in text or "llava-1.5" in text or "llava 1.5" in text:
        return "vicuna"
    # LlavaCam's default model is TinyLlama-based; Zephyr is the safe default for unknown small llamas.
    return "tinyllama"


def user_content(question: str, has_image: bool) -> str:
    """The user turn as LLaVA was trained on it: image first, a newline, then the question."""
    return f"{IMAGE_MARKER}\n{question}" if has_image else question


@dataclass(frozen=True)
class ChatTemplate:
    """A compiled chat template with the tokens it needs."""

    source: str
    family: str  # "gguf" for the model's own template, else a built-in family name
    bos_token: str = "<s>"
    eos_token: str = "</s>"
    model_name: str = ""  # named in errors, so a failing template points at its model

    @classmethod
    def for_model(
        cls,
        gguf_template: str | None,
        *,
        family: str | None = None,
        model_names: Sequence[str | None] = (),
        bos_token: str = "<s>",
        eos_token: str = "</s>",
    ) -> ChatTemplate:
        """Choose the template: an explicit built-in `family` wins, else the GGUF's own, else a guess."""
        name = next((n for n in model_names if n), "")
        if family and family != "auto":
            if family not in BUILTIN_TEMPLATES:
                raise TemplateError(
                    f"unknown template family {family!r}; choose one of: auto, {', '.join(BUILTIN_TEMPLATES)}"
                )
            return cls(BUILTIN_TEMPLATES[family], family, bos_token, eos_token, name)
        if gguf_template and gguf_template.strip():
            return cls(gguf_template, "gguf", bos_token, eos_token, name)
        guessed = guess_family(*model_names)
        return cls(BUILTIN_TEMPLATES[guessed], guessed, bos_token, eos_token, name)

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, with the BOS token text left to the tokenizer."""
        parts, image_text = _probe(self.source, self.bos_token, self.eos_token, self._owner)
        if not parts:
            rendered = [{"role": m.role, "content": user_content(m.content, m.image)} for m in messages]
            return self._render(rendered, add_generation_prompt)
        # A typed-in copy of the template's own image text must not open an image slot.
        clean = [ChatMessage(m.role, m.content.replace(image_text, ""), m.image) for m in messages]
        # A template that drops image parts gets the marker as a text part where the image was (as llama.cpp's
        # server does).
        image_part = None if image_text else {"type": "text", "text": IMAGE_MARKER}
        rendered = [_as_parts(m, image_part) for m in clean]
        text = self._render(rendered, add_generation_prompt)
        return text.replace(image_text, IMAGE_MARKER) if image_text else text

    def render_with_system_fallback(
        self, system: str | None, turns: Sequence[ChatMessage], *, add_generation_prompt: bool = True
    ) -> str:
        """Render with a system message; templates that refuse one get it folded into the first user turn."""
        if not system:
            return self.render(turns, add_generation_prompt=add_generation_prompt)
        try:
            return self.render([ChatMessage("system", system), *turns], add_generation_prompt=add_generation_prompt)
        except TemplateError:
            if not turns or turns[0].role != "user":
                raise
            first = ChatMessage("user", f"{system}\n\n{turns[0].content}", turns[0].image)
            return self.render([first, *turns[1:]], add_generation_prompt=add_generation_prompt)

    @property
    def _owner(self) -> str:
        return f"the chat template of {self.model_name}" if self.model_name else "the model's chat template"

    def _render(self, messages: list[dict[str, Any]], add_generation_prompt: bool) -> str:
        return _render(self.source, messages, add_generation_prompt, self.bos_token, self.eos_token, self._owner)

    @property
    def uses_parts(self) -> bool:
        """Whether the template iterates `content` as a list of `{type: image|text}` parts."""
        return _probe(self.source, self.bos_token, self.eos_token, self._owner)[0]

    @property
    def image_text(self) -> str:
        """What the template writes for an image part (replaced by the media marker); "" for string templates."""
        return _probe(self.source, self.bos_token, self.eos_token, self._owner)[1]

    @property
    def starts_with_bos_text(self) -> bool:
        """Whether the template writes the BOS itself (then the tokenizer must not add another)."""
        return "bos_token" in self.source


def _as_parts(message: ChatMessage, image_part: dict[str, str] | None = None) -> dict[str, Any]:
    parts: list[dict[str, str]] = [image_part or {"type": "image"}] if message.image else []
    parts.append({"type": "text", "text": message.content})
    return {"role": message.role, "content": parts}


def _render(
    source: str,
    messages: list[dict[str, Any]],
    add_generation_prompt: bool,
    bos_token: str,
    eos_token: str,
    owner: str = "the model's chat template",
) -> str:
    """Render within the limits (MAX_TEMPLATE_*): a hostile template fails fast with one clear TemplateError."""
    budget = _Budget()
    _active.budget = budget
    try:
        compiled = _compile(source)
        pieces: list[str] = []
        size = 0
        for piece in compiled.generate(
            messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token
        ):
            size += len(piece)
            if size > MAX_TEMPLATE_TEXT:
                raise _LimitExceeded(f"writes more than {MAX_TEMPLATE_TEXT} characters")
            budget.tick()
            pieces.append(piece)
    except _LimitExceeded as exc:
        raise _TemplateTooCostly(f"{owner} {exc}: the template is broken or hostile; choose a built-in template "
                            "(--template, or Template in Settings)") from None  # fmt: skip
    except TemplateError as exc:
        raise TemplateError(f"{owner}: {exc}") from exc
    except MemoryError:
        raise TemplateError(f"{owner} ran out of memory") from None
    except RecursionError:
        raise TemplateError(f"{owner} recursed too deeply") from None
    except Exception as exc:  # jinja2 raises many types; the user needs one message
        raise TemplateError(f"{owner} failed to render: {exc}") from exc
    finally:
        _active.budget = None
    return "".join(pieces)


_PROBE_TEXT = "\x00probe question\x00"


@lru_cache(maxsize=16)
def _probe(source: str, bos_token: str, eos_token: str, owner: str = "the model's chat template") -> tuple[bool, str]:
    """(whether the template takes lists of parts, what it writes for an image part).

    A string template fails on a list (`'...' + content`) or writes the list's repr; a parts template writes the
    text part once. The image text is the difference between a user turn with and without an image part.
    """

    def render(image: bool) -> str:
        message = _as_parts(ChatMessage("user", _PROBE_TEXT, image))
        return _render(source, [message], False, bos_token, eos_token, owner)

    try:
        without = render(False)
        with_image = render(True)
    except _TemplateTooCostly:
        raise
    except TemplateError:
        return False, ""
    if without.count(_PROBE_TEXT) != 1 or "'type'" in without:
        return False, ""
    # The image text is what differs between the two renders (a template may also change what surrounds it,
    # as SmolVLM's "User:" for "User: "); nothing differing means the template ignores image parts.
    prefix = 0
    limit = min(len(without), len(with_image))
    while prefix < limit and without[prefix] == with_image[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and without[-1 - suffix] == with_image[-1 - suffix]:
        suffix += 1
    added = with_image[prefix : len(with_image) - suffix].strip()
    if not added or _PROBE_TEXT in added:
        return True, ""
    return True, added


def _raise_exception(message: str) -> Any:
    raise TemplateError(message)


class _LimitExceeded(TemplateError):
    pass


class _TemplateTooCostly(TemplateError):
    """A render stopped by the limits: the probe passes it on rather than spend them again."""


class _Budget:
    """What one render may still spend (kept per thread: engines render on their own threads)."""

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_TEMPLATE_SECONDS

    def tick(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_TEMPLATE_STEPS:
            raise _LimitExceeded(f"takes more than {MAX_TEMPLATE_STEPS} steps")
        if self.steps % 256 == 0 and time.monotonic() > self.deadline:
            raise _LimitExceeded(f"runs longer than {MAX_TEMPLATE_SECONDS:g} s")


_active = threading.local()


def _tick(count: int = 1) -> None:
    budget = getattr(_active, "budget", None)
    if budget is not None:
        budget.tick(count)


_HUGE_FORMAT_WIDTH = re.compile(r"[%{:][^%{}]*?\d{7,}")


def _check_arguments(values: Sequence[Any]) -> None:
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_TEMPLATE_TEXT:
            raise _LimitExceeded(f"uses a number above {MAX_TEMPLATE_TEXT} ({str(value)[:20]})")
        if isinstance(value, str) and len(value) < 10_000 and _HUGE_FORMAT_WIDTH.search(value):
            raise _LimitExceeded("asks for a formatting width above the limit")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and len(value) > MAX_TEMPLATE_TEXT:
        raise _LimitExceeded(f"builds a value longer than {MAX_TEMPLATE_TEXT}")
    return value


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


def _limited_range(*args: Any) -> Iterator[int]:
    _check_arguments(args)
    for number in range(*args):
        _tick()
        yield number


def _limited_join(values: Sequence[Any]) -> str:
    from jinja2.runtime import str_join

    total = sum(len(v) for v in values if isinstance(v, str))
    if total > MAX_TEMPLATE_TEXT:
        raise _LimitExceeded(f"builds a string longer than {MAX_TEMPLATE_TEXT} characters")
    _tick()
    return str(str_join(values))


def _limited_filter(function: Any) -> Any:
    @functools.wraps(function)  # keeps jinja's pass_context/pass_environment marks
    def limited(*args: Any, **kwargs: Any) -> Any:
        _tick()
        _check_arguments([*args[1:], *kwargs.values()])
        return _check_size(function(*args, **kwargs))

    return limited


def _environment() -> Any:
    import jinja2.compiler
    import jinja2.sandbox

    class LimitedCodeGenerator(jinja2.compiler.CodeGenerator):
        def visit_Concat(self, node: Any, frame: Any) -> None:  # noqa: N802 (jinja's visitor naming)
            # `a ~ b` would otherwise join unchecked: a loop doubling a string exhausts memory.
            self.write("environment.limited_join((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class LimitedSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
        code_generator_class = LimitedCodeGenerator
        intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _tick()
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
                raise _LimitExceeded("raises a number to a power above 64")
            if operator == "*":
                for sized, count in ((_size(left), right), (_size(right), left)):
                    if sized is not None and isinstance(count, int) and sized * count > MAX_TEMPLATE_TEXT:
                        raise _LimitExceeded(f"builds a value longer than {MAX_TEMPLATE_TEXT}")
            if operator == "+":
                left_size, right_size = _size(left), _size(right)
                if left_size is not None and right_size is not None and left_size + right_size > MAX_TEMPLATE_TEXT:
                    raise _LimitExceeded(f"builds a value longer than {MAX_TEMPLATE_TEXT}")
            if operator == "%" and isinstance(left, str):
                _check_arguments([left])
            return _check_size(super().call_binop(context, operator, left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            _tick()
            owner = getattr(__obj, "__self__", None)
            if isinstance(owner, str):
                _check_arguments([owner[:10_000], *args, *kwargs.values()])
                if getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
                    old, new = str(args[0]), str(args[1])
                    count = owner.count(old) if old else len(owner) + 1
                    if len(owner) + count * (len(new) - len(old)) > MAX_TEMPLATE_TEXT:
                        raise _LimitExceeded(f"builds a value longer than {MAX_TEMPLATE_TEXT}")
            else:
                _check_arguments([*args, *kwargs.values()])
            return _check_size(super().call(__context, __obj, *args, **kwargs))

        def getattr(self, obj: Any, attribute: str) -> Any:
            _tick()
            if isinstance(obj, str) and attribute in ("format", "format_map"):
                _check_arguments([obj[:10_000]])  # the sandbox wraps str.format: check the widths it asks for
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            _tick()
            return super().getitem(obj, argument)

    env = LimitedSandbox(trim_blocks=True, lstrip_blocks=True)
    env.limited_join = _limited_join  # type: ignore[attr-defined]
    env.filters = {name: _limited_filter(function) for name, function in env.filters.items()}
    env.globals["range"] = _limited_range
    return env


@lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    import jinja2

    if len(source) > MAX_TEMPLATE_TEXT:
        raise _LimitExceeded(f"is longer than {MAX_TEMPLATE_TEXT} characters")
    env = _environment()
    env.globals["raise_exception"] = _raise_exception

    def strftime_now(fmt: str) -> str:
        import datetime

        return datetime.datetime.now().strftime(fmt)

    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template is not valid Jinja: {exc}") from exc
