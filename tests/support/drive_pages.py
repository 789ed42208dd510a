"""Imitations of the pages Google Drive serves instead of a file, served from 127.0.0.1 by tests.support.http_server.

Shaped like Drive's own (as gdown parses them): the "can't scan this file for viruses" page for files over ~100 MB,
with a form `id="download-form"` whose hidden `id`, `export`, `confirm` and `uuid` fields must be submitted to get
the file; the quota page; the "you need access" page of a file that is not shared.
"""

from __future__ import annotations

from tests.support.http_server import Route

UUID = "3b1c7d2e-0f5a-4e8b-9c61-2a4d5e6f7a8b"
HTML = "text/html; charset=utf-8"


def virus_scan_page(action: str, file_id: str, name: str = "tinyllava-1.1B.Q4_k_m.gguf") -> bytes:
    return f"""<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>
<meta http-equiv="content-type" content="text/html; charset=utf-8"/></head>
<body><div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for
viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={file_id}">{name}</a>
(638M)</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get"><input type="submit" id="uc-download-link"
class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{UUID}"></form>
</div></div></body></html>""".encode()


QUOTA_PAGE = b"""<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can't view or download this file at
this time.</p><p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently. Please try
accessing the file again later. If the file you are trying to access is particularly large or is shared with many
people, it may take up to 24 hours to be able to view or download the file.</p></div></div></body></html>"""

PERMISSION_PAGE = b"""<!DOCTYPE html><html lang="en"><head><title>Google Drive: Sign-in</title></head><body>
<div><h1>You need access</h1><p>Ask for access, or switch to an account with access.</p>
<form action="https://drive.google.com/sharing/requestaccess" method="post"><input type="hidden" name="id"
value="x"><button>Request access</button></form></div></body></html>"""


def drive_file(body: bytes, action: str, file_id: str, **file_options: object) -> Route:
    """A route that answers with the virus-scan page until its form is submitted (confirm=t and the uuid)."""
    page = Route(virus_scan_page(action, file_id), content_type=HTML, honour_range=False)  # as Drive: 200, whole
    return Route(body, needs_query={"id": file_id, "confirm": "t", "uuid": UUID}, otherwise=page,
                 **file_options)  # type: ignore[arg-type]  # fmt: skip
