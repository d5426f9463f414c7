"""The rule ``query`` language, by recursive descent:

    query   := or
    or      := and ("OR" and)*
    and     := unary (["AND"] unary)*          adjacent terms are ANDed: kv cache = kv AND cache
    unary   := "NOT" unary | primary
    primary := "(" or ")" | FIELD ":" primary | "upvotes:" [>=|>|<=|<|=] INT | "phrase" | word

Fields are ``title:``, ``abstract:``, ``author:``, ``org:`` (a field before a group applies to
the group). Operators are upper case. Look-alikes that would quietly mean something else (``and``,
``-survey``, ``titel:kv``, ``upvotes>=10``) are errors with a hint; quoted, ``"and"`` is a word.
Errors carry a 1-based column.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from monitor.errors import QuerySyntaxError
from monitor.match.atoms import COMPARE, And, Author, Field, Node, Not, Or, Org, Term, Upvotes, make_term

Kind = Literal["(", ")", "phrase", "word", "field", "AND", "OR", "NOT"]
FieldName = Literal["any", "title", "abstract", "author", "org"]
MAX_DEPTH = 50
_FIELDS = ("title", "abstract", "author", "org", "upvotes")
_FIELD_PREFIX = re.compile(r"(title|abstract|author|org|upvotes):", re.I)
_UPVOTES = re.compile(r"(>=|<=|>|<|=)?(\d+)")
# A word that looks like a field (`titel:kv`, `authors:`), or upvotes with no colon (`upvotes>=10`).
_FIELD_LIKE = re.compile(r"([^\W\d_][\w-]*):")
_UPVOTES_NO_COLON = re.compile(r"upvotes?(>=|<=|>|<|=)(.*)", re.I)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Kind
    text: str
    column: int  # 1-based


# Typographic quotes, as a word processor or a chat app writes "kv cache", quote as '"' does.
_QUOTES = str.maketrans(dict.fromkeys("\u201c\u201d\u201e\u201f\u00ab\u00bb", '"'))


def _lex(text: str) -> list[_Token]:
    text = text.translate(_QUOTES)
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "()":
            tokens.append(_Token(ch, ch, i + 1))  # type: ignore[arg-type]
            i += 1
        elif ch == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError("unterminated quote", i + 1)
            tokens.append(_Token("phrase", text[i + 1:end], i + 1))
            i = end + 1
        elif field := _FIELD_PREFIX.match(text, i):
            tokens.append(_Token("field", field.group(1).lower(), i + 1))
            i = field.end()
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in '()"':
                i += 1
            word = text[start:i]
            _refuse_look_alike(word, start + 1)
            kind: Kind = word if word in ("AND", "OR", "NOT") else "word"  # type: ignore[assignment]
            tokens.append(_Token(kind, word, start + 1))
    return tokens


def _refuse_look_alike(word: str, column: int) -> None:
    """A bare word that a person most likely meant as an operator, a field or an exclusion: read as
    words it would change the rule's meaning without a sound, so it is an error with the fix."""
    if word.upper() in ("AND", "OR", "NOT") and word != word.upper():
        raise QuerySyntaxError(f'"{word}": write {word.upper()}, or quote "{word}" to mean the word', column)
    if word.startswith("-") and len(word) > 1:
        raise QuerySyntaxError(f"{word}: write NOT {word.lstrip('-')}", column)
    if upvotes := _UPVOTES_NO_COLON.fullmatch(word):
        raise QuerySyntaxError(f"{word}: write upvotes:{upvotes.group(1)}{upvotes.group(2)}", column)
    if field := _FIELD_LIKE.match(word):
        fields = ", ".join(f"{name}:" for name in _FIELDS)
        raise QuerySyntaxError(f'unknown field "{field.group(0)}" ({fields})', column)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0
        self.end_column = len(text) + 1
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def fail(self, message: str, token: _Token | None) -> QuerySyntaxError:
        return QuerySyntaxError(message, token.column if token else self.end_column)

    def parse(self) -> Node:
        if not self.tokens:
            raise QuerySyntaxError("empty query", 1)
        node = self.parse_or("any")
        extra = self.peek()
        if extra is not None:
            raise self.fail(f'unexpected "{extra.text}"', extra)
        return node

    def parse_or(self, field: FieldName) -> Node:
        children = [self.parse_and(field)]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.take()
            children.append(self.parse_and(field))
        return children[0] if len(children) == 1 else Or(tuple(children))

    def parse_and(self, field: FieldName) -> Node:
        children = [self.parse_unary(field)]
        while (token := self.peek()) is not None and token.kind not in (")", "OR"):
            if token.kind == "AND":
                self.take()
            children.append(self.parse_unary(field))
        return children[0] if len(children) == 1 else And(tuple(children))

    def parse_unary(self, field: FieldName) -> Node:
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.take()
            return Not(self.nested(token, self.parse_unary, field))
        return self.parse_primary(field)

    def nested(self, token: _Token, parse: Callable[[FieldName], Node], field: FieldName) -> Node:
        """``parse`` one level deeper; a query is a person's, so nesting has a sane limit (without one,
        a few thousand levels were a RecursionError, not a line naming the column)."""
        if self.depth == MAX_DEPTH:
            raise self.fail(
                f"nested too deeply (at most {MAX_DEPTH} levels of parentheses, NOT and fields)", token)
        self.depth += 1
        node = parse(field)
        self.depth -= 1
        return node

    def parse_primary(self, field: FieldName) -> Node:
        token = self.peek()
        if token is None:
            raise self.fail("expected a term", None)
        if token.kind in (")", "AND", "OR"):
            raise self.fail(f'expected a term, got "{token.text}"', token)
        self.take()
        if token.kind == "(":
            node = self.nested(token, self.parse_or, field)
            close = self.peek()
            if close is None or close.kind != ")":
                raise self.fail('expected ")"', close)
            self.take()
            return node
        if token.kind == "field":  # a level too: title:title:... is a recursion like ((...
            return self.nested(token, lambda _: self.parse_field(token), field)
        if token.kind == "NOT":  # a field followed by NOT: title:NOT x
            return Not(self.nested(token, self.parse_primary, field))
        return self.make_atom(token, field)

    def parse_field(self, token: _Token) -> Node:
        if token.text != "upvotes":
            return self.parse_primary(token.text)  # type: ignore[arg-type]
        value = self.peek()
        compare = _UPVOTES.fullmatch(value.text) if value is not None and value.kind == "word" else None
        if compare is None:
            raise self.fail("expected a number after upvotes:, e.g. upvotes:>=10", value)
        if len(compare.group(2)) > 9:  # no paper has more (past 4,300 digits int() would raise)
            raise self.fail("a number of upvotes up to 999999999, e.g. upvotes:>=10", value)
        self.take()
        op = compare.group(1) or ">="
        assert op in COMPARE
        return Upvotes(op, int(compare.group(2)))

    def make_atom(self, token: _Token, field: FieldName) -> Node:
        text = token.text.strip()
        if field == "author" or field == "org":
            if not any(ch.isalnum() for ch in text):
                raise self.fail(f'expected a name, got "{token.text}"', token)
            return Author(text) if field == "author" else Org(text)
        try:
            term: Term = make_term(text, field if field in ("title", "abstract") else "any")
        except ValueError as exc:
            raise self.fail(str(exc), token) from None
        return term


def parse_query(text: str) -> Node:
    """The boolean tree of a rule query; ``QuerySyntaxError(message, column)`` if it does not parse."""
    return _Parser(text).parse()


__all__ = ["Field", "QuerySyntaxError", "parse_query"]
