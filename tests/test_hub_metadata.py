"""Size and SHA-256 come from the hub's file metadata before a download, and the file is verified against them.

A local server answers like the Hugging Face hub (HEAD on /resolve/ with X-Repo-Commit, X-Linked-Size and
X-Linked-Etag for an LFS file, then the bytes on GET); huggingface_hub is pointed at it with its endpoint.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.core.errors import DownloadError
from app.core.models.catalog import Source
from app.core.models.store import ModelStore
from tests.test_download import write_catalog


class Hub:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.linked: dict[str, tuple[str, int]] = {}  # path -> (X-Linked-Etag, X-Linked-Size): LFS files
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self, with_body: bool) -> None:
                hub.requests.append((self.command, self.path))
                body = hub.files.get(self.path.split("?")[0])
                if body is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("X-Repo-Commit", "0123456789abcdef0123456789abcdef01234567")
                self.send_header("ETag", '"' + hashlib.sha1(body).hexdigest() + '"')  # a git blob id
                if self.path in hub.linked:
                    etag, size = hub.linked[self.path]
                    self.send_header("X-Linked-Etag", f'"{etag}"')
                    self.send_header("X-Linked-Size", str(size))
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self.answer(with_body=False)

            def do_GET(self) -> None:  # noqa: N802
                self.answer(with_body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    running = Hub()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", running.url)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        running.url + "/{repo_id}/resolve/{revision}/{filename}")  # fmt: skip
    yield running
    running.stop()


def publish(hub: Hub, path: str, data: bytes, *, lfs: bool = True, sha256: str | None = None) -> None:
    hub.files[path] = data
    if lfs:
        hub.linked[path] = (sha256 or hashlib.sha256(data).hexdigest(), len(data))


def test_lfs_file_metadata_gives_size_and_sha256_before_downloading(hub, tiny_models):
    data = tiny_models.text.read_bytes()
    publish(hub, "/org/tiny/resolve/main/tiny.gguf", data)
    facts = Source("tiny.gguf", hf_repo="org/tiny", hf_file="tiny.gguf").remote_facts()
    assert facts.size == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()
    file_requests = [r for r in hub.requests if r[1] == "/org/tiny/resolve/main/tiny.gguf"]
    assert file_requests == [("HEAD", "/org/tiny/resolve/main/tiny.gguf")]  # nothing downloaded yet


def test_a_non_lfs_file_has_no_published_hash(hub, tiny_models):
    publish(hub, "/org/tiny/resolve/main/tiny.gguf", tiny_models.text.read_bytes(), lfs=False)
    facts = Source("tiny.gguf", hf_repo="org/tiny", hf_file="tiny.gguf").remote_facts()
    assert facts.sha256 is None  # the ETag is a git SHA-1, not the file's SHA-256


def test_catalog_download_is_verified_against_the_hub_hash(hub, tmp_path, tiny_models):
    text, mmproj = tiny_models.text.read_bytes(), tiny_models.mmproj.read_bytes()
    publish(hub, "/org/tiny/resolve/main/tiny.gguf", text)
    hub.files["/mmproj.gguf"] = mmproj
    catalog = write_catalog(tmp_path / "catalog.toml", hub.url, hf=True)
    model = ModelStore(tmp_path / "data", catalog).download("tiny")
    assert model.text.read_bytes() == text
    assert ("HEAD", "/org/tiny/resolve/main/tiny.gguf") in hub.requests


def test_a_file_that_differs_from_the_hub_hash_is_refused_and_removed(hub, tmp_path, tiny_models):
    text = tiny_models.text.read_bytes()
    publish(hub, "/org/tiny/resolve/main/tiny.gguf", text, sha256="ab" * 32)
    hub.files["/mmproj.gguf"] = tiny_models.mmproj.read_bytes()
    catalog = write_catalog(tmp_path / "catalog.toml", hub.url, hf=True)
    with pytest.raises(DownloadError, match=r"checksum mismatch \(expected abab"):
        ModelStore(tmp_path / "data", catalog).download("tiny")
    assert not list((tmp_path / "data" / "models" / "tiny").glob("tiny.gguf*"))


def test_every_catalog_entry_on_the_hub_resolves_its_metadata(hub):
    """Each built-in Hugging Face entry's files are asked for at /{repo}/resolve/main/{file}; the imitation hub
    publishes a file there, so every entry's size and hash come back (and a typo'd repo or file would 404)."""
    from app.core.models.catalog import load_catalog

    entries = [e for e in load_catalog() if e.text.hf_repo]
    assert {"qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "gemma-4-e2b", "minicpm-v-4.6", "lfm2.5-vl-450m",
            "qwen3-vl-2b", "smolvlm2-500m-video"} <= {e.id for e in entries}  # fmt: skip
    for entry in entries:
        for source in (entry.text, entry.mmproj):
            assert source.hf_revision == "main"
            data = f"{entry.id}/{source.hf_file}".encode() * 100
            publish(hub, f"/{source.hf_repo}/resolve/main/{source.hf_file}", data)
            facts = source.remote_facts()
            assert (facts.size, facts.sha256) == (len(data), hashlib.sha256(data).hexdigest()), entry.id


def test_entries_nobody_ran_yet_say_so(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from app.core.models.catalog import load_catalog

    entries = {e.id: e for e in load_catalog()}
    assert entries["qwen3-vl-2b"].unverified
    assert not entries["tinyllava-1.1b"].unverified
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "app", "models", "list", "--data-dir", str(tmp_path)]
    listed = subprocess.run(command, capture_output=True, text=True, cwd=repo, timeout=60)
    line = next(x for x in listed.stdout.splitlines() if x.strip().startswith("qwen3-vl-2b"))
    assert "[not installed; " in line
    assert line.endswith("; not yet downloaded and run by us]")
