"""Search snippets (Qt-free): the words around the match, the match's place in them, one entry per chat."""

from __future__ import annotations

from app.core.history.snippet import chat_matches, snippet
from app.core.history.store import HistoryStore


def test_snippet_cuts_on_words_around_the_match_and_marks_where_it_is():
    text = "The kettle is on the stove, the red mug with the chipped handle is next to it, and the sugar is gone."
    found = snippet(text, "CHIPPED handle", radius=20)
    assert found.text == "…red mug with the chipped handle is next to it, and…"
    assert found.match == "chipped handle"


def test_a_match_near_the_start_or_end_has_no_ellipsis_there():
    assert snippet("Red ball on the table", "red").text == "Red ball on the table"
    assert snippet("Red ball on the table", "TABLE").match == "table"


def test_line_breaks_and_runs_of_spaces_read_as_one_space():
    found = snippet("First line\n\n  second   line with a cat", "second line")
    assert found.text == "First line second line with a cat"
    assert found.match == "second line"


def test_no_match_and_an_empty_query_give_no_snippet():
    assert snippet("nothing here", "zebra") is None
    assert snippet("nothing here", "   ") is None


def test_chat_matches_gives_one_entry_per_chat_newest_match_first(tmp_path):
    store = HistoryStore(tmp_path)
    try:
        older = store.create_chat()
        store.add_user_message(older, "Where is the green cup?")
        newer = store.create_chat(title="Cups")
        store.add_user_message(newer, "Count the plates")
        store.add_user_message(newer, "And the cups on the shelf?")
        store.add_user_message(newer, "Any green cup there?")
        found = chat_matches(store.search("green cup"), "green cup")
        assert [(m.chat.id, m.snippet.text if m.snippet else None) for m in found] == [
            (newer, "Any green cup there?"), (older, "Where is the green cup?")]  # fmt: skip
        by_title = chat_matches(store.search("Cups"), "Cups")
        assert [(m.chat.id, m.snippet.text if m.snippet else None) for m in by_title] == [
            (newer, "And the cups on the shelf?")]  # fmt: skip
    finally:
        store.close()
