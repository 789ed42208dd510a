"""Installed model pairs: where they live, what is installed, download/verify/add/delete, id -> files."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from app.core.errors import CatalogError, DownloadError, LlavaCamError, ModelFileError
from app.core.models.catalog import CatalogEntry, Source, check_model_id, find_entry, is_plain_id, load_catalog
from app.core.models.download import SPACE_MARGIN, Progress, download, free_space, part_path
from app.core.models.modelfile import check_pair, inspect_mmproj, inspect_text_model
from app.core.models.probe import ensure_pair_safe
from app.core.paths import data_dir, models_dir, source_checkout_models_dir

MANIFEST = "installed.json"
DEMO_ID = "demo"
DEMO_NAME = "Demo — colours and shapes (built in, a few MB)"
SEEN_HASHES = "seen-hashes.json"
LOCK_NAME = "installed.json.lock"
LOCK_TIMEOUT_S = 30.0
ORIGINS = ("catalog", "local")


class ModelNotInstalledError(LlavaCamError):
    pass


class HashChangedWarning(UserWarning):
    """A download's SHA-256 differs from the first download of the same URL (no hash was published)."""


class ManifestRebuiltWarning(UserWarning):
    """installed.json was damaged: it was rebuilt from the model folders on disk (the damaged file is kept)."""


class UnsafeModelPathError(LlavaCamError):
    """A path built from the catalog or installed.json would leave the models folder: nothing was touched."""


@dataclass(frozen=True)
class InstalledModel:
    id: str
    name: str
    text: Path
    mmproj: Path | None
    template: str | None
    origin: str  # "catalog", "local", "checkout" or "builtin"

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.text, self.mmproj) if p is not None and p.exists())


ProgressByPart = Callable[[str, Progress], None]  # ("text" | "mmproj", progress)


@dataclass(frozen=True)
class PlannedFile:
    """One file of a pair as the host describes it, before any byte is downloaded."""

    part: str  # "text" | "mmproj"
    source: Source
    url: str
    size: int | None  # bytes: the catalog's, else the hub's X-Linked-Size; None when the host does not say
    sha256: str | None  # the catalog's, else the hub's X-Linked-Etag; None: the first download's hash is kept
    present: bool  # already downloaded and whole
    partial: int  # bytes of a .part from an earlier run


@dataclass(frozen=True)
class DownloadPlan:
    entry: CatalogEntry
    files: tuple[PlannedFile, ...]

    @property
    def total_size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def still_needed(self) -> int:
        """Bytes still to fetch (what is known of them): sizes minus what is there already."""
        return sum(max((f.size or 0) - f.partial, 0) for f in self.files if not f.present)


class ModelStore:
    def __init__(self, base: str | os.PathLike[str] | None = None, catalog: str | os.PathLike[str] | None = None):
        self.base = data_dir(base)
        self.root = models_dir(self.base)
        self.catalog = catalog

    # --- manifest: read-modify-write under a file lock, written atomically under a unique temporary name ------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold installed.json.lock (other processes: `models add` twice at once). A folder where the lock
        cannot even be created is read-only: reading goes ahead, and any write fails with its own clear error."""
        lock = FileLock(str(self.root / LOCK_NAME), timeout=LOCK_TIMEOUT_S)
        try:
            lock.acquire()
        except Timeout as exc:
            raise LlavaCamError(f"another LlavaCam has been changing the installed models for {LOCK_TIMEOUT_S:.0f} s "
                                f"({self.root / LOCK_NAME} is held): try again when it is done") from exc  # fmt: skip
        except OSError:
            yield
            return
        try:
            yield
        finally:
            lock.release()

    def _read(self, name: str) -> dict[str, Any]:
        path = self.root / name
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        path = self.root / name
        try:
            handle, temporary = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=".tmp")
        except OSError as exc:
            raise LlavaCamError(f"cannot write {path}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(json.dumps(data, indent=2, sort_keys=True))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except OSError as exc:
            Path(temporary).unlink(missing_ok=True)
            raise LlavaCamError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def _manifest(self) -> dict[str, dict[str, Any]]:
        """installed.json (hold the lock). A damaged one is rebuilt from the folders on disk, never read as empty."""
        path = self.root / MANIFEST
        if not path.exists():
            return {}
        problem = None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            data, problem = {}, f"not valid JSON ({type(exc).__name__})"
        if not isinstance(data, dict):
            data, problem = {}, "not a JSON object"
        good = {key: raw for key, raw in data.items() if _valid_record(key, raw)}
        if problem is None and len(good) == len(data):
            return good
        problem = problem or f"{len(data) - len(good)} damaged entr{'y' if len(data) - len(good) == 1 else 'ies'}"
        rebuilt = {**self._scan_folders(), **good}
        kept = path.with_name(f"{MANIFEST}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(path, kept)
            self._write(MANIFEST, rebuilt)
            where = f"the damaged file is kept as {kept}"
        except (OSError, LlavaCamError):
            where = "it could not be rewritten (read-only?)"
        warnings.warn(f"{path} was damaged ({problem}): rebuilt from the model folders on disk, "
                      f"{len(rebuilt)} pair(s) found; {where}", ManifestRebuiltWarning, stacklevel=3)  # fmt: skip
        return rebuilt

    def _scan_folders(self) -> dict[str, dict[str, Any]]:
        """Catalog pairs whose folder under models/ holds both files: what a lost installed.json listed."""
        try:
            entries = {entry.id: entry for entry in load_catalog(self.catalog)}
        except CatalogError:
            entries = {}
        found: dict[str, dict[str, Any]] = {}
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir() or not is_plain_id(folder.name):
                continue
            entry = entries.get(folder.name)
            if entry is not None:
                text, mmproj = folder / entry.text.filename, folder / entry.mmproj.filename
                name, template = entry.name, entry.template
            else:
                files = sorted(f for f in folder.glob("*.gguf") if f.is_file() and not f.is_symlink())
                projectors = [f for f in files if "mmproj" in f.name.lower()]
                texts = [f for f in files if f not in projectors]
                if len(texts) != 1 or len(projectors) != 1:
                    continue
                text, mmproj, name, template = texts[0], projectors[0], folder.name, None
            if text.is_file() and mmproj.is_file():
                found[folder.name] = {"name": name, "text": str(text), "mmproj": str(mmproj), "template": template,
                                      "origin": "catalog"}  # fmt: skip
        return found

    def _inside(self, path: Path, what: str) -> Path:
        """`path` resolved, when it lies strictly inside the models folder; else UnsafeModelPathError."""
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved == root or not resolved.is_relative_to(root):
            raise UnsafeModelPathError(f"refusing to touch {path}: {what} must stay inside {root}")
        return resolved

    def installed(self) -> list[InstalledModel]:
        models = []
        with self._locked():
            manifest = self._manifest()
        for model_id, raw in sorted(manifest.items()):
            mmproj = Path(raw["mmproj"]) if raw.get("mmproj") else None
            models.append(InstalledModel(model_id, raw.get("name", model_id), Path(raw["text"]), mmproj,
                                         raw.get("template"), raw.get("origin", "catalog")))  # fmt: skip
        return models + self._checkout_pairs()

    def _checkout_pairs(self) -> list[InstalledModel]:
        """Pairs dropped into a source checkout's models/ folder: each text GGUF with the mmproj beside it."""
        folder = source_checkout_models_dir()
        if folder is None:
            return []
        files = sorted(folder.glob("*.gguf"))
        projectors = [f for f in files if "mmproj" in f.name.lower()]
        texts = [f for f in files if f not in projectors]
        return [
            InstalledModel(
                f"checkout-{t.stem}", t.stem, t, projectors[0] if len(projectors) == 1 else None, None, "checkout"
            )  # fmt: skip
            for t in texts
        ]

    @staticmethod
    def builtin() -> list[InstalledModel]:
        """The demo pair shipped inside the package (app/demo), whatever catalog is in use."""
        from app.core.resources import demo_model_files

        text, mmproj = demo_model_files()
        if not text.exists() or not mmproj.exists():
            return []
        return [InstalledModel(DEMO_ID, DEMO_NAME, text, mmproj, None, "builtin")]

    def get(self, model_id: str) -> InstalledModel:
        for model in self.installed() + self.builtin():
            if model.id == model_id:
                return model
        raise ModelNotInstalledError(
            f"model {model_id!r} is not installed; `llavacam models download {model_id}` installs a catalog pair"
        )

    # --- install / add / delete / verify --------------------------------------------------------------------

    def download(
        self,
        model_id: str,
        *,
        progress: ProgressByPart | None = None,
        cancel: threading.Event | None = None,
        **download_options: Any,
    ) -> InstalledModel:
        """Download, verify and install a catalog pair (resuming partial files). `plan` (from `plan()`, which the
        caller may have shown) saves asking the host again; free space for all of it is checked before the first
        byte."""
        plan = download_options.pop("plan", None) or self.plan(model_id)
        entry = plan.entry
        folder = self._inside(self.root / check_model_id(entry.id), "a model's folder")
        disk_free = download_options.get("disk_free", free_space)
        needed = plan.still_needed
        if needed:
            free = disk_free(self.root)
            if free < needed + SPACE_MARGIN:
                raise DownloadError(f"not enough free disk space in {self.root} for {entry.name}: "
                                    f"{needed / 1e9:.2f} GB needed, {free / 1e9:.2f} GB free")  # fmt: skip
        planned = {f.part: f for f in plan.files}
        text = self._fetch(planned["text"], folder, inspect_text_model, progress, cancel, download_options)
        mmproj = self._fetch(planned["mmproj"], folder, inspect_mmproj, progress, cancel, download_options)
        ensure_pair_safe(text, mmproj, data_dir=self.base)
        return self._record(entry.id, entry.name, text, mmproj, entry.template, "catalog")

    def plan(self, model_id: str) -> DownloadPlan:
        """What downloading `model_id` involves: each file's URL, size and SHA-256 as the host states them (the
        hub's metadata for Hugging Face sources; a direct URL states nothing until its download starts)."""
        entry = find_entry(model_id, self.catalog)
        folder = self.root / check_model_id(entry.id)
        files = []
        for part, source, validate in (("text", entry.text, inspect_text_model),
                                       ("mmproj", entry.mmproj, inspect_mmproj)):  # fmt: skip
            facts = source.remote_facts()  # the hub's own size and SHA-256 (catalog values win where listed)
            size, sha256 = source.size or facts.size, source.sha256 or facts.sha256
            dest = folder / source.filename
            present = (dest.is_file() and not dest.is_symlink()
                       and _damage(dest, _with_size(source, size), validate) is None)  # fmt: skip
            part_file = part_path(dest)
            partial = part_file.stat().st_size if part_file.is_file() and not part_file.is_symlink() else 0
            files.append(PlannedFile(part, source, source.resolve_url(), size, sha256, present, partial))
        return DownloadPlan(entry, tuple(files))

    def _fetch(
        self,
        planned: PlannedFile,
        folder: Path,
        validate: Any,
        progress: ProgressByPart | None,
        cancel: threading.Event | None,
        options: dict[str, Any],
    ) -> Path:
        part, source = planned.part, _with_size(planned.source, planned.size)
        dest = folder / source.filename  # folder is resolved and inside models/, the name is plain (catalog.py)
        if dest.parent != folder:
            raise UnsafeModelPathError(f"refusing to write {dest}: it is not a file of {folder}")
        if dest.is_symlink() or dest.exists():
            problem = _damage(dest, source, validate)
            if problem is None:
                return dest
            # A damaged file of ours (cut short, overwritten, not a model) must not block installing it again.
            warnings.warn(f"{dest} was damaged ({problem}): downloading it again", ModelReplacedWarning, stacklevel=3)
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            else:
                dest.unlink()
        url = planned.url
        result = download(
            url, dest, sha256=planned.sha256, expected_size=planned.size, validate=validate, cancel=cancel,
            progress=(lambda p: progress(part, p)) if progress else None, **options,
        )  # fmt: skip
        if planned.sha256 is None:
            self._remember_hash(url, result.sha256, dest.name)
        return dest

    def _remember_hash(self, url: str, digest: str, name: str) -> None:
        with self._locked():
            self._remember_hash_locked(url, digest, name)

    def _remember_hash_locked(self, url: str, digest: str, name: str) -> None:
        seen = self._read(SEEN_HASHES)
        previous = seen.get(url)
        if previous and previous != digest:
            warnings.warn(
                f"{name}: this download's SHA-256 ({digest}) differs from the first download of the same URL "
                f"({previous}); the file on the server has changed",
                HashChangedWarning,
                stacklevel=3,
            )
        seen[url] = digest
        self._write(SEEN_HASHES, seen)

    def add_local(
        self,
        text: str | os.PathLike[str],
        mmproj: str | os.PathLike[str] | None,
        *,
        model_id: str | None = None,
        name: str | None = None,
        template: str | None = None,
    ) -> InstalledModel:
        """Register a pair of files already on disk (checked first; the files stay where they are)."""
        text_info, _ = check_pair(text, mmproj)
        ensure_pair_safe(text, mmproj, data_dir=self.base)  # loads it once in a child process
        text_path = Path(text).resolve()
        chosen = check_model_id(model_id or "local-" + re.sub(r"[^a-z0-9._-]+", "-", text_path.stem.lower()))
        return self._record(chosen, name or text_info.name or text_path.stem, text_path,
                            Path(mmproj).resolve() if mmproj else None, template, "local")  # fmt: skip

    def _record(self, model_id: str, name: str, text: Path, mmproj: Path | None, template: str | None,
                origin: str) -> InstalledModel:  # fmt: skip
        with self._locked():
            manifest = self._manifest()
            manifest[model_id] = {"name": name, "text": str(text), "mmproj": str(mmproj) if mmproj else None,
                                  "template": template, "origin": origin}  # fmt: skip
            self._write(MANIFEST, manifest)
        return self.get(model_id)

    def delete(self, model_id: str) -> None:
        model = self.get(model_id)
        if model.origin == "builtin":
            raise LlavaCamError(f"{model_id} is built into LlavaCam and cannot be deleted")
        if model.origin == "checkout":
            raise LlavaCamError(f"{model_id} is a file in the source checkout's models/ folder: delete it there")
        folder = self.root / check_model_id(model_id) if model.origin == "catalog" else None
        if folder is not None and not folder.is_symlink():
            folder = self._inside(folder, "a model's folder")
        with self._locked():
            manifest = self._manifest()
            manifest.pop(model_id, None)
            self._write(MANIFEST, manifest)
        if folder is not None and folder.is_symlink():
            folder.unlink()  # the link only, never what it points to
        elif folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def verify(self, model_id: str) -> InstalledModel:
        """Check the files again: present, complete, a matching pair, the catalog's hash where it has one, and a
        fresh test load in a child process."""
        model = self.get(model_id)
        check_pair(model.text, model.mmproj)
        if model.origin == "builtin":
            from app.core.models.download import _sha256

            listed = (model.text.parent / "SHA256SUMS").read_text(encoding="utf-8").split("\n")
            sums = {name: digest for digest, name in (line.split() for line in listed if line.strip())}
            for path in (model.text, model.mmproj):
                if path is not None and _sha256(path) != sums.get(path.name):
                    raise ModelFileError(path, "its SHA-256 does not match SHA256SUMS: reinstall LlavaCam")
        if model.origin == "catalog":
            from app.core.models.download import _sha256

            entry = find_entry(model_id, self.catalog)
            for source, path in ((entry.text, model.text), (entry.mmproj, model.mmproj)):
                if source.sha256 and path is not None and _sha256(path) != source.sha256:
                    raise ModelFileError(path, "its SHA-256 does not match the catalog: download it again")
        ensure_pair_safe(model.text, model.mmproj, data_dir=self.base, force=True)
        return model

    def catalog_entries(self) -> list[CatalogEntry]:
        return load_catalog(self.catalog)


class ModelReplacedWarning(UserWarning):
    """A damaged file in a model's folder was removed so that the pair could be downloaded again."""


def _valid_record(model_id: object, raw: object) -> bool:
    """An installed.json entry we can use: text path, optional mmproj, a known origin, a plain id for catalog."""
    if not isinstance(raw, dict) or not isinstance(model_id, str) or not model_id:
        return False
    text, mmproj, origin = raw.get("text"), raw.get("mmproj"), raw.get("origin", "catalog")
    if origin not in ORIGINS or (origin == "catalog" and not is_plain_id(model_id)):
        return False
    strings_or_none = all(raw.get(k) is None or isinstance(raw.get(k), str) for k in ("name", "template"))
    return (isinstance(text, str) and bool(text) and "\0" not in text and strings_or_none
            and (mmproj is None or (isinstance(mmproj, str) and bool(mmproj) and "\0" not in mmproj)))  # fmt: skip


def _with_size(source: Source, size: int | None) -> Source:
    """`source` with the size the host stated (so a cut-short file already on disk is recognised as such)."""
    if size is None or source.size == size:
        return source
    from dataclasses import replace

    return replace(source, size=size)


def _damage(dest: Path, source: Source, validate: Any) -> str | None:
    """Why an existing model file cannot be used as it is, or None when it looks whole."""
    if dest.is_symlink() or not dest.is_file():
        return "not a regular file"
    if source.size is not None and dest.stat().st_size != source.size:
        return f"{dest.stat().st_size} bytes, the catalog says {source.size}"
    try:
        validate(dest)
    except ModelFileError as exc:
        return exc.problem
    return None

