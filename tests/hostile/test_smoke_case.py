"""A hostile case handled today: a file that is not a GGUF at all is refused with one line naming it."""

from __future__ import annotations

import pytest

from app.core.errors import ModelFileError
from app.core.models.modelfile import inspect_text_model


def test_html_saved_as_a_model_file_is_refused_naming_the_file(tmp_path):
    page = tmp_path / "model.gguf"
    page.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(ModelFileError) as info:
        inspect_text_model(page)
    message = str(info.value)
    assert "model.gguf" in message
    assert "\n" not in message
