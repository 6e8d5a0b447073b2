"""``-k EXPR``: select checks by name or hypothesis id, pytest-style.

An expression is made of words combined with ``and``, ``or``, ``not`` and
parentheses. A word matches a check when it is a case-insensitive substring of
the check's name or of the id of a hypothesis it tests. The expression is
parsed by a small recursive-descent parser, never evaluated as Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Iterable

from runbook.outcomes import UsageError

#: A predicate over a check's lowercased names.
Matcher = Callable[[list[str]], bool]

_TOKEN = re.compile(r"\(|\)|[^\s()]+")


class _Parser:
    """expr := and ('or' and)*; and := not ('and' not)*; not := 'not' not | '(' expr ')' | WORD."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _TOKEN.findall(expression)
        self.position = 0

    def parse(self) -> Matcher:
        if not self.tokens:
            raise self._error("empty expression")
        matcher = self._or()
        if self.position != len(self.tokens):
            raise self._error(f"unexpected {self.tokens[self.position]!r}")
        return matcher

    def _error(self, problem: str) -> UsageError:
        return UsageError(f"-k: cannot parse expression {self.expression!r}: {problem}")

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise self._error("it ends too early")
        self.position += 1
        return token

    def _or(self) -> Matcher:
        terms = [self._and()]
        while self._peek() == "or":
            self._take()
            terms.append(self._and())
        return terms[0] if len(terms) == 1 else lambda names: any(t(names) for t in terms)

    def _and(self) -> Matcher:
        terms = [self._not()]
        while self._peek() == "and":
            self._take()
            terms.append(self._not())
        return terms[0] if len(terms) == 1 else lambda names: all(t(names) for t in terms)

    def _not(self) -> Matcher:
        token = self._take()
        if token == "not":
            inner = self._not()
            return lambda names: not inner(names)
        if token == "(":
            inner = self._or()
            if self._take() != ")":
                raise self._error("missing ')'")
            return inner
        if token in ("and", "or", ")"):
            raise self._error(f"unexpected {token!r}")
        word = token.lower()
        return lambda names: any(word in name for name in names)


def compile_keywords(expression: str) -> Callable[[Iterable[str]], bool]:
    """Return a predicate over a check's names; raise ``UsageError`` for a bad expression."""
    matcher = _Parser(expression).parse()

    def matches(names: Iterable[str]) -> bool:
        return matcher([name.lower() for name in names])

    return matches
