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


class AnswerText:
    """Token bytes in, text a person may see out.

    UTF-8 characters split across byte tokens are held until complete, stop strings are held back and cut, and the
    leading space SentencePiece puts on an answer's first word is dropped. `raw` keeps everything decoded.
    """

    def __init__(self, stops: Iterable[str] = ()) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(stops)
        self._raw: list[str] = []
        self._shown: list[str] = []

    @property
    def raw(self) -> str:
        return "".join(self._raw)

    @property
    def shown(self) -> str:
        return "".join(self._shown)

    def feed(self, data: bytes) -> tuple[str, bool]:
        """(text to show now, whether a stop string was reached)."""
        piece = self._decoder.decode(data)
        self._raw.append(piece)
        visible, hit = self._stops.feed(piece)
        return self._show(visible), hit

    def close(self, *, stopped: bool) -> str:
        """The last text to show: bytes still held, and held-back text that turned out not to be a stop string."""
        tail = self._decoder.decode(b"", final=True)
        self._raw.append(tail)
        visible, _ = self._stops.feed(tail)
        if not stopped:
            visible += self._stops.flush()
        return self._show(visible)

    def _show(self, text: str) -> str:
        if not self._shown:
            text = text.lstrip()
        if text:
            self._shown.append(text)
        return text
