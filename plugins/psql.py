"""``psql -c SQL`` in a read-only check, judged by the statement policy of the ``postgres`` client.

The read-only guard does not know psql, so it refuses it. This hook answers for
a command that is one plain ``psql`` invocation with ``-c``/``--command``
(words of letters, digits and ``_@%+=:,./-``, single quotes, double quotes
without ``$``, backquotes or backslashes; nothing else of the shell):

- ``"allow"`` when its options only choose the server and the output format
  and its one ``-c`` holds SQL that ``sqlpolicy.read_only_refusal`` accepts;
- ``"refuse: REASON"`` for several ``-c``, a meta-command (``-c '\\! cmd'``),
  SQL the policy refuses, an option that writes a file (``-o``, ``-L``), runs
  a script (``-f``), sets variables (``-v``) or prompts, a connection string
  with parameters, or an option it does not know;
- no opinion otherwise (no ``-c``, a pipeline, a wrapper such as ``timeout``):
  the guard decides, and psql is not on its allowlist.

psql sends the SQL with the simple query protocol, in autocommit: unlike the
``postgres`` client, only the text check stands between a check and the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from runbook import hookimpl

from .sqllex import Refused
from .sqlpolicy import read_only_refusal

PSQL = frozenset({"psql", "/usr/bin/psql", "/bin/psql", "/usr/local/bin/psql"})
_STARTS = tuple(f"{name} " for name in PSQL) + tuple(PSQL)
#: Options without a value that only change the output, the echo or the prompting.
FLAGS = {
    "a": "echo-all",
    "A": "no-align",
    "b": "echo-errors",
    "e": "echo-queries",
    "E": "echo-hidden",
    "H": "html",
    "n": "no-readline",
    "q": "quiet",
    "t": "tuples-only",
    "x": "expanded",
    "X": "no-psqlrc",
    "z": "field-separator-zero",
    "0": "record-separator-zero",
    "w": "no-password",
}
#: Options with a value: the query, the server and the output format.
VALUES = {
    "c": "command",
    "d": "dbname",
    "h": "host",
    "p": "port",
    "U": "username",
    "F": "field-separator",
    "R": "record-separator",
    "T": "table-attr",
    "P": "pset",
}
REFUSED = {
    "f": "-f runs a script file the guard cannot see",
    "o": "-o writes the output to a file",
    "L": "-L writes a log file",
    "v": "-v sets psql variables",
    "s": "-s (single step) is interactive",
    "S": "-S (single line) is for interactive use",
    "W": "-W prompts for a password",
    "l": "-l is not a -c query",
    "1": "-1 wraps the query in a transaction that commits",
    "V": "-V is not a -c query",
    "?": "-? is not a -c query",
}
_LONG_REFUSED = {
    "file": "f",
    "output": "o",
    "log-file": "L",
    "set": "v",
    "variable": "v",
    "single-step": "s",
    "single-line": "S",
    "password": "W",
    "list": "l",
    "single-transaction": "1",
    "version": "V",
    "help": "?",
}
_LONG_FLAGS = frozenset({*FLAGS.values(), "csv"})
_LONG_VALUES = {long: short for short, long in VALUES.items()}
#: \pset options that only change how rows are printed (the pager only when off).
PSET = frozenset(
    """
    format border expanded x fieldsep fieldsep_zero footer null numericlocale recordsep
    recordsep_zero tuples_only title tableattr csv_fieldsep linestyle columns
    """.split()
)
_CHECKS = {
    "d": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*|postgres(?:ql)?://[^?#\s]*"), "database"),
    "h": (re.compile(r"[A-Za-z0-9_./:-]+"), "host"),
    "p": (re.compile(r"[0-9]+"), "port"),
    "U": (re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*"), "user name"),
}
# A plain shell word: literal characters, '...' and "..." without expansions.
_PART = re.compile(r"""(?P<space>[ \t]+)|[A-Za-z0-9_@%+=:,./-]+|'[^']*'|"[^"$`\\!]*\"""")


@hookimpl
def runbook_command_policy(command: str) -> str | None:
    """Allow a plain ``psql -c`` whose SQL is a plain read; refuse other ``psql -c``."""
    if not command.startswith(_STARTS):
        return None  # most commands: no opinion, at the cost of one comparison
    words = shell_words(command)
    if not words or words[0] not in PSQL:
        return None
    try:
        sql = psql_query(words[1:])
    except Refused as refused:
        return f"refuse: {refused}"
    if sql is None:
        return None
    reason = read_only_refusal(sql)
    return "allow" if reason is None else f"refuse: psql -c: {reason}"


def shell_words(command: str) -> list[str] | None:
    """Return the words of ``command`` if it is a plain list of words, else None."""
    words: list[str] = []
    current: list[str] | None = None
    position = 0
    while position < len(command):
        match = _PART.match(command, position)
        if match is None:
            return None
        position = match.end()
        if match.lastgroup == "space":
            current = None
            continue
        text = match[0]
        if current is None:
            if text.startswith("="):
                return None  # zsh expands =name to a path
            current = []
            words.append("")
        current.append(text[1:-1] if text[0] in "'\"" else text)
        words[-1] = "".join(current)
    return words


def psql_query(args: list[str]) -> str | None:
    """Return the SQL of the one ``-c`` in psql's ``args``; None without ``-c``.

    Raise ``Refused`` when ``-c`` is given but the command line is not a plain
    query: psql reads options as GNU getopt does, anywhere among the arguments.
    """
    options: list[tuple[str, str]] = []
    positional: list[str] = []
    errors: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--":
            positional.extend(words)
        elif word.startswith("--"):
            _long_option(word[2:], words, options, errors)
        elif word.startswith("-") and word != "-":
            _short_options(word[1:], words, options, errors)
        else:
            positional.append(word)
    commands = [value for name, value in options if name == "c"]
    if not commands:
        return None
    if errors:
        raise Refused(errors[0])
    if len(commands) > 1:
        raise Refused("several -c options: give psql one query")
    if commands[0].startswith("\\"):
        raise Refused(f"the psql meta-command {commands[0].split()[0]!r} is not SQL")
    if any(char in commands[0] for char in "\n\r\0"):
        raise Refused("an embedded newline is not allowed in read-only mode")
    if len(positional) > 2:
        raise Refused("psql takes at most a database and a user name after its options")
    named = list(zip("dU", positional, strict=False))
    for name, value in [*options, *named]:
        _check_value(name, value)
    return commands[0]


def _long_option(
    text: str, words: Iterator[str], options: list[tuple[str, str]], errors: list[str]
) -> None:
    name, equals, value = text.partition("=")
    if name in _LONG_FLAGS and not equals:
        return
    if name in _LONG_VALUES:
        if not equals:
            given = next(words, None)
            if given is None:
                errors.append(f"--{name} needs a value")
                return
            value = given
        options.append((_LONG_VALUES[name], value))
        return
    if name in _LONG_REFUSED:
        errors.append(f"--{name}: {REFUSED[_LONG_REFUSED[name]]}")
        return
    errors.append(f"the psql option --{name} is not known to the read-only guard")


def _short_options(
    text: str, words: Iterator[str], options: list[tuple[str, str]], errors: list[str]
) -> None:
    for index, letter in enumerate(text):
        if letter in FLAGS:
            continue
        if letter in VALUES:
            value = text[index + 1 :] or next(words, None)
            if value is None:
                errors.append(f"-{letter} needs a value")
            else:
                options.append((letter, value))
            return
        unknown = f"the psql option -{letter} is not known to the read-only guard"
        errors.append(REFUSED.get(letter, unknown))
        return


def _check_value(name: str, value: str) -> None:
    if name == "P":
        option, _, setting = value.partition("=")
        if option == "pager":
            if setting in ("off", "0", "false", "no"):
                return
            raise Refused("the psql pager runs a program: only -P pager=off is accepted")
        if option not in PSET:
            raise Refused(f"the psql print option {option!r} is not known to the read-only guard")
        return
    check = _CHECKS.get(name)
    if check is None:
        return
    pattern, what = check
    if not pattern.fullmatch(value):
        raise Refused(
            f"the {what} {value!r} is not a plain name: connection strings with parameters "
            "(options, sslkeylogfile ...) are not accepted"
        )
