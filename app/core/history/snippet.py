"""Search results shaped for a chat list: one row per chat, with a snippet of text around the match.

Qt-free (the desktop sidebar shows these; a CLI or the phone could too). `HistoryStore.search` returns every matching
message; `chat_matches` keeps the newest match of each chat and cuts a snippet around it, so a reader sees why the
chat matched and where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.core.history.store import Chat, Message

SNIPPET_RADIUS = 36  # characters kept on each side of the match (then cut back to a word boundary)
ELLIPSIS = "…"


@dataclass(frozen=True)
class Snippet:
    """`text` with the match at text[start:start + length] (the text may begin or end with an ellipsis)."""

    text: str
    start: int
    length: int

    @property
    def match(self) -> str:
        return self.text[self.start : self.start + self.length]


@dataclass(frozen=True)
class ChatMatch:
    """One chat found by a search: the chat and a snippet of its newest matching message (None: only the title
    matched)."""

    chat: Chat
    snippet: Snippet | None


def snippet(text: str, query: str, radius: int = SNIPPET_RADIUS) -> Snippet | None:
    """The words around the first case-insensitive match of `query` in `text` (whitespace runs read as one space),
    or None when it does not occur."""
    flat = " ".join(text.split())
    needle = " ".join(query.split())
    if not needle:
        return None
    found = re.search(re.escape(needle), flat, re.IGNORECASE)
    if found is None:
        return None
    begin, end = found.start(), found.end()
    left = max(0, begin - radius)
    if left > 0:  # start on a word: drop the partial word the cut landed in
        space = flat.find(" ", left, begin)
        left = space + 1 if space != -1 else left
    right = min(len(flat), end + radius)
    if right < len(flat):
        space = flat.rfind(" ", end, right)
        right = space if space != -1 else right
    prefix = ELLIPSIS if left > 0 else ""
    suffix = ELLIPSIS if right < len(flat) else ""
    return Snippet(prefix + flat[left:right] + suffix, len(prefix) + begin - left, end - begin)


def chat_matches(results: list[tuple[Chat, Message]], query: str) -> list[ChatMatch]:
    """One entry per chat, in the order of `results` (newest match first): the snippet comes from the chat's newest
    message that contains the query; a chat found by its title alone has no snippet."""
    order: list[int] = []
    chats: dict[int, Chat] = {}
    snippets: dict[int, Snippet | None] = {}
    for chat, message in results:
        if chat.id not in chats:
            order.append(chat.id)
            chats[chat.id] = chat
            snippets[chat.id] = None
        if snippets[chat.id] is None:
            snippets[chat.id] = snippet(message.text, query)
    return [ChatMatch(chats[chat_id], snippets[chat_id]) for chat_id in order]
