"""The download plan: the hub's size and SHA-256 shown and checked, free space for the pair, git files' fallback."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from app.core.errors import DownloadError
from app.core.models.store import ModelStore
from tests.support.hub_server import ImitationHub


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    running = ImitationHub().start()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", running.url)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        running.url + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
    yield running
    running.stop()


def hf_catalog(path: Path) -> Path:
    path.write_text('''
[[model]]
id = "tiny"
name = "Tiny test pair"
template = "tinyllama"
[model.text]
hf_repo = "org/tiny-GGUF"
hf_file = "tiny.gguf"
[model.mmproj]
hf_repo = "org/tiny-GGUF"
hf_file = "mmproj-tiny.gguf"
''')
    return path


def test_store_shows_the_size_then_downloads_and_verifies_the_hubs_hash(hub, tmp_path, tiny_models):
    text, mmproj = tiny_models.text.read_bytes(), tiny_models.mmproj.read_bytes()
    hub.add_lfs("org/tiny-GGUF", "tiny.gguf", text)
    hub.add_lfs("org/tiny-GGUF", "mmproj-tiny.gguf", mmproj)
    store = ModelStore(tmp_path / "data", hf_catalog(tmp_path / "catalog.toml"))
    plan = store.plan("tiny")
    assert plan.total_size == len(text) + len(mmproj)
    assert [f.sha256 for f in plan.files] == [hashlib.sha256(text).hexdigest(), hashlib.sha256(mmproj).hexdigest()]
    model = store.download("tiny", plan=plan)
    assert model.text.read_bytes() == text
    assert not (store.root / "seen-hashes.json").exists()  # the hub's hash was checked: nothing to remember


def test_git_files_fall_back_to_remembering_the_first_hash(hub, tmp_path, tiny_models):
    hub.add_git("org/tiny-GGUF", "tiny.gguf", tiny_models.text.read_bytes())
    hub.add_git("org/tiny-GGUF", "mmproj-tiny.gguf", tiny_models.mmproj.read_bytes())
    store = ModelStore(tmp_path / "data", hf_catalog(tmp_path / "catalog.toml"))
    store.download("tiny")
    assert hashlib.sha256(tiny_models.text.read_bytes()).hexdigest() in (store.root / "seen-hashes.json").read_text()


def test_free_space_for_the_whole_pair_is_checked_before_the_first_byte(hub, tmp_path, tiny_models):
    hub.add_lfs("org/tiny-GGUF", "tiny.gguf", tiny_models.text.read_bytes())
    hub.add_lfs("org/tiny-GGUF", "mmproj-tiny.gguf", tiny_models.mmproj.read_bytes())
    store = ModelStore(tmp_path / "data", hf_catalog(tmp_path / "catalog.toml"))
    with pytest.raises(DownloadError, match=r"^not enough free disk space in .* for Tiny test pair: 0\.00 GB needed"):
        store.download("tiny", disk_free=lambda _path: 1000)
    assert hub.storage.requests == []
