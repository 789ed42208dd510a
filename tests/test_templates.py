"""Chat templates: the TinyLlama prompt must be byte-exact; Vicuna never for TinyLlama."""

from __future__ import annotations

import pytest

from app.core.inference.stops import AnswerText, StopMatcher
from app.core.inference.templates import (
    DEFAULT_SYSTEM_PROMPT,
    IMAGE_MARKER,
    TINYLLAMA_TEMPLATE,
    ChatMessage,
    ChatTemplate,
    TemplateError,
    guess_family,
    user_content,
)
from models.families import SMOLVLM2_TEMPLATE

EXPECTED_FIRST_TURN = (
    f"<|system|>\n{DEFAULT_SYSTEM_PROMPT}</s>\n<|user|>\n{IMAGE_MARKER}\nWhat is this?</s>\n<|assistant|>\n"
)


def first_turn(template: ChatTemplate) -> str:
    return template.render(
        [ChatMessage("system", DEFAULT_SYSTEM_PROMPT), ChatMessage("user", user_content("What is this?", True))]
    )


def test_builtin_tinyllama_first_turn_is_byte_exact():
    assert first_turn(ChatTemplate.for_model(None, family="tinyllama")) == EXPECTED_FIRST_TURN


def test_gguf_template_of_the_tiny_model_gives_the_same_prompt(tiny_models):
    from app.core.models.modelfile import inspect_text_model

    info = inspect_text_model(tiny_models.text)
    template = ChatTemplate.for_model(info.chat_template)
    assert template.family == "gguf"
    assert first_turn(template) == EXPECTED_FIRST_TURN


def test_default_system_prompt_is_the_original_apps():
    assert DEFAULT_SYSTEM_PROMPT == (
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."
    )


@pytest.mark.parametrize("name", ["TinyLlama-1.1B-Chat", "tinyllava-1.1B.Q4_k_m.gguf", "mmproj-tinymodel-f16"])
def test_tinyllama_models_never_get_vicuna(name):
    template = ChatTemplate.for_model(None, model_names=[name])
    assert template.family == "tinyllama"
    assert "USER:" not in first_turn(template)


def test_vicuna_only_for_vicuna_models():
    assert guess_family("llava-v1.5-7b") == "vicuna"
    assert guess_family("SmolVLM-500M-Instruct") == "chatml"


def test_follow_up_render_extends_the_first_turn_prompt():
    template = ChatTemplate.for_model(TINYLLAMA_TEMPLATE)
    messages = [ChatMessage("system", "S"), ChatMessage("user", user_content("Q1", True))]
    first = template.render(messages)
    second = template.render([*messages, ChatMessage("assistant", "A1"), ChatMessage("user", "Q2")])
    assert second.startswith(first + "A1</s>\n<|user|>\nQ2</s>\n<|assistant|>\n")


def test_template_without_system_role_folds_system_into_first_user_turn():
    strict = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        "[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    )
    template = ChatTemplate.for_model(strict)
    text = template.render_with_system_fallback("Be brief.", [ChatMessage("user", "Hi")])
    assert text == "[user]Be brief.\n\nHi"


def test_broken_template_is_a_clear_error():
    with pytest.raises(TemplateError, match="not valid Jinja"):
        ChatTemplate.for_model("{% for %}").render([ChatMessage("user", "x")])
    with pytest.raises(TemplateError, match="unknown template family"):
        ChatTemplate.for_model(None, family="klingon")


def test_stop_matcher_holds_back_partial_stop_strings():
    matcher = StopMatcher(["<|user|>"])
    assert matcher.feed("Hello <|") == ("Hello ", False)
    assert matcher.feed("us") == ("", False)
    assert matcher.feed("er|> more") == ("", True)
    other = StopMatcher(["<|user|>"])
    assert other.feed("a <|") == ("a ", False)
    assert other.feed("b") == ("<|b", False)
    assert other.flush() == ""


def test_utf8_split_across_tokens_is_held_until_complete():
    text = AnswerText()
    assert text.feed(b" caf") == ("caf", False), "the first word's SentencePiece space is dropped"
    assert text.feed(b"\xc3") == ("", False), "half a character is held back"
    assert text.feed(b"\xa9 ok") == ("\u00e9 ok", False)
    assert text.close(stopped=False) == ""
    assert text.shown == "caf\u00e9 ok"
    assert text.raw == " caf\u00e9 ok"


def test_answer_text_cuts_at_a_stop_string_spanning_tokens():
    text = AnswerText(["</answer>"])
    assert text.feed(b"Yes.</ans") == ("Yes.", False)
    assert text.feed(b"wer> more") == ("", True)
    assert text.close(stopped=True) == ""
    assert text.shown == "Yes."


def test_invalid_bytes_become_replacement_characters_not_errors():
    text = AnswerText()
    text.feed(b"a\xff")
    assert text.close(stopped=False) == ""
    assert text.shown == "a\ufffd"




def test_parts_template_gets_lists_of_parts_and_the_marker_where_it_puts_the_image():
    template = ChatTemplate.for_model(SMOLVLM2_TEMPLATE)
    assert template.uses_parts
    assert template.image_text == "<image>"
    text = template.render_with_system_fallback(
        "Be brief.", [ChatMessage("user", "What is this?", image=True), ChatMessage("assistant", "A cup.")]
    )
    assert text == (
        "<|im_start|>System: Be brief.<end_of_utterance>\n"
        f"User:{IMAGE_MARKER}What is this?<end_of_utterance>\n"
        "Assistant: A cup.<end_of_utterance>\nAssistant:"
    )


def test_string_templates_are_not_given_parts():
    for family in ("tinyllama", "vicuna", "chatml"):
        template = ChatTemplate.for_model(None, family=family)
        assert not template.uses_parts
        rendered = template.render([ChatMessage("user", "What is this?", image=True)])
        assert f"{IMAGE_MARKER}\nWhat is this?" in rendered
        assert "'type'" not in rendered


def test_typed_image_text_does_not_open_an_image_slot():
    template = ChatTemplate.for_model(SMOLVLM2_TEMPLATE)
    text = template.render([ChatMessage("user", "what is <image> here?", image=False)])
    assert IMAGE_MARKER not in text
    assert "<image>" not in text


def test_parts_template_that_drops_image_parts_gets_the_marker_as_text():
    text_only = (
        "{% for m in messages %}[{{ m['role'] }}]{% for p in m['content'] %}"
        "{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}{% endfor %}"
    )
    template = ChatTemplate.for_model(text_only)
    assert template.uses_parts
    assert template.image_text == ""
    assert template.render([ChatMessage("user", "Q", image=True)]) == f"[user]{IMAGE_MARKER}Q"


def test_one_list_of_template_families():
    from app.core.inference.templates import BUILTIN_TEMPLATES, TEMPLATE_FAMILIES
    from app.core.models import catalog

    assert ("auto", *BUILTIN_TEMPLATES) == TEMPLATE_FAMILIES
    assert catalog.TEMPLATE_FAMILIES is TEMPLATE_FAMILIES
