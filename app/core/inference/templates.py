"""Chat templates: the model's own `tokenizer.chat_template`, or a built-in one chosen by model family.

Rendering follows Hugging Face semantics (sandboxed Jinja, `trim_blocks`, `lstrip_blocks`). The image is placed
as LLaVA's training preprocessing places it: at the start of the user turn, then a newline, then the question.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

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


class TemplateError(ValueError):
    """The chat template could not be rendered."""


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


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
        if family and family != "auto":
            if family not in BUILTIN_TEMPLATES:
                raise TemplateError(
                    f"unknown template family {family!r}; choose one of: auto, {', '.join(BUILTIN_TEMPLATES)}"
                )
            return cls(BUILTIN_TEMPLATES[family], family, bos_token, eos_token)
        if gguf_template and gguf_template.strip():
            return cls(gguf_template, "gguf", bos_token, eos_token)
        guessed = guess_family(*model_names)
        return cls(BUILTIN_TEMPLATES[guessed], guessed, bos_token, eos_token)

    def render(self, messages: Sequence[ChatMessage], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for `messages`, with the BOS token text left to the tokenizer."""
        try:
            compiled = _compile(self.source)
            text = compiled.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError:
            raise
        except Exception as exc:  # jinja2 raises many types; the user needs one message
            raise TemplateError(f"the model's chat template failed to render: {exc}") from exc
        return str(text)

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
            first = ChatMessage("user", f"{system}\n\n{turns[0].content}")
            return self.render([first, *turns[1:]], add_generation_prompt=add_generation_prompt)

    @property
    def starts_with_bos_text(self) -> bool:
        """Whether the template writes the BOS itself (then the tokenizer must not add another)."""
        return "bos_token" in self.source


def _raise_exception(message: str) -> Any:
    raise TemplateError(message)


@lru_cache(maxsize=16)
def _compile(source: str) -> Any:
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception

    def strftime_now(fmt: str) -> str:
        import datetime

        return datetime.datetime.now().strftime(fmt)

    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the chat template is not valid Jinja: {exc}") from exc
