"""Who answers: this computer's engine or a server, as Settings → Engine says, behind the one `Answerer` protocol.

    answering = answerer_for(settings, data_dir=base, current=previous_answerer)   # blocking: off the GUI thread
    session = ChatSession(answering.answerer, history, model_id=answering.model_id)
    status(answering.where)   # "this computer", or the server's host: the frames go there

- "This computer" (`engine == "local"`): the model files in Settings, checked and test-loaded before the engine that
  was answering is replaced (`switch_engine`: a refused pair keeps the old one, and `Answering.problem` says why).
- "A server" (`engine == "server"`): any OpenAI-compatible vision server, through the standard-library client
  (`RemoteAnswerer`, blocking like the local engine's stream, so `ChatSession` drives both the same way). The token
  is read from its own 0600 file (`app.core.settings.token_path`), a self-signed certificate is trusted through its
  CA file or pinned fingerprint, and the server is asked for its model list before any frame is sent: unreachable,
  a wrong token, an unknown model or a model without vision fail here with a message saying what to do. Never a
  silent fallback to this computer: the user chose where the frames go.

Everything here blocks (loading a model, reading the network): call it on a worker thread or through
`asyncio.to_thread`. Standard library only for the server side, so the phone can use `server_answerer`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from app.core.errors import LlavaCamError
from app.core.inference.answerer import THIS_COMPUTER, Answerer, model_name
from app.core.remote.protocol import RemoteError, ServerConfig, unreachable
from app.core.remote.stdlib import RemoteAnswerer, RemoteChat
from app.core.remote.trust import TrustError, ca_file_context, pinned_context
from app.core.settings import Settings, load_server_token

if TYPE_CHECKING:
    from app.core.inference.engine import ModelInfo

LIST_TIMEOUT_S = 10.0  # listing a server's models for the Settings dialog: a dead address must not hang it long
NO_LOCAL_MODEL = "No model configured: choose the model files in Settings (Ctrl+,) or download a pair in File → Models…"


class EngineChoiceError(LlavaCamError):
    """What was chosen in Settings → Engine cannot answer. The message says what to do; `kind` is a RemoteError's
    kind for a server ("unreachable", "unauthorized", "unknown_model", "no_vision", ...), "trust" for a token file
    or certificate setting, "local" for this computer's model."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Answering:
    """The answerer Settings chose, and what the window says about it."""

    answerer: Answerer
    where: str  # THIS_COMPUTER, or the server's host (the window says "frames go to HOST")
    model_id: str  # what answers, as history records it: the local model's name or the server's model id
    remote: bool
    problem: str | None = None  # local only: why the files asked for were refused (the previous model answers)
    info: ModelInfo | None = None  # local only

    @property
    def label(self) -> str:
        return self.model_id if not self.remote else f"{self.model_id} on {self.where}"


def answerer_for(
    settings: Settings,
    *,
    data_dir: str | os.PathLike[str],
    current: Answerer | None = None,
    token: str | None = None,
    load_progress: Callable[[float], None] | None = None,
    probe_starting: Callable[[], object] | None = None,
) -> Answering:
    """The answerer for `settings`: the local engine (replacing `current` if it is one) or a server's client.

    `token`: the server's token (None: the stored one). Raises EngineChoiceError when nothing can answer."""
    if settings.uses_server:
        return server_answering(settings, data_dir=data_dir, token=token)
    return local_answering(settings, data_dir=data_dir, current=current, load_progress=load_progress,
                           probe_starting=probe_starting)  # fmt: skip


def close_answerer(answerer: Answerer | None) -> None:
    """Let go of an answerer that is being replaced: the local engine frees its model, a server's stream closes."""
    if answerer is None:
        return
    answerer.cancel()
    close = getattr(answerer, "close", None)
    if close is not None:
        close()


# --- this computer -------------------------------------------------------------------------------------------------


def local_answering(
    settings: Settings,
    *,
    data_dir: str | os.PathLike[str],
    current: Answerer | None = None,
    load_progress: Callable[[float], None] | None = None,
    probe_starting: Callable[[], object] | None = None,
) -> Answering:
    from app.core.inference.engine import Engine
    from app.core.models.switch import switch_engine

    if not settings.model_path:
        raise EngineChoiceError(NO_LOCAL_MODEL, "local")
    engine = current if isinstance(current, Engine) else None
    if current is not None and engine is None:
        close_answerer(current)  # a server's client: nothing to fall back to
    result = switch_engine(engine, settings.model_path, settings.mmproj_path or None, settings.engine_config(),
                           data_dir=data_dir, load_progress=load_progress,
                           probe_starting=probe_starting)  # fmt: skip
    if result.engine is None:
        raise EngineChoiceError(result.error or "The model could not be loaded.", "local")
    info = result.engine.info
    return Answering(result.engine, THIS_COMPUTER, info.name, remote=False, problem=result.error, info=info)


# --- a server --------------------------------------------------------------------------------------------------------


def server_config(settings: Settings, token: str | None) -> ServerConfig:
    """Where the server is, from Settings; a bad address is an EngineChoiceError saying what to give."""
    try:
        return ServerConfig(settings.server_url.strip(), token or None, settings.server_model.strip() or None)
    except RemoteError as exc:
        raise choice_error(exc) from exc


def tls_context(url: str, ca_file: str | os.PathLike[str] | None, fingerprint: str | None) -> ssl.SSLContext | None:
    """The SSL context the trust settings ask for (None: the system's CAs, or plain http).

    With a fingerprint the server's certificate is read before anything (token, frames) is sent, and must match."""
    if ca_file and fingerprint:
        raise TrustError("give either a CA file or a certificate fingerprint, not both")
    parts = urlsplit(url.strip())
    if parts.scheme != "https":
        return None
    if ca_file:
        return ca_file_context(Path(ca_file).expanduser())
    if fingerprint:
        try:
            pem = ssl.get_server_certificate((parts.hostname or "", parts.port or 443), timeout=10)
        except (OSError, ssl.SSLError) as exc:
            raise unreachable(ServerConfig(url.strip()), exc) from exc
        return pinned_context(ssl.PEM_cert_to_DER_cert(pem), fingerprint)
    return None


def server_chat(settings: Settings, token: str | None, *, timeout: float = 300.0) -> RemoteChat:
    """A standard-library client for the server in Settings (nothing is sent yet, the certificate aside)."""
    config = server_config(settings, token)
    try:
        context = tls_context(config.url, settings.server_ca_file or None, settings.server_fingerprint or None)
    except (RemoteError, TrustError) as exc:
        raise choice_error(exc) from exc
    return RemoteChat(config.url, config.token, config.model, timeout, context=context)


def server_models(settings: Settings, token: str | None) -> list[str]:
    """The model ids the server lists (GET /v1/models), for Settings' model list. Blocking: off the GUI thread."""
    chat = server_chat(settings, token, timeout=LIST_TIMEOUT_S)
    try:
        return chat.models()
    except RemoteError as exc:
        raise choice_error(exc) from exc


def server_answering(settings: Settings, *, data_dir: str | os.PathLike[str], token: str | None = None) -> Answering:
    """Connect to the server in Settings: its token taken, the model served and able to see, before a frame goes."""
    if not settings.server_url.strip():
        raise EngineChoiceError("No server address: enter one in Settings → Engine (such as http://192.168.1.20:8080), "
                                "or choose This computer there.", "unreachable")  # fmt: skip
    if token is None:
        try:
            token = load_server_token(Path(data_dir))
        except TrustError as exc:
            raise choice_error(exc) from exc
    chat = server_chat(settings, token)
    try:
        entry = chat.connect()
    except RemoteError as exc:
        raise choice_error(exc) from exc
    model = str(entry.get("id"))
    answerer = RemoteAnswerer(chat, settings.system_prompt or None, model=model)
    return Answering(answerer, chat.config.host, model, remote=True)


# --- what the window says ---------------------------------------------------------------------------------------------

_FIXES = {
    "unreachable": "check the server's address in Settings → Engine",
    "unauthorized": "enter the token the server was started with in Settings → Engine",
    "unknown_model": "pick one of the server's models in Settings → Engine (Refresh lists them)",
    "no_vision": "pick a vision model in Settings → Engine",
    "image_ignored": "pick a vision model in Settings → Engine",
    "list_content": "start the server as said, or choose another server in Settings → Engine",
    "trust": "check the CA file or certificate fingerprint in Settings → Engine",
}


def choice_error(exc: LlavaCamError) -> EngineChoiceError:
    """A server's failure (or a trust problem) as a notice that says what happened and what to do."""
    kind = getattr(exc, "kind", "trust" if isinstance(exc, TrustError) else "refused")
    text = str(exc).rstrip(".")
    fix = _FIXES.get(kind, "check the server in Settings → Engine")
    return EngineChoiceError(f"{text[:1].upper()}{text[1:]}. To go on: {fix}, or switch back to This computer there.",
                             kind)  # fmt: skip


def describe(answering: Any) -> str:
    """The status line's words for who answers: "demo on this computer" or "frames go to HOST (model)"."""
    if answering.remote:
        return f"frames go to {answering.where} ({model_name(answering.model_id)})"
    return f"{answering.model_id} on {THIS_COMPUTER}"
