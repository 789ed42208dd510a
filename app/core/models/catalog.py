"""The model catalog: a TOML data file of text model + mmproj pairs (resources/catalog.toml, or a replacement)."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from app.core.errors import CatalogError
from app.core.inference.templates import TEMPLATE_FAMILIES
from app.core.resources import resource_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Pyto)
    import tomli as tomllib

CATALOG_ENV = "LLAVACAM_CATALOG"
# A model id names a folder under models/: a plain name, never a path ("../x", "/abs", "a/b" are refused).
MODEL_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]*")
MODEL_ID_MAX = 100


def is_plain_id(model_id: object) -> bool:
    """Whether `model_id` is a plain name usable as a folder under models/ (see MODEL_ID_PATTERN)."""
    return (isinstance(model_id, str) and len(model_id) <= MODEL_ID_MAX
            and MODEL_ID_PATTERN.fullmatch(model_id) is not None)  # fmt: skip


def check_model_id(model_id: object, where: str = "") -> str:
    """`model_id` itself when it is a plain name; else a CatalogError saying what a model id may be."""
    if not is_plain_id(model_id):
        prefix = f"{where}: " if where else ""
        raise CatalogError(f"{prefix}model id {str(model_id)[:80]!r} is not a plain name: use lower-case letters, "
                           "digits, '.', '_' and '-', starting with a letter or digit")  # fmt: skip
    return str(model_id)


def is_plain_filename(name: object) -> TypeGuard[str]:
    """A file name with no folder part, not hidden, no NUL or other control characters."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and "/" not in name and "\\" not in name
            and not name.startswith(".") and not any(ord(c) < 32 or ord(c) == 127 for c in name))  # fmt: skip


@dataclass(frozen=True)
class Source:
    filename: str
    url: str | None = None
    hf_repo: str | None = None
    hf_file: str | None = None
    hf_revision: str = "main"
    sha256: str | None = None
    size: int | None = None

    def resolve_url(self) -> str:
        """The URL to fetch: a direct URL, or the Hugging Face resolve URL (honouring HF_ENDPOINT)."""
        if self.url:
            return self.url
        from huggingface_hub import hf_hub_url

        if not (self.hf_repo and self.hf_file):
            raise ValueError("a source needs url, or hf_repo and hf_file")
        return str(hf_hub_url(self.hf_repo, self.hf_file, revision=self.hf_revision))

    def remote_facts(self, timeout: float = 10.0) -> RemoteFacts:
        """Size and SHA-256 as the host publishes them, before downloading: for a Hugging Face file its metadata
        (`get_hf_file_metadata`: an LFS file's X-Linked-Size and X-Linked-Etag, which is its SHA-256). What the
        host does not say is None (a direct URL, a non-LFS file, an unreachable hub): the download then keeps
        today's behaviour (the hash seen on the first download is remembered)."""
        if self.sha256 is not None or not (self.hf_repo and self.hf_file):
            return RemoteFacts(self.size, self.sha256)
        try:
            from huggingface_hub import get_hf_file_metadata

            meta = get_hf_file_metadata(self.resolve_url(), timeout=timeout)
        except Exception:  # no metadata is not an error: the download itself reports an unreachable host
            return RemoteFacts(self.size, None)
        finally:
            _close_hub_session()
        etag = (meta.etag or "").strip('"').lower()
        sha256 = etag if _SHA256.fullmatch(etag) else None  # a git blob's etag is a 40-hex SHA-1, not the file's
        size = meta.size if isinstance(meta.size, int) and meta.size > 0 else self.size
        return RemoteFacts(size, sha256)


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _close_hub_session() -> None:
    """huggingface_hub keeps a pooled connection open (and fetches its agent registry once a process): the hub is
    asked once per file, so keep no idle connection to it behind the download."""
    try:
        from huggingface_hub.utils import close_session

        close_session()
    except Exception:  # noqa: BLE001 (closing is best effort)
        pass


@dataclass(frozen=True)
class RemoteFacts:
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    template: str
    licence: str
    notes: str
    text: Source
    mmproj: Source
    # Who downloaded and ran this pair, and how ("" = nobody yet: the picker says "not yet run by us").
    verified: str = ""
    # For the picker: sizes here are approximate (for choosing offline); the exact size and SHA-256 come from the
    # host before downloading (Source.remote_facts).
    family: str = ""
    best_for: str = ""
    download_mb: int | None = None
    memory_gb: float | None = None
    licence_terms: str = ""  # shown, and accepted, before downloading

    @property
    def unverified(self) -> bool:
        return not self.verified.strip()

    @property
    def status(self) -> str:
        """What the picker and `models list` say about how far this pair is proven."""
        return "not yet downloaded and run by us" if self.unverified else f"verified: {self.verified.strip()}"

    @property
    def total_size(self) -> int | None:
        """Bytes to download: exact when the catalog lists both sizes, else its approximate download_mb."""
        if self.text.size is None or self.mmproj.size is None:
            return self.download_mb * 1_000_000 if self.download_mb is not None else None
        return self.text.size + self.mmproj.size


def catalog_path(override: str | os.PathLike[str] | None = None) -> Path:
    chosen = override or os.environ.get(CATALOG_ENV)
    return Path(chosen).expanduser() if chosen else resource_path("catalog.toml")


def load_catalog(override: str | os.PathLike[str] | None = None) -> list[CatalogEntry]:
    path = catalog_path(override)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: the model catalog does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: the model catalog cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: the model catalog is not valid TOML ({exc})") from exc
    models = data.get("model")
    if not isinstance(models, list) or not models:
        raise CatalogError(f"{path}: the catalog lists no [[model]] entries")
    entries = [_entry(path, i, raw) for i, raw in enumerate(models)]
    ids = [e.id for e in entries]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise CatalogError(f"{path}: model ids must be unique; repeated: {', '.join(duplicates)}")
    return entries


def find_entry(model_id: str, override: str | os.PathLike[str] | None = None) -> CatalogEntry:
    entries = load_catalog(override)
    for entry in entries:
        if entry.id == model_id:
            return entry
    known = ", ".join(e.id for e in entries)
    raise CatalogError(f"no model {model_id!r} in the catalog; known: {known}")


def _entry(path: Path, index: int, raw: Any) -> CatalogEntry:
    where = f"{path}: model #{index + 1}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where} is not a table")
    model_id = raw.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise CatalogError(f"{where} has no id")
    check_model_id(model_id, f"{path}")
    where = f"{path}: model {model_id!r}"
    template = raw.get("template", "auto")
    if template not in TEMPLATE_FAMILIES:
        raise CatalogError(f"{where}: template must be one of {', '.join(TEMPLATE_FAMILIES)}, not {template!r}")
    text, mmproj = _source(where, "text", raw.get("text")), _source(where, "mmproj", raw.get("mmproj"))
    if text.filename.lower() == mmproj.filename.lower():  # one file would overwrite the other in the folder
        raise CatalogError(f"{where}: the text model and the mmproj need different filenames, not both "
                           f"{text.filename!r}")  # fmt: skip
    download_mb, memory_gb = raw.get("download_mb"), raw.get("memory_gb")
    if download_mb is not None and (not isinstance(download_mb, int) or isinstance(download_mb, bool)
                                    or not 0 < download_mb < 10**7):  # fmt: skip
        raise CatalogError(f"{where}: download_mb must be a positive whole number of megabytes")
    if memory_gb is not None and (not isinstance(memory_gb, (int, float)) or isinstance(memory_gb, bool)
                                  or not 0 < memory_gb < 10**4):  # fmt: skip
        raise CatalogError(f"{where}: memory_gb must be a positive number of gigabytes")
    return CatalogEntry(
        id=model_id,
        name=str(raw.get("name", model_id)),
        template=template,
        licence=str(raw.get("licence", "")),
        notes=str(raw.get("notes", "")),
        text=text,
        mmproj=mmproj,
        verified=str(raw.get("verified", ""))[:300],
        family=str(raw.get("family", ""))[:100],
        best_for=str(raw.get("best_for", ""))[:200],
        download_mb=download_mb,
        memory_gb=float(memory_gb) if memory_gb is not None else None,
        licence_terms=str(raw.get("licence_terms", ""))[:4000],
    )


def _source(where: str, key: str, raw: Any) -> Source:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: [model.{key}] is missing")
    url, repo, hf_file = raw.get("url"), raw.get("hf_repo"), raw.get("hf_file")
    if not url and not (repo and hf_file):
        raise CatalogError(f"{where}: [model.{key}] needs url, or hf_repo and hf_file")
    if url is not None and (not isinstance(url, str) or not url.lower().startswith(("http://", "https://"))):
        # file://, ftp:// and the like would read local files or leave the downloader's checks.
        raise CatalogError(f"{where}: [model.{key}] url must be an http:// or https:// address, not {str(url)[:80]!r}")
    filename = raw.get("filename") or (hf_file if hf_file else None)
    if not is_plain_filename(filename):
        raise CatalogError(f"{where}: [model.{key}] needs a plain filename (no folders, no leading '.', no "
                           f"control characters such as NUL), not {str(filename)[:80]!r}")  # fmt: skip
    sha256 = raw.get("sha256")
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64
                               or any(c not in "0123456789abcdefABCDEF" for c in sha256)):  # fmt: skip
        raise CatalogError(f"{where}: [model.{key}] sha256 must be 64 hex digits")
    size = raw.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise CatalogError(f"{where}: [model.{key}] size must be a positive number of bytes")
    return Source(filename=filename, url=url, hf_repo=repo, hf_file=hf_file,
                  hf_revision=str(raw.get("hf_revision", "main")), sha256=sha256.lower() if sha256 else None,
                  size=size)  # fmt: skip
