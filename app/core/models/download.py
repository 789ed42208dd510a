"""Resumable, verified, atomic downloads of model files.

A download writes `NAME.part`, resumes it with an HTTP Range request after a dropped connection (or the next
time), checks the size, the SHA-256 when known and that the result is a GGUF of the expected kind, and only then
renames it to `NAME`: no half-file ever poses as a model. Hugging Face sources resolve to a plain HTTPS URL via
huggingface_hub (so HF_ENDPOINT and mirrors work) and go through this same downloader, which is what gives them the
.part/resume, progress, cancel and verification guarantees.

Google Drive answers a large file with a "can't scan for viruses" HTML page holding a form (`id="download-form"`,
an action and hidden `id`, `export`, `confirm`, `uuid` fields) instead of the file; the form is submitted, as gdown
does, and the file it leads to is fetched (and resumed) the same way. Drive's quota and permission pages are clear
errors. All three are recognised by their content, not by the host name, so a mirror serving them works the same.
"""

from __future__ import annotations

import errno
import hashlib
import html.parser
import http.client
import os
import shutil
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app import __version__
from app.core.errors import DownloadCancelled, DownloadError, ModelFileError

CHUNK = 1 << 20
SPACE_MARGIN = 64 << 20  # leave room for the manifest, the history and the OS


@dataclass(frozen=True)
class Progress:
    done: int
    total: int | None
    bytes_per_s: float

    @property
    def eta_s(self) -> float | None:
        if self.total is None or self.bytes_per_s <= 0:
            return None
        return max(self.total - self.done, 0) / self.bytes_per_s

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    size: int


ProgressCallback = Callable[[Progress], None]
FreeSpace = Callable[[Path], int]


def free_space(path: Path) -> int:
    return shutil.disk_usage(path).free


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    expected_size: int | None = None,
    validate: Callable[[Path], object] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    retries: int = 4,
    timeout: float = 30.0,
    disk_free: FreeSpace = free_space,
) -> Downloaded:
    """Fetch `url` to `dest`; see the module docstring for the guarantees. Raises DownloadError subclasses."""
    if "\0" in str(dest):
        raise DownloadError(f"{str(dest)!r}: a file name cannot contain a NUL character (check the catalog)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest.parent}: {exc.strerror or exc}") from exc
    part = part_path(dest)
    if part.is_symlink():  # appending through a planted link would write wherever it points
        part.unlink()
    attempts = 0
    forms_followed = 0
    while True:
        try:
            total = _fetch_into(url, part, expected_size, progress, cancel, timeout, disk_free)
            break
        except _FollowForm as form:
            forms_followed += 1
            if forms_followed > MAX_FORMS:
                raise DownloadError(f"{_host(url)} kept answering with a confirmation page, not the file") from None
            url = form.url  # later retries resume from the confirmed URL
        except _Dropped as dropped:
            attempts += 1
            if attempts > retries:
                raise DownloadError(
                    f"the connection to {_host(url)} kept dropping ({dropped}); run the download again to resume "
                    f"from {part.stat().st_size if part.exists() else 0} bytes"
                ) from dropped
            if cancel is not None and cancel.wait(min(0.2 * 2**attempts, 5.0)):
                raise DownloadCancelled("download cancelled; it will resume where it stopped") from dropped
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(f"{dest.name}: got {size} bytes but the server announced {total}")
    if expected_size is not None and size != expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{dest.name}: got {size} bytes but the catalog says {expected_size}")
    digest = _sha256(part)
    if sha256 is not None and digest != sha256.lower():
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{dest.name}: checksum mismatch (expected {sha256.lower()}, got {digest}); the file was removed: "
            "the server sent something else, or the catalog is out of date"
        )
    if validate is not None:
        try:
            validate(part)
        except ModelFileError as exc:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{dest.name} from {_host(url)} is not a usable model: {exc.problem}") from exc
    os.replace(part, dest)
    return Downloaded(dest, digest, size)


class _Dropped(Exception):
    """The connection broke mid-transfer: worth resuming."""


class _FollowForm(Exception):
    """The server answered with a confirmation form (Google Drive's virus-scan warning): fetch where it leads."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


MAX_FORMS = 3
PAGE_PEEK = 256 << 10  # how much of an HTML answer is read to recognise it
_QUOTA_MARKS = ("too many users have viewed or downloaded this file", "download quota", "quota exceeded")
_PERMISSION_MARKS = ("you need access", "request access", "you need permission", "accounts.google.com/servicelogin",
                     "sign in - google accounts")  # fmt: skip


class _FormFinder(html.parser.HTMLParser):
    """The action and hidden inputs of the form with id="download-form" (the only form we ever submit)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.action: str | None = None
        self.method = "get"
        self.fields: dict[str, str] = {}
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k.lower(): v or "" for k, v in attrs}
        if tag == "form" and values.get("id") == "download-form":
            self._inside = True
            self.action = values.get("action", "")
            self.method = values.get("method", "get").lower()
        elif tag == "input" and self._inside and values.get("name"):
            self.fields[values["name"]] = values.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


def _page_problem(url: str, page: str) -> Exception:
    """What an HTML answer means: a form to follow, a quota or permission page, or just not a model."""
    finder = _FormFinder()
    try:
        finder.feed(page)
    except Exception:  # html.parser copes with almost anything; a page it cannot read is simply not a form
        finder.action = None
    if finder.action is not None and finder.method == "get":
        target = urllib.parse.urljoin(url, finder.action)
        if urllib.parse.urlsplit(target).scheme in ("http", "https"):
            query = urllib.parse.urlencode(finder.fields)
            return _FollowForm(f"{target}{'&' if '?' in target else '?'}{query}" if query else target)
    text = " ".join(page.lower().split())
    if any(mark in text for mark in _QUOTA_MARKS):
        return DownloadError(
            f"{_host(url)} says the file's download quota is exceeded (too many downloads recently): try again in "
            "a day, or download it in a browser and install it with `llavacam models add`"
        )
    if any(mark in text for mark in _PERMISSION_MARKS):
        return DownloadError(
            f"{_host(url)} says the file is not shared with everyone (it asks for access or a login): the "
            "catalog link needs to be public"
        )
    return DownloadError(f"{_host(url)} sent a web page instead of a model file (a login or quota page?): {url}")


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _fetch_into(
    url: str,
    part: Path,
    expected_size: int | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    timeout: float,
    disk_free: FreeSpace,
) -> int | None:
    """One HTTP request appending to `part`; returns the full size when the server said it."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"LlavaCam/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return have if expected_size in (None, have) else None  # the .part is already complete
        if exc.code == 404:
            raise DownloadError(f"not found (HTTP 404) at {url}: the catalog entry may be out of date") from exc
        if exc.code in (401, 403):
            raise DownloadError(f"{_host(url)} refused the download (HTTP {exc.code}): it may need a login") from exc
        if exc.code >= 500:
            raise (
                _Dropped(f"server error HTTP {exc.code}")
                if have
                else DownloadError(f"{_host(url)} had a server error (HTTP {exc.code}); try again later")
            ) from exc
        raise DownloadError(f"{_host(url)} answered HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach {_host(url)} ({exc.reason}): check the network connection") from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Dropped(str(exc) or type(exc).__name__) from exc
    with response:
        status = response.status
        length = response.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        if status == 206:
            start, announced = _content_range(response.headers.get("Content-Range"))
            if start != have:
                # A 206 that does not continue our .part (a server answering from byte 0, or elsewhere): appending
                # would install a corrupt model. Start the file over with a plain request.
                part.unlink(missing_ok=True)
                raise _Dropped(f"the server resumed at byte {start} instead of {have}; starting over")
            total = announced if announced is not None else (have + remaining if remaining is not None
                                                                else expected_size)  # fmt: skip
            mode = "ab"
        else:  # 200: the server ignored Range (or there was none): start over
            have = 0
            total = remaining if remaining is not None else expected_size
            mode = "wb"
        if content_type_is_html(response.headers.get("Content-Type", "")) and status == 200:
            # An HTML page where a model should be (a confirmation form, a quota or login page): never saved as one.
            try:
                page = response.read(PAGE_PEEK).decode("utf-8", errors="replace")
            except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                raise _Dropped(str(exc) or type(exc).__name__) from exc
            raise _page_problem(url, page)
        if total is not None and expected_size is not None and total != expected_size:
            raise DownloadError(f"{part.name[:-5]}: the server announced {total} bytes but the catalog says "
                                f"{expected_size}: the catalog entry may be out of date")  # fmt: skip
        # Never write past what is announced (an endless body must not fill the disk).
        limit = total if total is not None else expected_size
        needed = (total - have) if total is not None else 0
        if needed and disk_free(part.parent) < needed + SPACE_MARGIN:
            raise DownloadError(
                f"not enough free disk space in {part.parent}: {needed / 1e9:.2f} GB needed, "
                f"{disk_free(part.parent) / 1e9:.2f} GB free"
            )
        done = have
        started = time.monotonic()
        with part.open(mode) as out:
            while True:
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled("download cancelled; it will resume where it stopped")
                try:
                    chunk = response.read(CHUNK)
                except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
                    raise _Dropped(str(exc) or type(exc).__name__) from exc
                if not chunk:
                    break
                if limit is not None and done + len(chunk) > limit:
                    out.close()
                    part.unlink(missing_ok=True)
                    raise DownloadError(f"{part.name[:-5]}: the server sent more than the {limit} bytes announced; "
                                        "the partial file was removed")  # fmt: skip
                try:
                    out.write(chunk)
                    if limit is None and disk_free(part.parent) < SPACE_MARGIN:
                        raise OSError(errno.ENOSPC, "no space left for a download of unknown size")
                except OSError as exc:
                    out.close()
                    part.unlink(missing_ok=True)  # a full disk helps nobody: free what this download took
                    raise DownloadError(f"cannot write {part}: {exc.strerror or exc} (disk full?); the partial file "
                                        "was removed") from exc  # fmt: skip
                done += len(chunk)
                if progress is not None:
                    elapsed = time.monotonic() - started
                    progress(Progress(done, total, (done - have) / elapsed if elapsed > 0 else 0.0))
        if total is not None and done < total:
            raise _Dropped(f"the connection closed after {done} of {total} bytes")
        return total


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, full size) from `Content-Range: bytes START-END/TOTAL`; None for what is missing or unreadable."""
    if not header:
        return None, None
    unit, _, rest = header.strip().partition(" ")
    span, _, full = rest.partition("/")
    first = span.split("-")[0].strip()
    if unit.lower() != "bytes" or not first.isdigit():
        return None, None
    return int(first), int(full) if full.strip().isdigit() else None


def content_type_is_html(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
