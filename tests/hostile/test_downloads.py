"""Misbehaving download servers (tests/support/http_server.py): nothing corrupt is installed, the disk is not filled."""

from __future__ import annotations

import huggingface_hub.constants
import pytest

from app.core.errors import DownloadError
from app.core.models import download as download_module
from app.core.models.download import download, part_path
from app.core.models.modelfile import inspect_text_model
from app.core.models.store import ModelStore
from tests.support.drive_pages import HTML, virus_scan_page
from tests.support.http_server import FileServer, Route
from tests.support.hub_server import ImitationHub
from tests.support.mounts import small_disk
from tests.test_hub import hf_catalog


@pytest.fixture
def server():
    running = FileServer().start()
    yield running
    running.stop()


@pytest.fixture
def text_bytes(tiny_models) -> bytes:
    return tiny_models.text.read_bytes()


def test_endless_body_stops_at_the_catalog_size(server, tmp_path):
    server.routes["/m.gguf"] = Route(b"GGUF" * 1024, endless=True)
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError) as info:
        download(server.url + "/m.gguf", dest, expected_size=3 << 20)
    assert str(info.value) == ("m.gguf: the server sent more than the 3145728 bytes announced; the partial file was "
                               "removed")  # fmt: skip
    assert not part_path(dest).exists()
    assert not dest.exists()


def test_endless_body_of_unknown_size_stops_before_the_disk_is_full(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download_module, "SPACE_MARGIN", 1 << 20)
    server.routes["/m.gguf"] = Route(b"GGUF" * 1024, endless=True)
    with small_disk(tmp_path / "disk", "8m") as disk:
        with pytest.raises(DownloadError, match=r"no space left for a download of unknown size \(disk full\?\); "
                                                "the partial file was removed"):  # fmt: skip
            download(server.url + "/m.gguf", disk / "m.gguf")
        assert list(disk.iterdir()) == []


def test_disk_filling_up_mid_download_removes_the_part(server, tmp_path, text_bytes, monkeypatch):
    monkeypatch.setattr(download_module, "SPACE_MARGIN", 0)
    server.routes["/m.gguf"] = Route(text_bytes * 8)  # bigger than the disk, announced honestly
    with small_disk(tmp_path / "disk", "1m") as disk:
        with pytest.raises(DownloadError, match="No space left on device"):
            download(server.url + "/m.gguf", disk / "m.gguf", disk_free=lambda _path: 1 << 40)  # a free-space lie
        assert list(disk.iterdir()) == []


def test_range_answered_from_byte_zero_does_not_install_a_corrupt_model(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes, range_from=0)
    dest = tmp_path / "m.gguf"
    part_path(dest).write_bytes(text_bytes[:300_000])  # an earlier, interrupted attempt
    result = download(server.url + "/m.gguf", dest, validate=inspect_text_model)
    assert dest.read_bytes() == text_bytes
    assert result.size == len(text_bytes)


def test_range_answered_from_another_byte_starts_over(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes, range_from=123)
    dest = tmp_path / "m.gguf"
    part_path(dest).write_bytes(text_bytes[:300_000])
    download(server.url + "/m.gguf", dest, validate=inspect_text_model)
    assert dest.read_bytes() == text_bytes


def test_content_length_larger_than_the_catalog_is_refused_before_writing(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes)
    dest = tmp_path / "m.gguf"
    with pytest.raises(DownloadError) as info:
        download(server.url + "/m.gguf", dest, expected_size=1000)
    assert str(info.value) == (f"m.gguf: the server announced {len(text_bytes)} bytes but the catalog says 1000: "
                               "the catalog entry may be out of date")  # fmt: skip
    assert not part_path(dest).exists()


def test_nul_in_a_destination_name_is_a_clear_error(server, tmp_path):
    with pytest.raises(DownloadError, match="a file name cannot contain a NUL character"):
        download(server.url + "/m.gguf", tmp_path / "m\0.gguf")


def test_download_form_pointing_at_a_local_file_is_refused(server, tmp_path):
    secret = tmp_path / "secret.gguf"
    secret.write_bytes(b"GGUF local secret")
    server.routes["/download"] = Route(virus_scan_page(secret.as_uri(), "F1"), content_type=HTML)
    with pytest.raises(DownloadError) as caught:
        download(server.url + "/download?id=F1", tmp_path / "m.gguf")
    assert str(caught.value) == (f"{server.url[7:]} sent a web page instead of a model file (a login or quota "
                                 f"page?): {server.url}/download?id=F1")  # the form is not followed to file://
    assert not (tmp_path / "m.gguf").exists()
    assert not part_path(tmp_path / "m.gguf").exists()


def test_confirmation_form_that_never_ends_is_a_clear_error(server, tmp_path):
    server.routes["/download"] = Route(virus_scan_page(server.url + "/download", "F1"), content_type=HTML)
    with pytest.raises(DownloadError, match=r"kept answering with a confirmation page, not the file$"):
        download(server.url + "/download?id=F1", tmp_path / "m.gguf")
    assert len(server.requests) == 4  # the link and three submissions, then it stops


def test_endless_web_page_is_read_only_to_its_bound(server, tmp_path):
    server.routes["/page"] = Route(b"<html><body>" + b"spam " * 1000, content_type=HTML, endless=True)
    with pytest.raises(DownloadError, match="sent a web page instead of a model file"):
        download(server.url + "/page", tmp_path / "m.gguf")
    assert not part_path(tmp_path / "m.gguf").exists()


def test_hub_hash_that_differs_from_the_bytes_removes_the_file(tmp_path, tiny_models, monkeypatch):
    hub = ImitationHub().start()
    try:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
        hub.add_lfs("org/tiny-GGUF", "tiny.gguf", tiny_models.text.read_bytes(), announced_sha256="ab" * 32)
        hub.add_lfs("org/tiny-GGUF", "mmproj-tiny.gguf", tiny_models.mmproj.read_bytes())
        store = ModelStore(tmp_path / "data", hf_catalog(tmp_path / "catalog.toml"))
        with pytest.raises(DownloadError, match=f"tiny.gguf: checksum mismatch \\(expected {'ab' * 32}, got "):
            store.download("tiny")
        assert not (store.root / "tiny" / "tiny.gguf").exists()
        assert not part_path(store.root / "tiny" / "tiny.gguf").exists()
    finally:
        hub.stop()


def test_hub_size_smaller_than_the_file_is_refused_before_writing(tmp_path, tiny_models, monkeypatch):
    hub = ImitationHub().start()
    try:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            hub.url + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
        hub.add_lfs("org/tiny-GGUF", "tiny.gguf", tiny_models.text.read_bytes(), announced_size=1000)
        hub.add_lfs("org/tiny-GGUF", "mmproj-tiny.gguf", tiny_models.mmproj.read_bytes())
        store = ModelStore(tmp_path / "data", hf_catalog(tmp_path / "catalog.toml"))
        with pytest.raises(DownloadError, match="tiny.gguf: the server announced .* bytes but the catalog says 1000"):
            store.download("tiny")
        assert not part_path(store.root / "tiny" / "tiny.gguf").exists()
    finally:
        hub.stop()
