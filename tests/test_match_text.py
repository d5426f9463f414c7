"""The tokenizer's fast paths (bytes for ASCII, one table for common non-ASCII characters) give the
words the full fold gives: for every table character next to every ASCII character and every other
table character, and for random text with marks, Greek, markup and LaTeX mixed in."""

from __future__ import annotations

import re
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.match.text import _FOLD_TABLE, fold, tokenize

TABLE = "".join(map(chr, sorted(_FOLD_TABLE)))
# "<" and "\\" send any text down the full fold, so they cannot test the table.
NEIGHBOURS = "".join(c for c in string.printable if c not in "<\\")


def folded_words(text: str) -> list[str]:
    """The words as the full fold sees them: NFKC, casefold, markup, accents, then letters and digits."""
    return re.findall(r"[^\W_]+", fold(text))


def test_table_characters_fold_alone_as_in_context() -> None:
    for char in TABLE:
        for text in (char.join(NEIGHBOURS) + char, char + char.join(TABLE), "x" + char + "y"):
            assert tokenize(text) == folded_words(text), repr(char)


def test_ascii_fast_path_is_the_fold() -> None:
    text = "".join(chr(c) for c in range(128)) + " KV-Cache_of GPT4o/x2 " + string.printable * 3
    assert tokenize(text) == folded_words(text) == re.findall("[a-z0-9]+", text.lower())


def test_common_non_ascii_text() -> None:
    assert tokenize("Café – “KV‑cache” straße’s Đào ×2 ≤ 4…") == [
        "cafe", "kv", "cache", "strasse", "s", "dao", "2", "4"]
    assert tokenize("Trí Đào, e\u0301te\u0301 µ-law") == ["tri", "dao", "ete", "μ", "law"]
    assert tokenize(r"\mathrm{KV}–cache <i>é</i>") == ["kv", "cache", "e"]


ALPHABET = st.sampled_from(
    [*"aZ9 -_/,.é<>\\\u0301\u0308\u0338μΣσςß", *TABLE[::7], "<i>", "</b>", r"\emph", "<span x='é'>"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join))
def test_random_text_folds_as_the_full_fold(text: str) -> None:
    assert tokenize(text) == folded_words(text)
