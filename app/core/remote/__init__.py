"""Engines on other machines: any OpenAI-compatible vision server.

`protocol` builds requests and reads replies (no I/O); `aio` is the asyncio transport (httpx) for the desktop and
the CLI; `stdlib` the standard-library one for the phone; `trust` keeps tokens private and trusts self-signed
certificates. Importing this package pulls in neither httpx nor llama.cpp.
"""

from __future__ import annotations

from app.core.remote.protocol import RemoteError, ServerConfig
from app.core.remote.stdlib import RemoteChat, user_message

__all__ = ["RemoteChat", "RemoteError", "ServerConfig", "user_message"]
