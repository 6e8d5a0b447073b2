"""The statement policy of the ``postgres`` client: which SQL is a plain read.

A pure function of the SQL text, so it can be tested as a table: one statement,
beginning with ``SELECT``, ``SHOW``, ``EXPLAIN`` or ``WITH``, that names none of
the functions, prefixes or words below. Comments and literals are set aside
first. This is the first of the client's two read-only layers; the second is the
``BEGIN READ ONLY`` transaction every statement runs in (see ``postgres``).
"""

from __future__ import annotations

import re

#: The statements the client sends: their first keyword.
READ_STATEMENTS = frozenset({"select", "show", "explain", "with"})
#: Functions that change state (or reach outside the database) although called from a SELECT.
REFUSED_FUNCTIONS = {
    "pg_cancel_backend": "cancels another session's query",
    "pg_terminate_backend": "terminates another session",
    "set_config": "changes a setting",
    "nextval": "advances a sequence",
    "setval": "sets a sequence",
    "pg_reload_conf": "reloads the server configuration",
    "pg_rotate_logfile": "rotates the server log",
    "pg_switch_wal": "switches the WAL file",
    "pg_promote": "promotes a standby",
    "pg_create_restore_point": "writes a WAL record",
    "pg_notify": "sends a notification",
    "pg_advisory_lock": "takes an advisory lock",
    "pg_advisory_xact_lock": "takes an advisory lock",
    "pg_try_advisory_lock": "takes an advisory lock",
    "pg_file_write": "writes a server file",
    "txid_current": "assigns a transaction id",
    "pg_current_xact_id": "assigns a transaction id",
}
#: Name prefixes refused the same way: large objects, dblink, replication slots and origins.
REFUSED_PREFIXES = {
    "lo_": "uses large objects (lo_import and lo_export reach the server's files)",
    "dblink": "runs statements on another connection (dblink)",
    "pg_create_": "creates a replication slot",
    "pg_drop_replication": "drops a replication slot",
    "pg_replication_origin": "changes replication origins",
    "pg_stat_reset": "resets statistics",
    "pg_wal_replay": "pauses or resumes WAL replay",
    "pg_backup": "starts or stops a backup",
    "pg_start_backup": "starts a backup",
    "pg_stop_backup": "stops a backup",
}
#: Words that make a SELECT, WITH or EXPLAIN write, lock rows or run the statement.
REFUSED_WORDS = {
    "insert": "writes rows",
    "update": "writes or locks rows",
    "delete": "deletes rows",
    "merge": "writes rows",
    "truncate": "empties tables",
    "into": "SELECT INTO creates a table",
    "share": "FOR SHARE locks rows",
    "analyze": "EXPLAIN ANALYZE runs the statement",
    "analyse": "EXPLAIN ANALYSE runs the statement",
    "copy": "COPY reads or writes files and can run programs",
    "call": "CALL runs a procedure",
    "do": "DO runs a code block",
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
    "savepoint": "transactions are managed by the client",
    "do": "DO runs procedural code",
    "call": "CALL runs a procedure",
    "vacuum": "VACUUM changes tables",
    "analyze": "ANALYZE writes statistics",
    "lock": "LOCK takes a table lock",
    "listen": "LISTEN changes session state",
    "notify": "NOTIFY sends a notification",
}
# Tokens: comments, literals and identifiers, so that words inside them are not mistaken.
_TOKEN = re.compile(
    r"""
    (?P<comment>--[^\n]*|/\*)
    |(?P<dollar>\$(?:[A-Za-z_][A-Za-z_0-9]*)?\$)
    |(?P<unicode>[Uu]&["'])
    |(?P<string>[EeBbXxNn]?'(?:''|\\.|[^'\\])*')
    |(?P<quoted>"(?:""|[^"])*")
    |(?P<word>[A-Za-z_][A-Za-z_0-9$]*)
    |(?P<semicolon>;)
    """,
    re.X | re.S,
)


def read_only_refusal(sql: str) -> str | None:
    """Return why ``sql`` is not a plain read the client may send, or None when it is.

    Comments and literals are set aside first, so a word inside a string does
    not count and one inside a comment cannot hide. Double-quoted identifiers
    count as words (``"pg_cancel_backend"(1)`` is refused).
    """
    words: list[str] = []
    position, statements, after_semicolon = 0, 1, False
    while position < len(sql):
        match = _TOKEN.search(sql, position)
        if match is None:
            break
        kind, text = match.lastgroup, match[0]
        position = match.end()
        if kind == "comment" and text == "/*":
            depth = 1
            while depth and position < len(sql):
                nested = re.compile(r"/\*|\*/").search(sql, position)
                if nested is None:
                    return "an unterminated /* comment"
                depth += 1 if nested[0] == "/*" else -1
                position = nested.end()
            continue
        if kind == "comment":
            continue
        if kind == "unicode":
            return "Unicode-escaped (U&) strings and identifiers are not accepted"
        if kind == "dollar":
            end = sql.find(text, position)
            if end < 0:
                return "an unterminated dollar-quoted string"
            position = end + len(text)
            continue
        if after_semicolon:
            statements += 1
            after_semicolon = False
        if kind == "semicolon":
            after_semicolon = True
            continue
        if kind == "quoted":
            words.append(text[1:-1].replace('""', '"').lower())
        elif kind == "word":
            words.append(text.lower())
    if statements > 1:
        return "several statements in one string; send one at a time"
    if not words:
        return "an empty statement"
    first = words[0]
    if first not in READ_STATEMENTS:
        reason = REFUSED_STATEMENTS.get(first, "only SELECT, SHOW, EXPLAIN and WITH ... SELECT")
        return f"{first.upper()} is not a plain read: {reason}"
    for word in words:
        if word in REFUSED_FUNCTIONS:
            return f"{word} {REFUSED_FUNCTIONS[word]}"
        for prefix, reason in REFUSED_PREFIXES.items():
            if word.startswith(prefix):
                return f"{word} {reason}"
        if word in REFUSED_WORDS:
            return f"{word.upper()}: {REFUSED_WORDS[word]}"
    return None
