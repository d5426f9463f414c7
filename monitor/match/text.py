"""Text normalization shared by rules and papers: one fold, one tokenizer, so both sides agree.

Folding is NFKC, casefold, Latin accents dropped (é = e, ß = ss, Đ = d); every run of characters
that is not a letter or digit (hyphens, slashes, underscores, LaTeX and markup noise) breaks words.
"""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
# Diacritics in the Latin ranges only: stripping marks of other scripts would change their words.
_LATIN_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
# Letters that carry their "accent" in the letter itself, so NFKD leaves them alone.
_LETTERS = str.maketrans({
    "đ": "d", "ð": "d", "ł": "l", "ø": "o", "æ": "ae", "œ": "oe", "ı": "i", "þ": "th", "ħ": "h",
})
# `\mathrm{KV}` reads as KV; `<i>KV</i>` as KV. Only tags a title plausibly carries, so that
# `a<b and c>d` in an abstract is left alone.
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_MARKUP = re.compile(r"</?(?:i|b|em|strong|sub|sup|span|tt|code|br|p|a|math|mi|mo|mn|mrow|msub|msup)"
                     r"(?:\s[^<>]{0,200})?/?>", re.I)


def fold(text: str) -> str:
    """Case- and accent-folded text; word breaks are left as they are."""
    if text.isascii():
        if "\\" in text or "<" in text:
            text = _MARKUP.sub(" ", _LATEX_COMMAND.sub(" ", text))
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _MARKUP.sub(" ", _LATEX_COMMAND.sub(" ", text))
    text = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text)).translate(_LETTERS)
    return unicodedata.normalize("NFC", text)


def tokenize(text: str | None) -> list[str]:
    """The words of ``text``, folded, in order."""
    if not text:
        return []
    folded = fold(text)
    if folded.isascii():
        return _ASCII_WORD.findall(folded)
    return _WORD.findall(folded)


def normalize_phrase(text: str | None) -> str:
    """The words of ``text`` joined by single spaces: how organizations and names compare."""
    return " ".join(tokenize(text))


class PaperText:
    """A paper's title and abstract tokenized once: word sets, adjacent-word pairs, and the words
    joined with spaces (``" kv cache "``) so a phrase is a plain substring test on word bounds.
    """

    __slots__ = ("_abstract_text", "_title_text", "abstract_pairs", "abstract_words", "abstract_words_set",
                 "all_pairs", "all_words", "title_pairs", "title_words", "title_words_set")

    def __init__(self, title: str | None, abstract: str | None) -> None:
        self.title_words = tokenize(title)
        self.abstract_words = tokenize(abstract)
        self.title_words_set = set(self.title_words)
        self.abstract_words_set = set(self.abstract_words)
        self.all_words = self.title_words_set | self.abstract_words_set
        self.title_pairs = set(zip(self.title_words, self.title_words[1:], strict=False))
        self.abstract_pairs = set(zip(self.abstract_words, self.abstract_words[1:], strict=False))
        self.all_pairs = self.title_pairs | self.abstract_pairs
        self._title_text: str | None = None
        self._abstract_text: str | None = None

    @property
    def title_text(self) -> str:
        if self._title_text is None:
            self._title_text = " " + " ".join(self.title_words) + " "
        return self._title_text

    @property
    def abstract_text(self) -> str:
        if self._abstract_text is None:
            self._abstract_text = " " + " ".join(self.abstract_words) + " "
        return self._abstract_text
