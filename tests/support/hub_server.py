"""An imitation of the Hugging Face hub on 127.0.0.1, answering as huggingface_hub expects.

`HEAD|GET /{repo}/resolve/{revision}/{file}` of an LFS file answers 302 to a second server (the storage host, so a
different origin: huggingface_hub stops following there) with `X-Linked-Size`, `X-Linked-Etag` (the SHA-256, quoted),
`X-Repo-Commit` and `ETag`; the storage host serves the bytes with Range. A file kept in git answers 200 itself
with a git ETag (40 hex digits) and no X-Linked headers. Point `HF_ENDPOINT` at `.url`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from tests.support.http_server import FileServer, Route

COMMIT = "0123456789abcdef0123456789abcdef01234567"
# huggingface_hub's client keeps connections open; a handler thread waiting on one would outlive the test
CLOSE = {"Connection": "close"}


@dataclass
class ImitationHub:
    hub: FileServer = field(default_factory=FileServer)
    storage: FileServer = field(default_factory=FileServer)

    def start(self) -> ImitationHub:
        self.hub.start()
        self.storage.start()
        return self

    def stop(self) -> None:
        self.hub.stop()
        self.storage.stop()

    @property
    def url(self) -> str:
        return self.hub.url

    def add_lfs(self, repo: str, filename: str, body: bytes, *, revision: str = "main",
                announced_size: int | None = None, announced_sha256: str | None = None) -> Route:  # fmt: skip
        """An LFS file; `announced_*` make the hub's metadata disagree with the bytes (a hostile or stale hub)."""
        sha = announced_sha256 or hashlib.sha256(body).hexdigest()
        blob = f"/repos/{sha[:2]}/{sha}"
        self.storage.routes[blob] = storage = Route(body)
        self.hub.routes[f"/{repo}/resolve/{revision}/{filename}"] = Route(
            redirect_to=self.storage.url + blob,
            headers={"X-Linked-Size": str(announced_size if announced_size is not None else len(body)),
                     "X-Linked-Etag": f'"{sha}"', "ETag": f'"{sha}"', "X-Repo-Commit": COMMIT, **CLOSE},
        )  # fmt: skip
        return storage

    def add_git(self, repo: str, filename: str, body: bytes, *, revision: str = "main") -> Route:
        """A small file kept in git: no SHA-256 from the hub, only a git blob id."""
        blob_id = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()  # noqa: S324 (git's own id)
        route = Route(body, headers={"ETag": f'"{blob_id}"', "X-Repo-Commit": COMMIT, **CLOSE})
        self.hub.routes[f"/{repo}/resolve/{revision}/{filename}"] = route
        return route
