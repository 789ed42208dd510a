"""A model's own chat template is code from the model file: hostile ones fail fast with an error naming the model."""

from __future__ import annotations

import pytest

from app.core.errors import LlavaCamError
from app.core.inference.templates import ChatMessage, ChatTemplate, TemplateError

HOSTILE_TEMPLATES = {
    "nested-range-100000": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "string-times-4-billion": "{{ 'A' * 4000000000 }}",
    "string-doubled-in-a-loop": "{% set ns = namespace(s='AAAA') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
                                "{% endfor %}{{ ns.s }}",
    "list-times-a-million": "{{ ([1] * 1000000) * 1000 }}",
    "center-filter-4-billion": "{{ 'x' | center(4000000000) }}",
    "str-ljust-4-billion": "{{ 'x'.ljust(4000000000) }}",
    "format-width-4-billion": "{{ '{:>4000000000}'.format('x') }}",
    "percent-width-4-billion": "{{ '%4000000000s' % 'x' }}",
    "replace-empty-with-itself": "{% set s = 'A' * 100000 %}{{ s.replace('', s) }}",
    "power-of-a-hundred-million": "{{ 10 ** 100000000 }}",
    "endless-recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "huge-output": "{% for i in range(90000) %}{{ 'A' * 100 }}{% endfor %}",
}


@pytest.mark.parametrize("case", list(HOSTILE_TEMPLATES))
def test_hostile_chat_template_fails_with_an_error_naming_the_model(case):
    template = ChatTemplate(HOSTILE_TEMPLATES[case], "gguf", model_name="evil-model.gguf")
    with pytest.raises(TemplateError) as info:
        template.render([ChatMessage("user", "hi")])
    assert str(info.value).startswith("the chat template of evil-model.gguf ")
    assert isinstance(info.value, LlavaCamError)  # the CLI and the window show it as one clear line


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
