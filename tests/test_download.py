"""Downloads against a real HTTP server on 127.0.0.1 serving generated GGUF files (no test reaches the internet)."""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path

import pytest

from app.core.errors import CatalogError, DownloadCancelled, DownloadError
from app.core.models.catalog import load_catalog
from app.core.models.download import download, part_path
from app.core.models.modelfile import inspect_mmproj, inspect_text_model
from app.core.models.resolve import resolve_model_files
from app.core.models.store import HashChangedWarning, ModelStore
from tests.support.http_server import FileServer, Route


@pytest.fixture
def server():
    running = FileServer().start()
    yield running
    running.stop()


@pytest.fixture
def text_bytes(tiny_models) -> bytes:
    return tiny_models.text.read_bytes()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_full_download_with_progress_and_checksum(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes)
    seen = []
    result = download(server.url + "/m.gguf", tmp_path / "m.gguf", sha256=sha(text_bytes),
                      validate=inspect_text_model, progress=seen.append)  # fmt: skip
    assert result.path.read_bytes() == text_bytes
    assert result.sha256 == sha(text_bytes)
    assert seen
    assert seen[-1].done == len(text_bytes)
    assert seen[-1].total == len(text_bytes)
    assert seen[-1].bytes_per_s > 0
    assert not part_path(tmp_path / "m.gguf").exists()


def test_resume_after_a_dropped_connection(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes, drop_after=100_000, drops_left=2)
    result = download(server.url + "/m.gguf", tmp_path / "m.gguf", validate=inspect_text_model)
    assert result.path.read_bytes() == text_bytes
    ranges = [headers.get("Range") for _path, headers in server.requests]
    assert ranges[0] is None
    assert ranges[1] == "bytes=100000-"
    assert ranges[2] == "bytes=200000-"


def test_connection_that_keeps_dropping_keeps_the_part_for_later(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes, drop_after=50_000, drops_left=100)
    with pytest.raises(DownloadError, match="kept dropping"):
        download(server.url + "/m.gguf", tmp_path / "m.gguf", retries=1)
    assert not (tmp_path / "m.gguf").exists(), "no half-file under the final name"
    assert part_path(tmp_path / "m.gguf").stat().st_size == 100_000
    server.routes["/m.gguf"].drops_left = 0
    download(server.url + "/m.gguf", tmp_path / "m.gguf")
    assert (tmp_path / "m.gguf").read_bytes() == text_bytes


def test_server_ignoring_range_restarts_cleanly(server, tmp_path, text_bytes):
    part_path(tmp_path / "m.gguf").write_bytes(b"stale partial data")
    server.routes["/m.gguf"] = Route(text_bytes, honour_range=False)
    download(server.url + "/m.gguf", tmp_path / "m.gguf")
    assert (tmp_path / "m.gguf").read_bytes() == text_bytes


def test_redirect_is_followed(server, tmp_path, text_bytes):
    server.routes["/real.gguf"] = Route(text_bytes)
    server.routes["/short"] = Route(redirect_to=server.url + "/real.gguf")
    download(server.url + "/short", tmp_path / "m.gguf")
    assert (tmp_path / "m.gguf").read_bytes() == text_bytes


@pytest.mark.parametrize(
    ("route", "message"),
    [(None, "HTTP 404"), (Route(status=500), "server error"), (Route(status=403), "refused")],
)
def test_http_errors_are_clear(server, tmp_path, route, message):
    if route is not None:
        server.routes["/m.gguf"] = route
    with pytest.raises(DownloadError, match=message):
        download(server.url + "/m.gguf", tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()


def test_no_network_is_clear(tmp_path):
    with pytest.raises(DownloadError, match="cannot reach 127.0.0.1:9"):
        download("http://127.0.0.1:9/m.gguf", tmp_path / "m.gguf", timeout=5)


def test_checksum_mismatch_removes_the_file(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(server.url + "/m.gguf", tmp_path / "m.gguf", sha256="0" * 64)
    assert not (tmp_path / "m.gguf").exists()
    assert not part_path(tmp_path / "m.gguf").exists()


def test_html_instead_of_gguf_is_refused(server, tmp_path):
    page = b"<!DOCTYPE html><html><body>Service temporarily unavailable</body></html>"
    server.routes["/page"] = Route(page, content_type="text/html; charset=utf-8")
    with pytest.raises(DownloadError, match="web page"):
        download(server.url + "/page", tmp_path / "m.gguf", validate=inspect_text_model)
    server.routes["/disguised"] = Route(page)  # served as octet-stream: caught by the GGUF check instead
    with pytest.raises(DownloadError, match="not a usable model"):
        download(server.url + "/disguised", tmp_path / "m.gguf", validate=inspect_text_model)
    assert not (tmp_path / "m.gguf").exists()


def test_wrong_kind_of_model_is_refused(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes)
    with pytest.raises(DownloadError, match="not a vision projector"):
        download(server.url + "/m.gguf", tmp_path / "mmproj.gguf", validate=inspect_mmproj)


def test_cancel_keeps_the_part_and_a_second_run_resumes(server, tmp_path, text_bytes):
    big = text_bytes * 4  # several read chunks long
    server.routes["/m.gguf"] = Route(big)
    cancel = threading.Event()

    def stop_after_first_chunk(progress) -> None:
        cancel.set()

    with pytest.raises(DownloadCancelled):
        download(server.url + "/m.gguf", tmp_path / "m.gguf", progress=stop_after_first_chunk, cancel=cancel)
    assert not (tmp_path / "m.gguf").exists()
    assert 0 < part_path(tmp_path / "m.gguf").stat().st_size < len(big)
    download(server.url + "/m.gguf", tmp_path / "m.gguf")
    assert (tmp_path / "m.gguf").read_bytes() == big
    assert server.requests[-1][1].get("Range", "").startswith("bytes=")


def test_not_enough_disk_space_is_refused_before_downloading(server, tmp_path, text_bytes):
    server.routes["/m.gguf"] = Route(text_bytes)
    with pytest.raises(DownloadError, match="not enough free disk space"):
        download(server.url + "/m.gguf", tmp_path / "m.gguf", disk_free=lambda _path: 1000)
    assert not (tmp_path / "m.gguf").exists()


def write_catalog(path: Path, base_url: str, text_sha: str | None = None, hf: bool = False) -> Path:
    text_source = (
        'hf_repo = "org/tiny"\nhf_file = "tiny.gguf"\nhf_revision = "main"\nfilename = "tiny.gguf"'
        if hf
        else f'url = "{base_url}/tiny.gguf"\nfilename = "tiny.gguf"'
    )
    sha_line = f'sha256 = "{text_sha}"' if text_sha else ""
    path.write_text(
        f"""
[[model]]
id = "tiny"
name = "Tiny test pair"
template = "tinyllama"
licence = "MIT"
[model.text]
{text_source}
{sha_line}
[model.mmproj]
url = "{base_url}/mmproj.gguf"
filename = "mmproj.gguf"
"""
    )
    return path


def test_model_store_downloads_a_pair_and_resolves_it(server, tmp_path, tiny_models, text_bytes):
    server.routes["/tiny.gguf"] = Route(text_bytes)
    server.routes["/mmproj.gguf"] = Route(tiny_models.mmproj.read_bytes())
    catalog = write_catalog(tmp_path / "catalog.toml", server.url, sha(text_bytes))
    store = ModelStore(tmp_path / "data", catalog)
    parts = set()
    model = store.download("tiny", progress=lambda part, p: parts.add(part))
    assert parts == {"text", "mmproj"}
    assert model.text.read_bytes() == text_bytes
    assert store.verify("tiny").id == "tiny"
    resolved = resolve_model_files(model_id="tiny", data_dir=tmp_path / "data", catalog=catalog)
    assert resolved is not None
    assert (resolved.text, resolved.mmproj, resolved.template, resolved.name) == (model.text, model.mmproj,
                                                                                  "tinyllama", "tiny")
    store.delete("tiny")
    assert "tiny" not in [m.id for m in store.installed()]
    assert not model.text.exists()


def test_hugging_face_source_goes_through_hf_endpoint(server, tmp_path, tiny_models, text_bytes, monkeypatch):
    import huggingface_hub.constants

    server.routes["/org/tiny/resolve/main/tiny.gguf"] = Route(text_bytes)
    server.routes["/mmproj.gguf"] = Route(tiny_models.mmproj.read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", server.url)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.url + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
    catalog = write_catalog(tmp_path / "catalog.toml", server.url, hf=True)
    model = ModelStore(tmp_path / "data", catalog).download("tiny")
    assert model.text.read_bytes() == text_bytes
    assert any(path == "/org/tiny/resolve/main/tiny.gguf" for path, _ in server.requests)


def test_unpublished_hash_is_recorded_and_a_change_is_warned(server, tmp_path, tiny_models, text_bytes):
    server.routes["/tiny.gguf"] = Route(text_bytes)
    server.routes["/mmproj.gguf"] = Route(tiny_models.mmproj.read_bytes())
    catalog = write_catalog(tmp_path / "catalog.toml", server.url)
    store = ModelStore(tmp_path / "data", catalog)
    store.download("tiny")
    store.delete("tiny")
    changed = bytearray(text_bytes)
    changed[-1] ^= 0xFF  # a different file behind the same URL (tensor data, still a valid GGUF)
    server.routes["/tiny.gguf"] = Route(bytes(changed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store.download("tiny")
    assert any(issubclass(w.category, HashChangedWarning) for w in caught)


def test_bad_catalogs_name_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\nid=")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_catalog(bad)
    bad.write_text('[[model]]\nid = "x"\n[model.text]\nfilename = "a.gguf"\n')
    with pytest.raises(CatalogError, match="needs url, or hf_repo and hf_file"):
        load_catalog(bad)
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "missing.toml")


def test_builtin_catalog_lists_the_default_pair_and_alternatives():
    entries = {e.id: e for e in load_catalog()}
    default = entries["tinyllava-1.1b"]
    assert default.text.filename == "tinyllava-1.1B.Q4_k_m.gguf"
    assert default.mmproj.filename == "mmproj-tinymodel-f16.gguf"
    assert default.template == "tinyllama"
    assert "drive.usercontent.google.com" in (default.text.url or "")
    assert sum(1 for e in entries.values() if e.text.hf_repo) >= 2


def test_model_store_refuses_a_file_whose_sha256_does_not_match_the_catalog(server, tmp_path, tiny_models,
                                                                            text_bytes):
    server.routes["/tiny.gguf"] = Route(text_bytes)
    server.routes["/mmproj.gguf"] = Route(tiny_models.mmproj.read_bytes())
    catalog = write_catalog(tmp_path / "catalog.toml", server.url, sha(text_bytes + b"other"))
    store = ModelStore(tmp_path / "data", catalog)
    with pytest.raises(DownloadError, match="checksum mismatch"):
        store.download("tiny")
    assert "tiny" not in [m.id for m in store.installed()]
    assert not any(p.name == "tiny.gguf" for p in (tmp_path / "data").rglob("*"))
