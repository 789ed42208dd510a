"""Google Drive's answers, imitated by a local server: the virus-scan form is submitted, the file resumes with
Range, and the quota and permission pages are one clear error. Recognised by content: the server is 127.0.0.1."""

from __future__ import annotations

import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.core.errors import DownloadError
from app.core.models.download import download, part_path
from app.core.models.modelfile import inspect_text_model

FILE_ID = "1q_mA9CnxY58f4a1vtYis7TsMAGOraZA4"
UUID = "3f1c2a9e-7a57-4c1b-9d7e-0c5b6f7d8e9f"

# The shape of Drive's page for files too large to scan (as gdown parses it): a form with hidden fields.
WARNING_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">tinyllava.gguf</a>
(638M)</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{base}/download" method="get"><input type="submit" id="uc-download-link"
class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/><input type="hidden" name="id"
value="{id}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{uuid}"></form></div></div></body></html>"""
QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body><div
class="uc-main"><p class="uc-error-caption">Sorry, you can't view or download this file at this time.</p><p
class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try accessing the
file again later.</p></div></body></html>"""
PERMISSION_PAGE = """<!DOCTYPE html><html><head><title>Google Drive</title></head><body><div><h1>You need
access</h1><p>Ask for access, or switch to an account with access.</p><form action="/request"><button>Request
access</button></form></div></body></html>"""


class Drive:
    """/uc answers the warning form; /download (with the form's exact fields) serves the file, dropping once."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[tuple[str, str | None]] = []
        self.drops_left = 1
        drive = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                drive.requests.append((self.path, self.headers.get("Range")))
                path, _, query = self.path.partition("?")
                fields = dict(urllib.parse.parse_qsl(query))
                if path == "/uc":
                    self.page(WARNING_PAGE.format(base=drive.url, id=FILE_ID, uuid=UUID))
                elif path == "/quota":
                    self.page(QUOTA_PAGE)
                elif path == "/private":
                    self.page(PERMISSION_PAGE)
                elif path == "/download" and fields == {"id": FILE_ID, "export": "download", "confirm": "t",
                                                        "uuid": UUID}:  # fmt: skip
                    self.file(self.headers.get("Range"))
                else:
                    self.page("<html><body>Bad request</body></html>", status=400)

            def page(self, text: str, status: int = 200) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def file(self, wanted: str | None) -> None:
                start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(drive.body) - 1}/{len(drive.body)}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(drive.body) - start))
                self.end_headers()
                payload = drive.body[start:]
                if drive.drops_left:
                    drive.drops_left -= 1
                    self.wfile.write(payload[: len(payload) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def drive(tiny_models):
    running = Drive(tiny_models.text.read_bytes())
    yield running
    running.stop()


def test_virus_scan_form_is_submitted_and_the_file_resumes_with_range(drive, tmp_path, tiny_models):
    dest = tmp_path / "tinyllava.gguf"
    result = download(f"{drive.url}/uc?id={FILE_ID}&export=download", dest, validate=inspect_text_model)
    assert dest.read_bytes() == tiny_models.text.read_bytes()
    assert result.size == len(drive.body)
    form_url = f"/download?id={FILE_ID}&export=download&confirm=t&uuid={UUID}"
    assert drive.requests[0] == (f"/uc?id={FILE_ID}&export=download", None)
    assert drive.requests[1] == (form_url, None)
    first_part = (len(drive.body)) // 3
    assert drive.requests[2] == (form_url, f"bytes={first_part}-")  # resumed from the confirmed URL
    assert not part_path(dest).exists()


def test_quota_page_is_one_clear_error(drive, tmp_path):
    with pytest.raises(DownloadError) as info:
        download(f"{drive.url}/quota", tmp_path / "m.gguf")
    assert str(info.value) == (
        f"{drive.url[7:]} says the file's download quota is exceeded (too many downloads recently): try again in a "
        "day, or download it in a browser and install it with `llavacam models add`"
    )
    assert not (tmp_path / "m.gguf").exists()
    assert not part_path(tmp_path / "m.gguf").exists()


def test_permission_page_is_one_clear_error(drive, tmp_path):
    with pytest.raises(DownloadError) as info:
        download(f"{drive.url}/private", tmp_path / "m.gguf")
    assert str(info.value) == (
        f"{drive.url[7:]} says the file is not shared with everyone (it asks for access or a login): the catalog "
        "link needs to be public"
    )
