"""Stop strings in a token stream: hold back text that might be the start of a stop string."""

from __future__ import annotations

from collections.abc import Iterable


class StopMatcher:
    """Feed decoded pieces; get back what is safe to show, and whether a stop string was reached."""

    def __init__(self, stops: Iterable[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._held = ""
        self.hit: str | None = None

    def feed(self, piece: str) -> tuple[str, bool]:
        if self.hit is not None:
            return "", True
        if not self._stops:
            return piece, False
        text = self._held + piece
        earliest = -1
        for stop in self._stops:
            index = text.find(stop)
            if index != -1 and (earliest == -1 or index < earliest):
                earliest, self.hit = index, stop
        if earliest != -1:
            self._held = ""
            return text[:earliest], True
        keep = self._longest_stop_prefix_at_end(text)
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """At the end of generation, what was held back was not a stop string after all."""
        held, self._held = self._held, ""
        return held

    def _longest_stop_prefix_at_end(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best
