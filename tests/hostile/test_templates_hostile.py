"""A model's own chat template is code from the model file: hostile ones fail fast with an error naming the model."""

from __future__ import annotations

import pytest

from app.core.errors import LlavaCamError
from app.core.inference import templates
from app.core.inference.templates import ChatMessage, ChatTemplate, TemplateError


@pytest.fixture(autouse=True)
def step_limits_decide(monkeypatch):
    """Each case asserts which limit stopped it; on a loaded machine the 5 s clock could stop a case first."""
    monkeypatch.setattr(templates, "MAX_TEMPLATE_SECONDS", 600.0)

# case -> (template, what the error says it did)
HOSTILE_TEMPLATES = {
    "nested-range-100000": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                            "takes more than 2000000 steps"),
    "string-times-4-billion": ("{{ 'A' * 4000000000 }}", "builds a value longer than 4000000"),
    "string-doubled-in-a-loop": ("{% set ns = namespace(s='AAAA') %}{% for i in range(60) %}"
                                 "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
                                 "builds a string longer than 4000000 characters"),
    "list-times-a-million": ("{{ ([1] * 1000000) * 1000 }}", "builds a value longer than 4000000"),
    "center-filter-4-billion": ("{{ 'x' | center(4000000000) }}", "uses a number above 4000000"),
    "str-ljust-4-billion": ("{{ 'x'.ljust(4000000000) }}", "uses a number above 4000000"),
    "format-width-4-billion": ("{{ '{:>4000000000}'.format('x') }}", "asks for a formatting width above the limit"),
    "percent-width-4-billion": ("{{ '%4000000000s' % 'x' }}", "asks for a formatting width above the limit"),
    "replace-empty-with-itself": ("{% set s = 'A' * 100000 %}{{ s.replace('', s) }}",
                                  "builds a value longer than 4000000"),
    "power-of-a-hundred-million": ("{{ 10 ** 100000000 }}", "raises a number to a power above 64"),
    "endless-recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursed too deeply"),
    "huge-output": ("{% for i in range(90000) %}{{ 'A' * 100 }}{% endfor %}", "writes more than 4000000 characters"),
}


@pytest.mark.parametrize("case", list(HOSTILE_TEMPLATES))
def test_hostile_chat_template_fails_with_an_error_naming_the_model(case):
    source, said = HOSTILE_TEMPLATES[case]
    template = ChatTemplate(source, "gguf", model_name="evil-model.gguf")
    with pytest.raises(TemplateError) as info:
        template.render([ChatMessage("user", "hi")])
    assert str(info.value).startswith(f"the chat template of evil-model.gguf {said}")
    assert isinstance(info.value, LlavaCamError)  # the CLI and the window show it as one clear line


def test_a_template_that_runs_past_the_clock_is_stopped(monkeypatch):
    monkeypatch.setattr(templates, "MAX_TEMPLATE_SECONDS", 0.0)
    template = ChatTemplate("{% for i in range(100000) %}{% endfor %}", "gguf", model_name="slow-model.gguf")
    with pytest.raises(TemplateError, match="^the chat template of slow-model.gguf runs longer than 0 s"):
        template.render([ChatMessage("user", "hi")])


def test_template_error_is_one_of_our_errors_for_the_cli():
    template = ChatTemplate("{{ raise_exception('no system role') }}", "gguf", model_name="m.gguf")
    with pytest.raises(LlavaCamError, match="^the chat template of m.gguf: no system role$"):
        template.render([ChatMessage("user", "hi")])


def test_real_template_still_renders_a_long_conversation():
    template = ChatTemplate.for_model(None, family="tinyllama", model_names=("tiny.gguf",))
    messages = [ChatMessage("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(1001)]
    text = template.render(messages)
    assert text.count("<|user|>") == 501
    assert text.endswith("turn 1000</s>\n<|assistant|>\n")
