"""Hostile catalogs and installed.json: nothing is written or deleted outside the models folder, nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest

from app.core.errors import CatalogError
from app.core.models.catalog import load_catalog
from app.core.models.store import ManifestRebuiltWarning, ModelReplacedWarning, ModelStore
from tests.support.http_server import serve_tiny_pair
from tests.support.mounts import read_only

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)  # fmt: skip


def catalog(path: Path, base_url: str, model_id: str = "tiny", text_name: str = "tiny.gguf") -> Path:
    path.write_text(f"""
[[model]]
id = {json.dumps(model_id)}
name = "Tiny"
template = "tinyllama"
[model.text]
url = "{base_url}/tiny.gguf"
filename = {json.dumps(text_name)}
[model.mmproj]
url = "{base_url}/mmproj.gguf"
filename = "mmproj.gguf"
""")
    return path


@pytest.fixture
def served(tiny_models):
    server = serve_tiny_pair(tiny_models.text.read_bytes(), tiny_models.mmproj.read_bytes())
    yield server
    server.stop()


@pytest.fixture
def victim(tmp_path) -> Path:
    """A folder beside the data dir that a hostile id aims at; it must survive every case."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def test_catalog_id_with_dot_dot_is_refused_and_nothing_is_written_outside(tmp_path, served, victim):
    data = tmp_path / "data"
    result = cli("models", "download", "../../victim", "--data-dir", str(data),
                 "--catalog", str(catalog(tmp_path / "c.toml", served.url, "../../victim")))  # fmt: skip
    assert result.returncode == 2
    assert "model id '../../victim' is not a plain name" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert not (tmp_path / "tiny.gguf").exists()
    assert not (data / "tiny.gguf").exists()


def test_absolute_catalog_id_is_refused(tmp_path, served, victim):
    with pytest.raises(CatalogError, match="is not a plain name"):
        load_catalog(catalog(tmp_path / "c.toml", served.url, str(victim)))
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]


def test_installed_json_entry_aimed_outside_cannot_delete_it(tmp_path, victim):
    data = tmp_path / "data"
    models = data / "models"
    models.mkdir(parents=True)
    (models / "installed.json").write_text(json.dumps({"../../victim": {
        "name": "x", "text": str(victim / "precious.txt"), "mmproj": None, "origin": "catalog"}}))
    result = cli("models", "delete", "../../victim", "--data-dir", str(data))
    assert result.returncode == 2
    assert "model '../../victim' is not installed" in result.stderr.strip().splitlines()[-1]
    assert (victim / "precious.txt").read_text() == "keep me"


def test_model_folder_that_is_a_symlink_outside_loses_only_the_link(tmp_path, tiny_models, victim):
    store = ModelStore(tmp_path / "data")
    (store.root / "linked").symlink_to(victim)
    (store.root / "installed.json").write_text(json.dumps({"linked": {
        "name": "x", "text": str(tiny_models.text), "mmproj": str(tiny_models.mmproj), "origin": "catalog"}}))
    store.delete("linked")
    assert not (store.root / "linked").exists()
    assert (victim / "precious.txt").read_text() == "keep me"


def test_nul_in_a_catalog_filename_is_a_clear_line(tmp_path, served):
    result = cli("models", "download", "tiny", "--data-dir", str(tmp_path / "data"),
                 "--catalog", str(catalog(tmp_path / "c.toml", served.url, text_name="tiny\u0000.gguf")))  # fmt: skip
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "needs a plain filename (no folders, no leading '.', no control characters such as NUL)" in last
    assert "unexpected error" not in result.stderr


def test_concurrent_adds_keep_every_entry(tmp_path, tiny_models):
    data = tmp_path / "data"
    errors: list[BaseException] = []

    def add(worker: int) -> None:
        store = ModelStore(data)  # one store per "process", as `models add` run twice at once would have
        try:
            for n in range(6):
                store.add_local(tiny_models.text, tiny_models.mmproj, model_id=f"w{worker}-{n}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(m.id for m in ModelStore(data).installed() if m.origin == "local") == sorted(
        f"w{w}-{n}" for w in range(6) for n in range(6))
    assert not [p.name for p in (data / "models").iterdir() if p.name.endswith(".tmp")]


def test_damaged_installed_json_is_rebuilt_from_the_folders_not_emptied(tmp_path, served):
    data = tmp_path / "data"
    store = ModelStore(data, catalog(tmp_path / "c.toml", served.url))
    store.download("tiny")
    (store.root / "installed.json").write_text('{"tiny": {"name": "Tiny", "te')  # cut short by a crash
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        installed = ModelStore(data, store.catalog).installed()
    assert [(m.id, m.text.name, m.mmproj.name if m.mmproj else None) for m in installed] == [
        ("tiny", "tiny.gguf", "mmproj.gguf")]
    assert [type(w.message) for w in caught] == [ManifestRebuiltWarning]
    assert "rebuilt from the model folders on disk, 1 pair(s) found" in str(caught[0].message)
    kept = list(store.root.glob("installed.json.damaged-*"))
    assert len(kept) == 1
    assert kept[0].read_text().startswith('{"tiny"')
    assert "tiny" in json.loads((store.root / "installed.json").read_text())


def test_manifest_entry_of_the_wrong_type_does_not_break_listing(tmp_path, tiny_models):
    store = ModelStore(tmp_path / "data")
    store.add_local(tiny_models.text, tiny_models.mmproj, model_id="good")
    manifest = json.loads((store.root / "installed.json").read_text())
    manifest["bad"] = {"text": 5, "origin": "catalog"}
    (store.root / "installed.json").write_text(json.dumps(manifest))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert [m.id for m in store.installed()] == ["good"]


def test_damaged_model_file_does_not_block_reinstalling(tmp_path, served, tiny_models):
    data = tmp_path / "data"
    store = ModelStore(data, catalog(tmp_path / "c.toml", served.url))
    store.download("tiny")
    text = store.root / "tiny" / "tiny.gguf"
    text.write_bytes(text.read_bytes()[:1000])  # truncated on disk
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = store.download("tiny")
    assert model.text.read_bytes() == tiny_models.text.read_bytes()
    assert [type(w.message) for w in caught] == [ModelReplacedWarning]
    assert store.verify("tiny").id == "tiny"


def test_adding_to_a_read_only_models_folder_is_a_clear_line(tmp_path, tiny_models):
    data = tmp_path / "data"
    ModelStore(data).add_local(tiny_models.text, tiny_models.mmproj, model_id="mine")
    with read_only(data):
        listed = cli("models", "list", "--data-dir", str(data))
        added = cli("models", "add", "--model", str(tiny_models.text), "--id", "two", "--data-dir", str(data))
    assert listed.returncode == 0, listed.stderr
    assert "mine" in listed.stdout
    assert added.returncode == 2
    manifest = data / "models" / "installed.json"
    assert added.stderr.strip().splitlines()[-1] == f"llavacam: error: cannot write {manifest}: Read-only file system"
    assert [m.id for m in ModelStore(data).installed() if m.origin == "local"] == ["mine"]


def test_catalog_url_that_reads_local_files_is_refused(tmp_path, victim):
    path = catalog(tmp_path / "c.toml", "http://127.0.0.1:9")
    path.write_text(path.read_text().replace("http://127.0.0.1:9/tiny.gguf", f"file://{victim}/precious.txt"))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value).startswith(f"{path}: model 'tiny': [model.text] url must be an http:// or https:// "
                                      "address, not 'file:///")  # fmt: skip


def test_planted_symlinks_in_a_model_folder_are_replaced_not_written_through(tmp_path, served, tiny_models, victim):
    data = tmp_path / "data"
    store = ModelStore(data, catalog(tmp_path / "c.toml", served.url))
    folder = store.root / "tiny"
    folder.mkdir()
    (folder / "tiny.gguf").symlink_to(victim / "precious.txt")
    (folder / "mmproj.gguf.part").symlink_to(victim / "precious.txt")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        model = store.download("tiny")
    assert model.text.read_bytes() == tiny_models.text.read_bytes()
    assert model.mmproj is not None
    assert not model.mmproj.is_symlink()
    assert model.mmproj.read_bytes() == tiny_models.mmproj.read_bytes()
    assert (victim / "precious.txt").read_text() == "keep me"


def test_catalog_pair_sharing_one_filename_is_refused(tmp_path):
    path = catalog(tmp_path / "c.toml", "http://127.0.0.1:9", text_name="mmproj.gguf")
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert str(info.value) == (f"{path}: model 'tiny': the text model and the mmproj need different filenames, not "
                               "both 'mmproj.gguf'")  # fmt: skip


def test_local_pair_id_that_is_a_path_is_refused(tmp_path, tiny_models):
    store = ModelStore(tmp_path / "data")
    with pytest.raises(CatalogError, match="model id '../escape' is not a plain name"):
        store.add_local(tiny_models.text, tiny_models.mmproj, model_id="../escape")
    assert [m.id for m in store.installed() if m.origin != "checkout"] == []
