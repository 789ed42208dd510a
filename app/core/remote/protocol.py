"""The OpenAI-compatible chat protocol, with no I/O of its own: both transports (asyncio over httpx on the desktop
and the CLI, the standard library on Pyto) build their requests and read their replies here.

- Requests: each turn's frame is downscaled to what the model needs and encoded once as a JPEG data URL, placed
  before the question in the message's content (several servers answer worse otherwise); follow-ups send the whole
  conversation, reusing the earlier turns' data URLs.
- Replies: server-sent events are fed in as bytes (`SSEDecoder`) into a `StreamState`, which collects the text, the
  finish reason, `usage` and the server's `timings` when it gives them (`llavacam serve`, llama-server).
- Failures become a `RemoteError` whose `kind` a front end can act on and whose message says what to do.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.core.errors import LlavaCamError, printable
from app.core.inference.images import RGBImage, downscale
from app.core.inference.sampling import SamplingSettings

# Without a hint from the server, frames are sent at most this large (twice the usual 336-512 px encoder input).
DEFAULT_MAX_IMAGE_SIDE = 1024
JPEG_QUALITY = 85
# No vision encoder we know turns a frame into fewer positions than this (SmolVLM-256M: 64; LLaVA-1.5: 576).
MIN_IMAGE_TOKENS = 32


class RemoteError(LlavaCamError):
    """The server is unreachable, refused the request, or answered something that is not a chat reply.

    `kind` is one of: "unreachable", "unauthorized", "unknown_model", "no_vision", "image_ignored",
    "list_content", "refused", "broken", "invalid_output".
    """

    def __init__(self, message: str, kind: str = "refused", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class ServerConfig:
    """Where the engine is: a base URL (with or without /v1), an optional token, and the model to ask for."""

    url: str
    token: str | None = field(default=None, repr=False)  # never in a log or a traceback's locals
    model: str | None = None  # None: the server's first (often only) model
    timeout: float = 300.0
    max_image_side: int = DEFAULT_MAX_IMAGE_SIDE

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"{printable(self.url, limit=200)!r} is not a server address: give one such as "
                              "http://192.168.1.20:8080", kind="unreachable")  # fmt: skip

    @property
    def api_base(self) -> str:
        """The URL under which /models and /chat/completions live."""
        base = self.url.strip().rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"

    @property
    def host(self) -> str:
        """What the window names as where the frames go."""
        parts = urlsplit(self.url.strip())
        return parts.netloc.rpartition("@")[2] or str(parts.hostname)

    def headers(self, *, stream: bool = False) -> dict[str, str]:
        headers = {"Content-Type": "application/json",
                   "Accept": "text/event-stream" if stream else "application/json"}  # fmt: skip
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


def image_data_url(image: RGBImage, max_side: int = DEFAULT_MAX_IMAGE_SIDE, quality: int = JPEG_QUALITY) -> str:
    """The frame as a JPEG data URL, downscaled so its longer side is at most `max_side`."""
    if max(image.width, image.height) > max_side:
        image = downscale(image, max_side)
    return "data:image/jpeg;base64," + base64.b64encode(image.to_jpeg(quality)).decode("ascii")


class ImageEncodings:
    """Each frame encoded once: a session that hands over the whole conversation before every question (as
    ChatSession does) gets the earlier frames' data URLs back instead of encoding them again."""

    def __init__(self, max_side: int = DEFAULT_MAX_IMAGE_SIDE, keep: int = 16) -> None:
        self.max_side = max_side
        self.keep = keep
        self._urls: dict[str, str] = {}
        self.encoded = 0  # how many encodes ran (the tests count them)

    def url(self, image: RGBImage) -> str:
        key = image.digest
        found = self._urls.pop(key, None)
        if found is None:
            found = image_data_url(image, self.max_side)
            self.encoded += 1
        self._urls[key] = found  # most recent last
        while len(self._urls) > self.keep:
            self._urls.pop(next(iter(self._urls)))
        return found


def user_message(question: str, image_url: str | None = None) -> dict[str, Any]:
    """A user message; the image (a data URL) comes before the question."""
    if image_url is None:
        return {"role": "user", "content": question}
    return {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                        {"type": "text", "text": question}]}  # fmt: skip


@dataclass
class SentTurn:
    question: str
    image_url: str | None
    answer: str | None = None  # None while it is being answered


@dataclass
class Conversation:
    """The conversation as the server is sent it: earlier turns with their encoded images, then the new one."""

    system_prompt: str | None = None
    turns: list[SentTurn] = field(default_factory=list)

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.system_prompt:
            out.append({"role": "system", "content": self.system_prompt})
        for turn in self.turns:
            out.append(user_message(turn.question, turn.image_url))
            if turn.answer is not None:
                out.append({"role": "assistant", "content": turn.answer})
        return out

    def text_chars(self) -> int:
        return len(self.system_prompt or "") + sum(len(t.question) + len(t.answer or "") for t in self.turns)


def chat_body(
    messages: Sequence[dict[str, Any]],
    sampling: SamplingSettings,
    *,
    model: str | None,
    stream: bool = True,
    response_format: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": list(messages), "stream": stream, "max_tokens": sampling.max_tokens,
                            "temperature": sampling.temperature, "top_p": sampling.top_p}  # fmt: skip
    if model:
        body["model"] = model
    if sampling.seed is not None:
        body["seed"] = sampling.seed
    if sampling.stop:
        body["stop"] = list(sampling.stop)
    if stream:
        body["stream_options"] = {"include_usage": True}  # so prompt_tokens arrives in the last chunk
    if response_format is not None:
        body["response_format"] = response_format
    return body


def model_ids(payload: bytes) -> list[str]:
    """The ids listed by GET /v1/models."""
    try:
        data = json.loads(payload)
        return [str(m["id"]) for m in data.get("data", [])]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RemoteError("the server's model list is not an OpenAI model list: is this an OpenAI-compatible "
                          "server?", kind="broken") from exc  # fmt: skip


def model_entry(payload: bytes, name: str | None) -> dict[str, Any]:
    """The /v1/models entry for `name` (or the first), or RemoteError("unknown_model") listing what is served."""
    try:
        entries = [m for m in json.loads(payload).get("data", []) if isinstance(m, dict)]
    except (ValueError, AttributeError) as exc:
        raise RemoteError("the server's model list is not an OpenAI model list", kind="broken") from exc
    if not entries:
        raise RemoteError("the server lists no models: load one on the server", kind="unknown_model")
    if name is None:
        return entries[0]
    for entry in entries:
        if entry.get("id") == name:
            return entry
    served = ", ".join(repr(str(e.get("id"))) for e in entries[:8])
    raise RemoteError(f"the server has no model {printable(name, limit=100)!r}; it serves {served}: pick one of "
                      "those", kind="unknown_model")  # fmt: skip


def _error_message(payload: bytes) -> str:
    try:
        data = json.loads(payload)
    except ValueError:
        return printable(payload.decode("utf-8", "replace").strip(), limit=300)
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data))
        if isinstance(error, dict):
            error = error.get("message", error)
        return printable(error, limit=300)
    return printable(data, limit=300)


LIST_CONTENT_FAILURE = 'can only concatenate str (not "list") to str'


def error_for_status(status: int, payload: bytes, config: ServerConfig, *, sent_image: bool) -> RemoteError:
    """A non-2xx reply as our own error, with what to do next."""
    message = _error_message(payload)
    where = config.host
    if status in (401, 403):
        return RemoteError(f"{where} refused the token ({message}): give the token the server was started with",
                           kind="unauthorized", status=status)  # fmt: skip
    code = ""
    try:
        error = json.loads(payload).get("error")
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
    except (ValueError, AttributeError):
        pass
    if code == "model_not_found" or (status == 404 and "model" in message.lower()):
        return RemoteError(f"{where} has no such model ({message}): pick one from its list",
                           kind="unknown_model", status=status)  # fmt: skip
    if LIST_CONTENT_FAILURE in message:
        return RemoteError(
            f"{where} cannot read a message holding an image: its chat template joins text only (the server said "
            f"HTTP {status} {message!r}). On llama-cpp-python's server this means the model's template cannot take "
            "an image: start it with --clip_model_path and a --chat_format that places images for this model "
            "(such as llava-1-5), or choose a server that reads the model's own template (llavacam serve, "
            "llama-server)", kind="list_content", status=status)  # fmt: skip
    if code == "no_vision" or (sent_image and any(w in message.lower() for w in ("vision", "mmproj", "multimodal"))):
        return RemoteError(f"the model on {where} has no vision ({message}): load a vision model with its projector "
                           "there, or ask without a frame", kind="no_vision", status=status)  # fmt: skip
    if status == 404:
        return RemoteError(f"{where} has no chat API at {config.api_base} (HTTP 404): check the address",
                           kind="unreachable", status=status)  # fmt: skip
    return RemoteError(f"{where} refused the request (HTTP {status}): {message}", kind="refused", status=status)


def unreachable(config: ServerConfig, reason: object) -> RemoteError:
    return RemoteError(f"cannot reach {config.host} ({printable(reason, limit=200)}): is the computer on, and the "
                       "server running at that address?", kind="unreachable")  # fmt: skip


def broken_stream(config: ServerConfig, reason: object) -> RemoteError:
    return RemoteError(f"the connection to {config.host} broke during the answer ({printable(reason, limit=200)})",
                       kind="broken")  # fmt: skip


# Some servers (llama-cpp-python's) fail inside a stream they already answered 200 to, and send nothing. Both
# transports then ask once more, not streamed and for one token, to learn what the server says (`probe_body`), and
# name what it said (`silent_stream_error`).
SILENT_STREAM = "the server ended the stream without an answer"


def carries_image(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether the conversation sent holds an image (a message whose content is a list of parts). Both transports
    name errors by this: a server re-reads every image in the conversation, so a follow-up asked without a new frame
    still sends the first one."""
    return any(isinstance(m.get("content"), list) for m in messages)


def probe_body(messages: Sequence[dict[str, Any]], sampling: SamplingSettings, *, model: str | None) -> dict[str, Any]:
    """The same conversation asked whole for one token: a server that failed silently in the stream says why."""
    return chat_body(messages, sampling.with_(max_tokens=1), model=model, stream=False)


def silent_stream_error(config: ServerConfig, said: RemoteError, *, sent_image: bool) -> RemoteError:
    """The error for a stream that ended without an answer, `said` being what the probe met (an HTTP error it
    mapped, or the stream or the server gone). With an image in the conversation, a server gone or silent means a
    chat template that cannot take one (llama-cpp-python's server with --chat_format mtmd exits after such a stream)."""
    if not sent_image or said.kind not in ("broken", "unreachable"):
        return said
    return RemoteError(
        f"{config.host} ended the stream without an answer ({said}). A server whose chat template cannot take an "
        "image does this (llama-cpp-python's server with --chat_format mtmd and a template that joins text, as "
        "TinyLlama's does): start it with a --chat_format that places images for this model (such as llava-1-5), or "
        "use llavacam serve or llama-server", kind="list_content")  # fmt: skip


class SSEDecoder:
    """Server-sent events from a byte stream, fed in any chunking: `feed` returns the complete `data:` payloads."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self.done = False  # "[DONE]" seen

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        out: list[str] = []
        while True:
            line, sep, rest = self._buffer.partition(b"\n")
            if not sep:
                return out
            self._buffer = rest
            text = line.rstrip(b"\r").decode("utf-8", "replace")
            if not text:  # a blank line ends an event
                if self._data:
                    out.append("\n".join(self._data))
                    self._data = []
                continue
            if text.startswith(":"):
                continue  # a comment (keep-alive ping)
            name, _, value = text.partition(":")
            if name == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)

    def close(self) -> list[str]:
        """An event left without its blank line when the stream ends."""
        out = self.feed(b"\n\n") if self._buffer else []
        if self._data:
            out.append("\n".join(self._data))
            self._data = []
        return out


@dataclass
class StreamState:
    """What a streamed (or whole) reply said so far."""

    started: float = field(default_factory=time.perf_counter)
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    first_piece_at: float | None = None
    done: bool = False
    pieces: int = 0
    accepted: bool = False  # the server answered 200 and began the stream

    def apply(self, data: str) -> list[str]:
        """One event's payload -> the text pieces it carries. Raises RemoteError on an error event."""
        if data.strip() == "[DONE]":
            self.done = True
            return []
        try:
            event = json.loads(data)
        except ValueError as exc:
            raise RemoteError(f"the server sent something that is not JSON: {printable(data, limit=80)}",
                              kind="broken") from exc  # fmt: skip
        if not isinstance(event, dict):
            raise RemoteError("the server sent an event that is not a JSON object", kind="broken")
        if "error" in event:
            raise RemoteError(f"the server failed during the answer: {_error_message(data.encode())}",
                              kind="list_content" if LIST_CONTENT_FAILURE in data else "refused")  # fmt: skip
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        if isinstance(event.get("timings"), dict):
            self.timings = event["timings"]
        out: list[str] = []
        for choice in event.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            part = choice.get("delta") or choice.get("message") or {}
            piece = part.get("content") if isinstance(part, dict) else None
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
            if isinstance(piece, str) and piece:
                if self.first_piece_at is None:
                    self.first_piece_at = time.perf_counter()
                self.text += piece
                self.pieces += 1
                out.append(piece)
        return out

    def apply_whole(self, payload: bytes) -> str:
        """A non-streamed reply: its text."""
        self.apply(payload.decode("utf-8", "replace"))
        self.done = True
        return self.text

    @property
    def prompt_tokens(self) -> int | None:
        value = self.usage.get("prompt_tokens", self.timings.get("prompt_n"))
        return int(value) if isinstance(value, (int, float)) else None

    def ttft_ms(self) -> float:
        if self.first_piece_at is None:
            return 0.0
        return (self.first_piece_at - self.started) * 1000.0


def check_image_seen(state: StreamState, conversation: Conversation, config: ServerConfig) -> None:
    """A server that drops the image still answers: its prompt_tokens is then too small to hold an image."""
    tokens = state.prompt_tokens
    if tokens is None:
        return  # the server does not say: nothing to check
    encode_ms = state.timings.get("image_encode_ms")
    if state.timings.get("image_cached") is True or (isinstance(encode_ms, (int, float)) and encode_ms > 0):
        return  # the server says it encoded the image, or kept its encoding (llavacam serve counts new positions only)
    text_floor = conversation.text_chars() // 6  # fewer tokens than this cannot hold the text alone
    if tokens < text_floor + MIN_IMAGE_TOKENS:
        raise RemoteError(
            f"{config.host} answered without looking at the frame: the prompt it read was {tokens} tokens, too few to "
            "hold an image. The server drops images (a text-only model, or a server without vision support): "
            "load a vision model with its projector there, or ask without a frame",
            kind="image_ignored")  # fmt: skip


def validate_json_output(text: str, schema: dict[str, Any]) -> Any:
    """The answer parsed as JSON and checked against the schema's basic rules (type, required, properties, enum).

    Servers that ignore `response_format` still answer: this says so instead of passing on free text."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise RemoteError(f"the server ignored the requested JSON format: its answer is not JSON "
                          f"({printable(text, limit=80)!r})", kind="invalid_output") from exc  # fmt: skip
    problem = _schema_problem(value, schema, "answer")
    if problem:
        raise RemoteError(f"the server ignored the requested JSON format: {problem}", kind="invalid_output")
    return value


_TYPES: dict[str, tuple[type, ...]] = {"object": (dict,), "array": (list,), "string": (str,), "integer": (int,),
                                       "number": (int, float), "boolean": (bool,), "null": (type(None),)}  # fmt: skip


def _schema_problem(value: Any, schema: dict[str, Any], where: str) -> str | None:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind else []
    if kinds:
        ok = any(isinstance(value, _TYPES.get(k, object)) and not (k in ("integer", "number")
                 and isinstance(value, bool)) for k in kinds)  # fmt: skip
        if not ok:
            return f"{where} should be {' or '.join(kinds)}, not {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} should be one of {schema['enum']!r}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{where} lacks {name!r}"
        for name, sub in (schema.get("properties") or {}).items():
            if name in value and isinstance(sub, dict):
                problem = _schema_problem(value[name], sub, f"{where}.{name}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problem = _schema_problem(item, schema["items"], f"{where}[{index}]")
            if problem:
                return problem
    return None
