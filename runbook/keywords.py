"""``-k EXPR``: select checks by name or hypothesis id, pytest-style.

An expression is made of words combined with ``and``, ``or``, ``not`` and
parentheses. A word matches a check when it is a case-insensitive substring of
the check's name or of the id of a hypothesis it tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Iterable

from runbook.outcomes import UsageError

_TOKEN = re.compile(r"\(|\)|[^\s()]+")
_OPERATORS = {"and", "or", "not"}


def compile_keywords(expression: str) -> Callable[[Iterable[str]], bool]:
    """Return a predicate over a check's names; raise ``UsageError`` for a bad expression."""
    tokens = _TOKEN.findall(expression)
    if not tokens:
        raise UsageError("-k: empty expression")
    words: list[str] = []
    parts: list[str] = []
    for token in tokens:
        if token in _OPERATORS or token in "()":
            parts.append(f" {token} ")
        else:
            parts.append(f"_w[{len(words)}]")
            words.append(token.lower())
    code = "".join(parts)
    try:
        compiled = compile(code, "<-k>", "eval")
    except SyntaxError:
        raise UsageError(f"-k: cannot parse expression {expression!r}") from None

    def matches(names: Iterable[str]) -> bool:
        lowered = [name.lower() for name in names]
        found = [any(word in name for name in lowered) for word in words]
        return bool(eval(compiled, {"__builtins__": {}}, {"_w": found}))

    return matches
