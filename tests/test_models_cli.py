"""`llavacam models ...` end to end in subprocesses, against a local HTTP server and a test catalog."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.http_server import Route, serve_tiny_pair
from tests.test_download import write_catalog

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)  # fmt: skip


@pytest.fixture
def served(tiny_models, tmp_path):
    server = serve_tiny_pair(tiny_models.text.read_bytes(), tiny_models.mmproj.read_bytes())
    yield server, write_catalog(tmp_path / "catalog.toml", server.url)
    server.stop()


def test_download_list_path_verify_ask_delete(served, tmp_path):
    _server, catalog = served
    data = str(tmp_path / "data")
    listed = cli("models", "list", "--catalog", str(catalog), "--data-dir", data)
    assert listed.returncode == 0, listed.stderr
    assert "tiny" in listed.stdout
    assert "not installed" in listed.stdout
    fetched = cli("--data-dir", data, "models", "--catalog", str(catalog), "download", "tiny")
    assert fetched.returncode == 0, fetched.stderr
    assert "installed tiny" in fetched.stdout
    assert "%" in fetched.stderr, "progress is shown"
    paths = cli("models", "--catalog", str(catalog), "path", "tiny", "--data-dir", data).stdout.split()
    assert [Path(p).name for p in paths] == ["tiny.gguf", "mmproj.gguf"]
    assert cli("models", "--catalog", str(catalog), "verify", "tiny", "--data-dir", data).returncode == 0
    asked = cli("ask", "--model-id", "tiny", "--catalog", str(catalog), "--data-dir", data, "-q", "Hi",
                "--max-tokens", "3", "--json")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)["turn"] == 1
    assert cli("models", "--catalog", str(catalog), "delete", "tiny", "--data-dir", data).returncode == 0
    missing = cli("models", "--catalog", str(catalog), "path", "tiny", "--data-dir", data)
    assert missing.returncode == 2
    assert "not installed" in missing.stderr


def test_add_local_pair_validates_first(tiny_models, mismatched_mmproj, tmp_path):
    data = str(tmp_path / "data")
    bad = cli("models", "add", "--model", str(tiny_models.text), "--mmproj", str(mismatched_mmproj), "--data-dir", data)
    assert bad.returncode == 2
    assert "not a pair" in bad.stderr
    assert "Traceback" not in bad.stderr
    good = cli("models", "add", "--model", str(tiny_models.text), "--mmproj", str(tiny_models.mmproj), "--id", "mine",
               "--data-dir", data)  # fmt: skip
    assert good.returncode == 0, good.stderr
    assert "mine" in cli("models", "list", "--data-dir", data).stdout


def test_download_errors_are_one_clear_line(served, tmp_path):
    server, catalog = served
    server.routes["/tiny.gguf"] = Route(b"<html>quota exceeded</html>", content_type="text/html")
    result = cli("models", "--catalog", str(catalog), "download", "tiny", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "download quota is exceeded" in result.stderr.strip().splitlines()[-1]  # the page is recognised
    assert "Traceback" not in result.stderr
    unknown = cli("models", "--catalog", str(catalog), "download", "nope", "--data-dir", str(tmp_path / "d"))
    assert unknown.returncode == 2
    assert "no model 'nope'" in unknown.stderr


def test_list_shows_status_memory_and_a_recommendation_and_keeps_pairs_gone_from_the_catalog(served, tmp_path):
    _server, catalog = served
    data = str(tmp_path / "data")
    fetched = cli("--data-dir", data, "models", "--catalog", str(catalog), "download", "tiny")
    assert fetched.returncode == 0, fetched.stderr
    assert "tiny: text ? + mmproj ? = ? (the host gives no SHA-256 for some files: the first download's hash is " \
           "remembered); not yet downloaded and run by us" in fetched.stderr  # fmt: skip
    builtin = cli("models", "list", "--data-dir", data)  # the built-in catalog has no "tiny"
    assert builtin.returncode == 0, builtin.stderr
    lines = builtin.stdout.splitlines()
    assert lines[0].startswith("Catalog (this machine: ")
    assert "; recommended: " in lines[0]
    qwen = next(line for line in lines if line.strip().startswith("qwen3-vl-2b "))
    assert qwen.endswith("[not installed; ~2.28 GB download; needs ~2.6 GB memory; Apache-2.0; "
                         "not yet downloaded and run by us]")  # fmt: skip
    assert "Local pairs and pairs no longer in the catalog (still usable):" in lines
    gone = next(line for line in lines if line.strip().startswith("tiny "))
    assert "[not in the catalog; " in gone
    path = cli("models", "path", "tiny", "--data-dir", data)  # still usable
    assert path.returncode == 0, path.stderr


def test_licence_terms_are_shown_and_accepted_before_downloading(served, tmp_path):
    server, catalog = served
    text = catalog.read_text().replace('licence = "MIT"', 'licence = "MIT"\nlicence_terms = "Be nice to robots."')
    catalog.write_text(text)
    data = str(tmp_path / "data")
    refused = cli("--data-dir", data, "models", "--catalog", str(catalog), "download", "tiny")
    assert refused.returncode == 2
    assert "Tiny test pair: licence terms\nBe nice to robots." in refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == ("llavacam: error: tiny: read the licence terms above, then "
                                                        "run the download again with --accept-licence")  # fmt: skip
    assert server.requests == []  # nothing downloaded before accepting
    accepted = cli("--data-dir", data, "models", "--catalog", str(catalog), "download", "tiny", "--accept-licence")
    assert accepted.returncode == 0, accepted.stderr
