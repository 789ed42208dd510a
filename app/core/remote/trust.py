"""Keeping a server's token private and trusting a home server's self-signed certificate.

The token file is created readable and writable by the user only (mode 0600) and refused when others can read it;
a certificate is trusted either through a CA file or by pinning its SHA-256 fingerprint (as `openssl x509
-fingerprint -sha256` prints it). Standard library only, so the phone build uses it too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import stat
from pathlib import Path

from app.core.errors import LlavaCamError


class TrustError(LlavaCamError):
    """A token file or certificate setting that cannot be used safely."""


def save_token(path: Path, token: str) -> None:
    """Write `token` to `path`, readable only by this user; a planted symlink is replaced, never written through."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen it, an inherited ACL aside
        os.write(fd, token.strip().encode("utf-8"))
    finally:
        os.close(fd)
    os.replace(temporary, path)


def load_token(path: Path) -> str | None:
    """The stored token, or None when there is none. Refuses a file others can read (someone changed its mode)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise TrustError(f"{path} is not a regular file: delete it and enter the token again")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TrustError(f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):o}): run "
                         f"`chmod 600 {path}` or delete it and enter the token again")  # fmt: skip
    return path.read_text(encoding="utf-8").strip() or None


def parse_fingerprint(text: str) -> bytes:
    """A SHA-256 fingerprint written as 64 hex digits, with or without colons (and an optional "sha256" prefix)."""
    cleaned = text.strip().lower().removeprefix("sha256").lstrip(":= ").replace(":", "").replace(" ", "")
    try:
        value = bytes.fromhex(cleaned)
    except ValueError:
        value = b""
    if len(value) != 32:
        raise TrustError(f"{text!r} is not a SHA-256 fingerprint: give the 64 hex digits `openssl x509 -noout "
                         "-fingerprint -sha256 -in cert.pem` prints")  # fmt: skip
    return value


def fingerprint_of(cert_der: bytes) -> str:
    digest = hashlib.sha256(cert_der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ca_file_context(ca_file: Path) -> ssl.SSLContext:
    """Verify the server against the CA (or self-signed certificate) in `ca_file`, host name included."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise TrustError(f"{ca_file}: not a readable PEM certificate ({exc})") from exc


def probe_context() -> ssl.SSLContext:
    """Only for reading a server's certificate before anything is sent: verifies nothing."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def pinned_context(cert_der: bytes, fingerprint: str) -> ssl.SSLContext:
    """Trust exactly the certificate whose fingerprint the user gave (after checking the server presented it).

    Host names are not checked: a home server's self-signed certificate rarely names the address it is reached at,
    and the pin is stronger than a name."""
    if hashlib.sha256(cert_der).digest() != parse_fingerprint(fingerprint):
        raise TrustError(f"the server's certificate has fingerprint {fingerprint_of(cert_der)}, not the one you "
                         "gave: if you did not change the server's certificate, someone may be in between")  # fmt: skip
    context = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(cert_der))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a pinned leaf signed by a private CA is enough
    return context
