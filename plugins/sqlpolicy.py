"""The statement policy of the ``postgres`` client and of ``psql -c``: which SQL is a plain read.

A pure function of the SQL text, so it can be tested as a table. The text is
split with PostgreSQL's own lexing rules (``sqllex``), then allowed only when it
is one statement beginning with ``SELECT``, ``SHOW``, ``EXPLAIN`` or ``WITH``,
that writes no rows (no ``INSERT``/``UPDATE``/``DELETE``/``MERGE`` in a ``WITH``,
no ``SELECT INTO``, no ``FOR UPDATE``/``FOR SHARE``, no ``EXPLAIN ANALYZE``) and
calls only functions on an **allowlist**: the read-only functions diagnosis
queries use. A function not on it is refused, however harmless, so that a new
or forgotten function that changes state (or runs the SQL text it is given,
as ``query_to_xml`` does) cannot pass. Calls qualified with another schema than
``pg_catalog`` are refused too.

This is the first read-only layer. The ``postgres`` client adds two more: the
extended query protocol (the server refuses several statements in one query)
and read-only transactions (see ``postgres``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .sqlfunctions import ALLOWED_FUNCTIONS
from .sqlfunctions import FUNCTION_REASONS
from .sqlfunctions import PREFIX_REASONS
from .sqllex import Refused
from .sqllex import Token
from .sqllex import TokenKind
from .sqllex import tokenize

#: The statements the client sends: their first keyword.
READ_STATEMENTS = frozenset({"select", "show", "explain", "with"})
#: Words that make a SELECT, WITH or EXPLAIN write, lock rows or run the statement.
REFUSED_WORDS = {
    "insert": "writes rows",
    "update": "writes or locks rows",
    "delete": "deletes rows",
    "merge": "writes rows",
    "into": "SELECT INTO creates a table",
    "share": "FOR SHARE locks rows",
    "analyze": "EXPLAIN ANALYZE runs the statement",
    "analyse": "EXPLAIN ANALYSE runs the statement",
}
#: Why a statement starting with one of these words is refused (others get a general reason).
REFUSED_STATEMENTS = {
    "copy": "COPY reads or writes server files and can run programs (TO PROGRAM)",
    "set": "SET changes session settings (it could make the transaction read-write)",
    "reset": "RESET changes session settings",
    "begin": "transactions are managed by the client (BEGIN READ ONLY)",
    "start": "transactions are managed by the client (BEGIN READ ONLY)",
    "commit": "transactions are managed by the client",
    "rollback": "transactions are managed by the client",
    "end": "transactions are managed by the client",
    "abort": "transactions are managed by the client",
    "savepoint": "transactions are managed by the client",
    "release": "transactions are managed by the client",
    "prepare": "PREPARE keeps a statement in the session (and PREPARE TRANSACTION commits)",
    "execute": "EXECUTE runs a prepared statement, which may write",
    "deallocate": "DEALLOCATE changes session state",
    "declare": "DECLARE opens a cursor, which may run any statement",
    "fetch": "FETCH reads a cursor the client did not open",
    "do": "DO runs procedural code",
    "call": "CALL runs a procedure",
    "vacuum": "VACUUM changes tables",
    "analyze": "ANALYZE writes statistics",
    "lock": "LOCK takes a table lock",
    "listen": "LISTEN changes session state",
    "unlisten": "UNLISTEN changes session state",
    "notify": "NOTIFY sends a notification",
    "load": "LOAD loads a shared library into the server",
    "discard": "DISCARD changes session state",
    "checkpoint": "CHECKPOINT forces a checkpoint",
}
#: Words that are syntax, never a function, before a parenthesis (``IN (...)``,
#: ``OVER (...)``, ``CAST(x AS t)``). No function that changes state has one of these names.
SYNTAX_WORDS = frozenset(
    """
    all and any array as asc between both by case cast collate cube current_date
    current_time current_timestamp distinct else except exists explain filter for from
    grouping group having in intersect is join lateral leading like ilike limit
    localtime localtimestamp materialized not null offset on operator or order over partition
    recursive rollup row rows select sets similar some then to trailing union using
    values when where window with within zone
    bigint bit boolean char character dec decimal double float int integer interval
    national nchar numeric precision real smallint time timestamp varchar varying
    """.split()
)
_MATERIALIZED = (Token("word", "not"), Token("word", "materialized"))
_SEMICOLON = Token("punct", ";")
_OPEN = Token("punct", "(")
_CLOSE = Token("punct", ")")
_DOT = Token("punct", ".")
_AS = Token("word", "as")
_CAST = Token("cast", "::")
_WITH = Token("word", "with")
_ONLY_READS = "only SELECT, SHOW, EXPLAIN and WITH ... SELECT"
#: What may follow ``name (`` in a subquery, never in a function's arguments.
_SUBQUERY = frozenset({"select", "with", "values", "table"})


def read_only_refusal(sql: str) -> str | None:
    """Return why ``sql`` is not a plain read that may be sent, or None when it is.

    Comments and literals are set aside with PostgreSQL's lexing rules, so a
    word inside a string does not count and one inside a comment cannot hide;
    text whose lexing could differ between servers is refused.
    """
    try:
        _judge(tokenize(sql))
    except Refused as refused:
        return str(refused)
    return None


def _judge(tokens: list[Token]) -> None:
    while tokens and tokens[-1] == _SEMICOLON:
        tokens = tokens[:-1]
    if not tokens:
        raise Refused("an empty statement")
    if _SEMICOLON in tokens:
        raise Refused("several statements in one string; send one at a time")
    first = tokens[0]
    if first.kind != "word" or first.text not in READ_STATEMENTS:
        word = first.text.upper() if first.kind == "word" else repr(first.text)
        reason = REFUSED_STATEMENTS.get(first.text, _ONLY_READS)
        raise Refused(f"{word} is not a plain read: {reason}")
    not_calls = _cte_names(tokens)
    for index, token in enumerate(tokens):
        if token.kind == "word" and token.text in REFUSED_WORDS:
            raise Refused(f"{token.text.upper()}: {REFUSED_WORDS[token.text]}")
        if token.kind in ("word", "name") and index not in not_calls:
            _check_call(tokens, index)


def _check_call(tokens: Sequence[Token], index: int) -> None:
    """Refuse the name at ``index`` if it calls a function that is not allowed."""
    after = tokens[index + 1] if index + 1 < len(tokens) else None
    if after != _OPEN:
        return
    if index + 2 < len(tokens) and tokens[index + 2].kind == "word":
        if tokens[index + 2].text in _SUBQUERY:
            return  # JOIN (SELECT ...): a subquery, not a call
    start = index
    while start >= 2 and tokens[start - 1] == _DOT and _is_name(tokens[start - 2]):
        start -= 2
    before = tokens[start - 1] if start else None
    if before == _CAST or before == _AS:
        return  # a type with a modifier (::numeric(10,2)) or an alias's columns (AS t(a, b))
    name = tokens[index]
    if start != index:
        schema = tokens[start]
        if index - start != 2 or schema.text != "pg_catalog":
            qualified = ".".join(token.text for token in tokens[start : index + 1])
            raise Refused(f"{qualified}: only functions of pg_catalog may be called")
    if name.kind == "word" and (name.text in ALLOWED_FUNCTIONS or name.text in SYNTAX_WORDS):
        return
    raise Refused(_call_refusal(name))


def _call_refusal(name: Token) -> str:
    text = name.text
    if text in FUNCTION_REASONS:
        return f"{text} {FUNCTION_REASONS[text]}"
    for prefix, reason in PREFIX_REASONS.items():
        if text.startswith(prefix):
            return f"{text} {reason}"
    shown = text if name.kind == "word" else f'"{text}"'
    return (
        f"{shown}() is not on the allowlist of functions a read-only query may call "
        "(a table alias with column names needs AS: AS t(a, b))"
    )


def _is_name(token: Token) -> bool:
    return token.kind in ("word", "name")


def _cte_names(tokens: Sequence[Token]) -> set[int]:
    """Return the indexes of the names a ``WITH`` list gives (``WITH t(a) AS (...)``)."""
    names: set[int] = set()
    for index, token in enumerate(tokens):
        if token != _WITH:
            continue
        position = index + 1
        if position < len(tokens) and tokens[position] == Token("word", "recursive"):
            position += 1
        while position < len(tokens) and _is_name(tokens[position]):
            name, position = position, position + 1
            if _at(tokens, position, "punct", "("):
                position = _closing(tokens, position) + 1
            if not _at(tokens, position, "word", "as"):
                break
            position += 1
            while position < len(tokens) and tokens[position] in _MATERIALIZED:
                position += 1
            if not _at(tokens, position, "punct", "("):
                break
            names.add(name)  # only a whole "name [(columns)] AS (" is a CTE's name
            position = _closing(tokens, position) + 1
            if not _at(tokens, position, "punct", ","):
                break
            position += 1
    return names


def _at(tokens: Sequence[Token], position: int, kind: TokenKind, text: str) -> bool:
    return position < len(tokens) and tokens[position] == Token(kind, text)


def _closing(tokens: Sequence[Token], position: int) -> int:
    """Return the index of the parenthesis closing the one at ``position`` (or the end)."""
    depth = 0
    for index in range(position, len(tokens)):
        if tokens[index] == _OPEN:
            depth += 1
        elif tokens[index] == _CLOSE:
            depth -= 1
            if not depth:
                return index
    return len(tokens)
