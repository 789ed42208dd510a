"""Google Drive's "can't scan this file for viruses" page, shaped like Drive's own (as gdown parses it): a form
`id="download-form"` whose hidden `id`, `export`, `confirm` and `uuid` fields lead to the file. The hostile cases
point its action elsewhere (file://, back at itself); tests/test_drive_download.py has the normal flow."""

from __future__ import annotations

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
