"""Split SQL text into tokens the way PostgreSQL's own lexer (``scan.l``) does.

The statement policy judges tokens, so where a string, a comment or an
identifier begins and ends must be decided exactly as the server decides it:

- ``'...'`` ends at the first quote that is not doubled: a backslash does not
  escape it (``standard_conforming_strings`` is on by default). Because a
  server with the setting off reads ``\\'`` as an escaped quote, a backslash
  right before a quote in such a string is refused: the two readings differ;
- ``E'...'`` reads backslash escapes (``\\'`` and ``\\\\`` included);
  ``B'...'`` and ``X'...'`` hold no quote at all; ``N'...'`` is a plain string;
- a string goes on after a closing quote when only whitespace with a newline
  (and ``--`` comments) comes before the next quote, in the same mode: so
  ``E'a'`` + newline + ``'\\''`` is one escape string;
- ``$tag$ ... $tag$`` (or ``$$``) holds anything up to the same delimiter, but
  ``$`` inside an identifier (``a$b$``) or after one is part of it;
- ``"..."`` is an identifier, case kept, ``""`` a quote in it; other
  identifiers are folded to lower case in ASCII only, as the server does;
- ``--`` comments end at a newline; ``/* */`` comments nest;
- ``U&'...'`` and ``U&"..."`` (Unicode escapes, with ``UESCAPE``) are refused,
  as is every character the server would not accept outside a literal.
"""

from __future__ import annotations

import re
import string
from typing import Literal
from typing import NamedTuple

TokenKind = Literal["word", "name", "string", "number", "param", "op", "punct", "cast"]


class Refused(ValueError):
    """The text cannot be split safely; the message says why."""


class Token(NamedTuple):
    """One token; ``word`` is an unquoted identifier or keyword (folded), ``name`` a quoted one.

    Literals keep no text: the policy never looks inside them.
    """

    kind: TokenKind
    text: str


_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_HIGH = "\u0080-\U0010ffff"  # PostgreSQL counts every non-ASCII byte as a letter
# Whitespace, then one token (or the end): one match per token keeps the loop short.
_SIMPLE = re.compile(
    rf"""
    [ \t\n\r\f\v]*
    (?:(?P<end>\Z)
    |(?P<comment>--[^\n\r]*)
    |(?P<block>/\*)
    |(?P<prefixed>[EeNnBbXx]')
    |(?P<unicode>[Uu]&['"])
    |(?P<word>[A-Za-z_{_HIGH}][A-Za-z_0-9${_HIGH}]*)
    |(?P<string>')
    |(?P<quoted>")
    |(?P<param>\$[0-9]+)
    |(?P<dollar>\$(?:[A-Za-z_{_HIGH}][A-Za-z_0-9{_HIGH}]*)?\$)
    |(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[Ee][+-]?[0-9]+)?)
    |(?P<cast>::)
    |(?P<op>[~!@\#^&|`?+\-*/%<>=])
    |(?P<punct>[(),;\[\].:]))
    """,
    re.X,
)
# After a closing quote: whitespace holding a newline, then a quote, continues the string.
_CONTINUE = re.compile(r"(?:[ \t\f\v]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f\v]+|--[^\n\r]*[\n\r])*'")
_NESTING = re.compile(r"/\*|\*/")


def tokenize(sql: str) -> list[Token]:
    """Return the tokens of ``sql``, comments and whitespace left out; raise ``Refused``."""
    tokens: list[Token] = []
    position, end = 0, len(sql)
    while position < end:
        match = _SIMPLE.match(sql, position)
        if match is None:
            raise Refused(_stray(sql[position:].lstrip(" \t\n\r\f\v")[:1]))
        kind = match.lastgroup
        text = match[kind] if kind else ""
        position = match.end()
        if kind == "end" or kind == "comment":
            continue
        if kind == "block":
            position = _skip_comment(sql, position)
        elif kind == "prefixed":
            position = _string(sql, position, text[0].lower())
            tokens.append(Token("string", ""))
        elif kind == "string":
            position = _string(sql, position, "")
            tokens.append(Token("string", ""))
        elif kind == "unicode":
            raise Refused("Unicode-escaped (U&) strings and identifiers are not accepted")
        elif kind == "quoted":
            name, position = _quoted(sql, position)
            tokens.append(Token("name", name))
        elif kind == "dollar":
            close = sql.find(text, position)
            if close < 0:
                raise Refused("an unterminated dollar-quoted string")
            position = close + len(text)
            tokens.append(Token("string", ""))
        elif kind == "word":
            tokens.append(Token("word", text.translate(_FOLD)))
        else:
            tokens.append(Token(kind, text))  # type: ignore[arg-type]
    return tokens


def _stray(char: str) -> str:
    if char == "\\":
        return "a backslash outside a string (psql meta-commands are not SQL)"
    if char == "$":
        return "a $ that starts neither a parameter ($1) nor a dollar-quoted string"
    return f"the character {char!r} is not SQL outside a literal"


def _skip_comment(sql: str, position: int) -> int:
    """Return where the ``/*`` comment opened before ``position`` ends (comments nest)."""
    depth = 1
    while depth:
        nested = _NESTING.search(sql, position)
        if nested is None:
            raise Refused("an unterminated /* comment")
        depth += 1 if nested[0] == "/*" else -1
        position = nested.end()
    return position


def _string(sql: str, position: int, prefix: str) -> int:
    """Return where the string whose first quote ends before ``position`` ends.

    ``prefix`` is ``e`` (backslash escapes), ``b`` or ``x`` (bit strings) or
    empty (``n`` is a plain string too).
    """
    end = len(sql)
    while True:
        while True:
            if position >= end:
                raise Refused("an unterminated quoted string")
            char = sql[position]
            if char == "'":
                if prefix not in "bx" and sql.startswith("''", position):
                    position += 2
                    continue
                break
            if char == "\\":
                _check_backslash(sql, position, prefix)
                position += 2 if prefix == "e" else 1
                continue
            position += 1
        position += 1  # the closing quote
        more = _CONTINUE.match(sql, position)
        if more is None:
            return position
        position = more.end()


def _check_backslash(sql: str, position: int, prefix: str) -> None:
    if position and not sql[position - 1].isascii():
        # In a client encoding such as SJIS the backslash could be read as the second
        # byte of that character, and the string would end elsewhere.
        raise Refused("a backslash right after a non-ASCII character in a string")
    if prefix != "e" and sql.startswith("\\'", position):
        raise Refused(
            "a backslash right before a quote in a string: PostgreSQL ends the string "
            "there unless standard_conforming_strings is off; write '' for a quote, or "
            "use an E'...' string"
        )


def _quoted(sql: str, position: int) -> tuple[str, int]:
    """Return the identifier in the double quotes opened before ``position``, and its end."""
    parts: list[str] = []
    while True:
        close = sql.find('"', position)
        if close < 0:
            raise Refused("an unterminated quoted identifier")
        parts.append(sql[position:close])
        if not sql.startswith('""', close):
            break
        parts.append('"')
        position = close + 2
    name = "".join(parts)
    if not name:
        raise Refused('a zero-length quoted identifier ("")')
    return name, close + 1
