"""Read one shell word the way bash does: quote removal and expansion tracking.

bashlex finds where a word starts and ends but neither decodes ``$'...'`` nor
says which parts were quoted, which decides whether an expansion can become
an option or several words. This module reads the word's source text again.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any


class Refused(Exception):
    """Why a command was refused; the message is shown to the operator."""


@dataclasses.dataclass(frozen=True, slots=True)
class Word:
    """One word of a command, after quote removal.

    Expansions the shell performs later (``$VAR``, ``$(...)``, globs, ``~``) stay
    in ``text`` as written; ``expansion`` names the first one and ``prefix`` is
    the literal text before it.
    """

    text: str
    expansion: str = ""
    prefix: str = ""
    splits: bool = False  #: an unquoted substitution: word splitting may make several words
    #: xargs puts its input here (-I): judged like the arguments xargs appends, which
    #: commands without an argument rule may receive (options included).
    from_xargs: bool = False

    @property
    def is_literal(self) -> bool:
        """True when the command receives exactly ``text``."""
        return not self.expansion

    @property
    def may_be_option(self) -> bool:
        """True when the expanded word could start with ``-`` or split into several words."""
        if self.is_literal or self.from_xargs:
            return False
        return self.splits or not self.prefix or self.prefix.startswith("-")

    @property
    def is_path(self) -> bool:
        """True for a literal word, or an expansion under a literal directory (``/var/log/*``)."""
        return self.is_literal or (
            not self.may_be_option and ("/" in self.prefix or self.prefix.startswith("~"))
        )


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-]")
_ANSI_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "e": "\x1b",
    "E": "\x1b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_ANSI_NUMERIC = (
    re.compile(r"[0-7]{1,3}"),
    re.compile(r"x[0-9A-Fa-f]{1,2}"),
    re.compile(r"u[0-9A-Fa-f]{1,4}"),
    re.compile(r"U[0-9A-Fa-f]{1,8}"),
)


def read_word(
    source: str, start: int, end: int, parts: Sequence[Any], visit: Callable[[Any], None]
) -> Word:
    """Read ``source[start:end]`` as one word; ``visit`` receives each substituted command.

    ``parts`` are bashlex's nodes for the word, used to find where each command
    substitution ends.
    """
    return _WordScanner(source, start, end, parts, visit).scan()


class _WordScanner:
    """Quote removal and expansion tracking for one word's source text."""

    def __init__(
        self, source: str, start: int, end: int, parts: Sequence[Any], visit: Callable[[Any], None]
    ) -> None:
        self.visit = visit
        self.src = source
        self.start = start
        self.end = end
        self.substitutions = {
            part.pos[0]: part
            for part in parts
            if part.kind in ("commandsubstitution", "processsubstitution")
        }
        self.value: list[str] = []
        self.expansion = ""
        self.prefix = ""
        self.splits = False

    def scan(self) -> Word:
        src, index, quoted = self.src, self.start, False
        while index < self.end:
            char = src[index]
            if not quoted:
                if char == "\\":
                    self.value.append(src[index + 1] if index + 1 < self.end else "\\")
                    index += 2
                    continue
                if char == "'":
                    close = src.find("'", index + 1, self.end)
                    if close < 0:
                        raise Refused("cannot parse command: unbalanced single quote")
                    self.value.append(src[index + 1 : close])
                    index = close + 1
                    continue
                if char == '"' or src.startswith('$"', index):
                    if char == "$":  # bash may translate it through a message catalog
                        self._expands('a $"..." locale-translated string')
                    quoted = True
                    index += 1 if char == '"' else 2
                    continue
                if src.startswith("$'", index):
                    if "\\" in src[index : src.find("'", index + 2)]:
                        # sh (dash) may not decode escapes: the word's value depends on the shell.
                        self._expands("$'...' escapes")
                    index = self._ansi_c(index + 2)
                    continue
                if char in "<>" and src.startswith("(", index + 1):
                    raise Refused("process substitution <(...) is not allowed in read-only mode")
                if char in "*?" or (char == "[" and "]" in src[index : self.end]):
                    self._expands("a glob pattern")
                elif char == "{" and self._is_brace_expansion(index):
                    self._expands("brace expansion")
                elif char == "~" and index == self.start:
                    self.value.append("~")
                    self._expands("tilde expansion")
                    index += 1
                    continue
            elif char == '"':
                quoted = False
                index += 1
                continue
            elif char == "\\" and src[index + 1 : index + 2] in ("$", "`", '"', "\\"):
                self.value.append(src[index + 1])
                index += 2
                continue
            if char in "$`":
                index = self._substitute(index, quoted)
                continue
            self.value.append(char)
            index += 1
        if quoted:
            raise Refused("cannot parse command: unbalanced double quote")
        return Word("".join(self.value), self.expansion, self.prefix, self.splits)

    def _expands(self, what: str, *, splits: bool = False) -> None:
        if not self.expansion:
            self.expansion = what
            self.prefix = "".join(self.value)
        self.splits = self.splits or splits

    def _is_brace_expansion(self, index: int) -> bool:
        rest = self.src[index : self.end]
        return "}" in rest and ("," in rest or ".." in rest)

    def _ansi_c(self, index: int) -> int:
        """Decode ``$'...'`` from just after its opening quote; return the index after it."""
        src = self.src
        while index < self.end:
            char = src[index]
            if char == "'":
                return index + 1
            if char != "\\":
                self.value.append(char)
                index += 1
                continue
            escape = src[index + 1 : index + 2]
            if escape in _ANSI_ESCAPES:
                self.value.append(_ANSI_ESCAPES[escape])
                index += 2
                continue
            for pattern in _ANSI_NUMERIC:
                match = pattern.match(src, index + 1, self.end)
                if match:
                    digits = match.group().lstrip("xuU")
                    code = int(digits, 8 if match.group()[0].isdigit() else 16)
                    if code > 0x10FFFF:
                        raise Refused(f"the escape \\{match.group()} in $'...' cannot be checked")
                    self.value.append(chr(code))
                    index = match.end()
                    break
            else:
                raise Refused(f"the escape \\{escape} in $'...' cannot be checked")
        raise Refused("cannot parse command: unbalanced $'...' quote")

    def _substitute(self, index: int, quoted: bool) -> int:
        """Handle ``$...`` or a backtick at ``index``; return the index after it."""
        src = self.src
        following = src[index + 1 : index + 2]
        if src[index] == "`" or following == "(":
            if src.startswith("$((", index):
                raise Refused("arithmetic expansion $((...)) is not allowed in read-only mode")
            node = self.substitutions.get(index)
            if node is None or node.kind != "commandsubstitution" or node.pos[1] > self.end:
                raise Refused(f"cannot parse the substitution in {src[self.start : self.end]!r}")
            text = src[index : node.pos[1]]
            what = (
                "backtick command substitution" if text.startswith("`") else "command substitution"
            )
            self._expands(f"{what} {text}", splits=not quoted)
            self.visit(node.command)  # the substituted command is judged on its own
            self.value.append(text)
            return int(node.pos[1])
        if following == "{":
            close = src.find("}", index, self.end)
            inner = src[index + 2 : close] if close > 0 else ""
            if not _BRACED.fullmatch(inner):
                raise Refused(
                    f"parameter expansion {src[index : close + 1]!r} with an operator "
                    "is not allowed in read-only mode"
                )
            return self._parameter(index, close + 1, quoted)
        if following == "[":
            raise Refused("arithmetic expansion $[...] is not allowed in read-only mode")
        match = _NAME.match(src, index + 1, self.end)
        if match:
            return self._parameter(index, match.end(), quoted)
        if following and (following.isdigit() or following in "@*#?$!-"):
            return self._parameter(index, index + 2, quoted)
        self.value.append("$")
        return index + 1

    def _parameter(self, start: int, end: int, quoted: bool) -> int:
        text = self.src[start:end]
        # "$@" makes one word per positional parameter, quoted or not.
        self._expands(f"parameter expansion {text}", splits=not quoted or text in ("$@", "${@}"))
        self.value.append(text)
        return end
