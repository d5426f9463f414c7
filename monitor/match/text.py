"""Text normalization shared by rules and papers: one fold, one tokenizer, so both sides agree.

Folding is NFKC, casefold, Latin accents dropped (é = e, ß = ss, Đ = d); every run of characters
that is not a letter or digit (hyphens, slashes, underscores, LaTeX and markup noise) breaks words;
a LaTeX macro of a Greek letter or a function (``\\alpha``, ``\\log``) is its name, others go.
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
_LATEX_COMMAND = re.compile(r"\\([A-Za-z]+)")
# LaTeX macros that stand for a word a person would search for keep it: `Rényi $\alpha$-divergence`
# is found by "alpha divergence". Any other macro (\mathrm, \textbf, \emph, \frac, \left...) is
# formatting and goes.
_LATEX_WORDS = frozenset({
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta",
    "iota", "kappa", "lambda", "mu", "nu", "xi", "pi", "varpi", "rho", "varrho", "sigma", "varsigma",
    "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega",
    "log", "exp", "ln", "sin", "cos", "tan", "max", "min", "sup", "inf", "lim", "det", "argmax", "argmin",
})
_MARKUP = re.compile(r"</?(?:i|b|em|strong|sub|sup|span|tt|code|br|p|a|math|mi|mo|mn|mrow|msub|msup)"
                     r"(?:\s[^<>]{0,200})?/?>", re.I)
# ASCII bytes to what the fold makes of them: letters lowercased, digits kept, the rest a space.
_ASCII_FOLD = bytes(
    c | 0x20 if chr(c).isalpha() and c < 0x80 else c if chr(c).isdigit() and c < 0x80 else 0x20
    for c in range(256)
)


def _latex_word(command: re.Match[str]) -> str:
    """The word a LaTeX macro stands for (``\\alpha``: alpha, ``\\Gamma``: gamma), else a word break."""
    name = command.group(1).lower()
    return f" {name} " if name in _LATEX_WORDS else " "


def fold(text: str) -> str:
    """Case- and accent-folded text; word breaks are left as they are."""
    if text.isascii():
        if "\\" in text or "<" in text:
            text = _MARKUP.sub(" ", _LATEX_COMMAND.sub(_latex_word, text))
        return text.lower()
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _MARKUP.sub(" ", _LATEX_COMMAND.sub(_latex_word, text))
    text = _LATIN_MARKS.sub("", unicodedata.normalize("NFKD", text)).translate(_LETTERS)
    return unicodedata.normalize("NFC", text)


def _fold_table() -> dict[int, str]:
    """Common non-ASCII characters (accented Latin letters, dashes, quotes, spaces, arrows) mapped
    to what ``fold`` makes of each, or to a space for those that only break words. None of them is
    or starts with a mark, so none composes with a neighbour: folding one alone is folding it in
    context, and a text of ASCII and these characters folds by one ``str.translate``.
    tests/test_match_text.py checks every such character next to every ASCII one and to each other.
    """
    table: dict[int, str] = {}
    for code in (*range(0x80, 0x250), *range(0x2000, 0x2070), *range(0x2100, 0x2300)):
        char = chr(code)
        if unicodedata.category(unicodedata.normalize("NFKD", char)[0]).startswith("M"):
            continue
        folded = fold(char)
        if "<" in folded or "\\" in folded:
            continue
        if folded.isascii():
            table[code] = folded
        elif not _WORD.search(folded):
            table[code] = " "
    return table


_FOLD_TABLE = _fold_table()


def tokenize(text: str | None) -> list[str]:
    """The words of ``text``, folded, in order."""
    if not text:
        return []
    if not text.isascii():
        # Most text that is not ASCII is ASCII but for a few dashes, quotes or accented letters.
        translated = text.translate(_FOLD_TABLE)
        if not translated.isascii() or "\\" in translated or "<" in translated:
            return _WORD.findall(fold(text))
        text = translated
    elif "\\" in text or "<" in text:
        return _ASCII_WORD.findall(fold(text))
    # One C-level pass each: fold the bytes, split on the spaces.
    return text.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split()


def normalize_phrase(text: str | None) -> str:
    """The words of ``text`` joined by single spaces: how organizations and names compare."""
    return " ".join(tokenize(text))


class PaperText:
    """A paper's title and abstract words, tokenized once. What matching may ask of them, each
    field's words joined by spaces (`` kv cache ``: a phrase is a substring test on word bounds) and
    the set of all words, is made the first time it is asked for."""

    __slots__ = ("_abstract_text", "_title_text", "_words", "abstract_words", "title_words")

    def __init__(self, title_words: list[str], abstract_words: list[str]) -> None:
        self.title_words = title_words
        self.abstract_words = abstract_words
        self._title_text: str | None = None
        self._abstract_text: str | None = None
        self._words: set[str] | None = None

    @classmethod
    def of(cls, title: str | None, abstract: str | None) -> PaperText:
        return cls(tokenize(title), tokenize(abstract))

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

    @property
    def words(self) -> set[str]:
        if self._words is None:
            self._words = {*self.title_words, *self.abstract_words}
        return self._words

    def where(self, needle: str, field: str = "any") -> str | None:
        """``"title"`` or ``"abstract"``: the first field within ``field`` (``any``, ``title``,
        ``abstract``) whose words hold ``needle`` (``Term.needle``), else None."""
        if field != "abstract" and needle in self.title_text:
            return "title"
        if field != "title" and needle in self.abstract_text:
            return "abstract"
        return None

    def contains(self, needle: str) -> bool:
        """Whether the title or the abstract has ``needle``."""
        return self.where(needle) is not None
