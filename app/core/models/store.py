"""Installed model pairs: where they live, what is installed, download/verify/add/delete, id -> files."""

from __future__ import annotations

import json
import os
import shutil
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import LlavaCamError, ModelFileError
from app.core.models.catalog import CatalogEntry, Source, find_entry, load_catalog
from app.core.models.download import Progress, download
from app.core.models.modelfile import check_pair, inspect_mmproj, inspect_text_model
from app.core.paths import data_dir, models_dir, source_checkout_models_dir

MANIFEST = "installed.json"
SEEN_HASHES = "seen-hashes.json"


class ModelNotInstalledError(LlavaCamError):
    pass


class HashChangedWarning(UserWarning):
    """A download's SHA-256 differs from the first download of the same URL (no hash was published)."""


@dataclass(frozen=True)
class InstalledModel:
    id: str
    name: str
    text: Path
    mmproj: Path | None
    template: str | None
    origin: str  # "catalog", "local" or "checkout"

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.text, self.mmproj) if p is not None and p.exists())


ProgressByPart = Callable[[str, Progress], None]  # ("text" | "mmproj", progress)


class ModelStore:
    def __init__(self, base: str | os.PathLike[str] | None = None, catalog: str | os.PathLike[str] | None = None):
        self.base = data_dir(base)
        self.root = models_dir(self.base)
        self.catalog = catalog

    # --- manifest -------------------------------------------------------------------------------------------

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
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(temporary, path)

    def installed(self) -> list[InstalledModel]:
        models = []
        for model_id, raw in sorted(self._read(MANIFEST).items()):
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

    def get(self, model_id: str) -> InstalledModel:
        for model in self.installed():
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
        """Download, verify and install a catalog pair (resuming partial files)."""
        entry = find_entry(model_id, self.catalog)
        folder = self.root / entry.id
        text = self._fetch(entry, "text", entry.text, folder, inspect_text_model, progress, cancel, download_options)
        mmproj = self._fetch(entry, "mmproj", entry.mmproj, folder, inspect_mmproj, progress, cancel,
                             download_options)  # fmt: skip
        check_pair(text, mmproj)
        return self._record(entry.id, entry.name, text, mmproj, entry.template, "catalog")

    def _fetch(
        self,
        entry: CatalogEntry,
        part: str,
        source: Source,
        folder: Path,
        validate: Any,
        progress: ProgressByPart | None,
        cancel: threading.Event | None,
        options: dict[str, Any],
    ) -> Path:
        dest = folder / source.filename
        if dest.exists():
            validate(dest)
            return dest
        url = source.resolve_url()
        result = download(
            url, dest, sha256=source.sha256, expected_size=source.size, validate=validate, cancel=cancel,
            progress=(lambda p: progress(part, p)) if progress else None, **options,
        )  # fmt: skip
        if source.sha256 is None:
            self._remember_hash(url, result.sha256, dest.name)
        return dest

    def _remember_hash(self, url: str, digest: str, name: str) -> None:
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
        text_path = Path(text).resolve()
        chosen = model_id or f"local-{text_path.stem.lower()}"
        return self._record(chosen, name or text_info.name or text_path.stem, text_path,
                            Path(mmproj).resolve() if mmproj else None, template, "local")  # fmt: skip

    def _record(self, model_id: str, name: str, text: Path, mmproj: Path | None, template: str | None,
                origin: str) -> InstalledModel:  # fmt: skip
        manifest = self._read(MANIFEST)
        manifest[model_id] = {"name": name, "text": str(text), "mmproj": str(mmproj) if mmproj else None,
                              "template": template, "origin": origin}  # fmt: skip
        self._write(MANIFEST, manifest)
        return self.get(model_id)

    def delete(self, model_id: str) -> None:
        model = self.get(model_id)
        if model.origin == "checkout":
            raise LlavaCamError(f"{model_id} is a file in the source checkout's models/ folder: delete it there")
        manifest = self._read(MANIFEST)
        manifest.pop(model_id, None)
        self._write(MANIFEST, manifest)
        if model.origin == "catalog":
            shutil.rmtree(self.root / model_id, ignore_errors=True)

    def verify(self, model_id: str) -> InstalledModel:
        """Check the files again: present, complete, a matching pair, and the catalog's hash where it has one."""
        model = self.get(model_id)
        check_pair(model.text, model.mmproj)
        if model.origin == "catalog":
            from app.core.models.download import _sha256

            entry = find_entry(model_id, self.catalog)
            for source, path in ((entry.text, model.text), (entry.mmproj, model.mmproj)):
                if source.sha256 and path is not None and _sha256(path) != source.sha256:
                    raise ModelFileError(path, "its SHA-256 does not match the catalog: download it again")
        return model

    def catalog_entries(self) -> list[CatalogEntry]:
        return load_catalog(self.catalog)


@dataclass(frozen=True)
class ResolvedModel:
    text: Path
    mmproj: Path | None
    template: str | None


def resolve_installed(model_id: str, *, data_dir: str | os.PathLike[str] | None = None,
                      catalog: str | os.PathLike[str] | None = None) -> ResolvedModel:  # fmt: skip
    model = ModelStore(data_dir, catalog).get(model_id)
    template = None if model.template in (None, "auto") else model.template
    return ResolvedModel(model.text, model.mmproj, template)
