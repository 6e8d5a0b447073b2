"""Parse a shell command line into the simple commands the read-only guard judges.

bashlex builds the syntax tree (lists, pipelines, subshells, redirections and
command substitutions); ``runbook.safety.shellwords`` then reads each word again from
the source text. Whatever cannot be represented exactly raises ``Refused``:
the guard fails closed.

bashlex can loop without end (and allocate without bound) on a few short inputs,
so it only sees commands within the grammar the guard can ever allow (a cheap
check refuses the rest first: ``case``, ``${x%y}``, here-documents, backticks,
very long commands), under a deadline; a parse that fails is a refusal.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from runbook.safety import deadline
from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word
from runbook.safety.shellwords import read_word


@dataclasses.dataclass(frozen=True, slots=True)
class Redirect:
    """A redirection such as ``2>/dev/null``: the operator, the descriptor and the target."""

    operator: str
    fd: int | None
    target: Word | int | None  #: a file word, a descriptor to duplicate, or None to close


@dataclasses.dataclass(frozen=True, slots=True)
class SimpleCommand:
    """A command with its leading ``NAME=value`` assignments and its redirections."""

    words: tuple[Word, ...]
    assignments: tuple[tuple[str, Word], ...] = ()
    redirects: tuple[Redirect, ...] = ()


_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+?=")
_TOKENS = frozenset({"operator", "pipe", "reservedword"})


#: Plain words separated by spaces: nothing the shell quotes, expands, redirects or
#: splits on, so the words are exactly what the command receives.
_PLAIN = re.compile(r"[A-Za-z0-9_./,:@%+=-]+(?: +[A-Za-z0-9_./,:@%+=-]+)*")


#: The longest command the guard parses (checks' commands are a line or two).
MAX_LENGTH = 4096
#: Seconds bashlex may spend on one command (it takes well under 0.1 s at MAX_LENGTH).
PARSE_SECONDS = 2.0

#: Quoted text, an escaped character, or a run of anything else.
_QUOTING = re.compile(
    "|".join(
        (
            r"\\.?",  # an escaped character
            r"'[^']*'?",  # single quotes (unterminated: up to the end)
            r"\$'(?:[^'\\]|\\.?)*'?",  # $'...'
            r'"(?:[^"\\]|\\.?)*"?',  # double quotes
            r"""[^\\'"$]+|\$""",  # anything else
        )
    )
)
#: The only parameter expansion allowed, ``${NAME}``: bashlex loops on some others.
_BRACED_PARAMETER = re.compile(r"\$\{(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+|[@*#?$!-])\}")
#: Reserved words that start compound commands the guard never allows.
_COMPOUND = re.compile(
    r"(?:^|[;&|(){}!])\s*(case|select|for|while|until|if|function|coproc|time|\[\[)(?=\s|$|[;&|()])"
)


def parse(command: str) -> list[SimpleCommand]:
    """Return every simple command in ``command``, those inside substitutions first."""
    if "\n" in command or "\r" in command:
        raise Refused("an embedded newline is not allowed in read-only mode")
    if len(command) > MAX_LENGTH:
        raise Refused(
            f"the command is too long to be checked ({len(command)} characters; at most "
            f"{MAX_LENGTH})"
        )
    if not command.strip():
        return []
    plain = command.strip(" ")
    if _PLAIN.fullmatch(plain) and not _ASSIGNMENT.match(plain):
        # Most commands checks run (`df -P /`, `cat /proc/loadavg`) need no shell
        # grammar: skip bashlex, whose import alone costs ~200 ms.
        return [SimpleCommand(tuple(Word(word) for word in plain.split(" ") if word))]
    return _parse_with_bashlex(command)


def precheck(command: str) -> None:
    """Refuse, before bashlex sees it, shell grammar the guard never allows.

    This keeps bashlex on the small part of the grammar the guard judges, where it
    is known to terminate. Quoting is read roughly (single-quoted text is skipped);
    what this lets through still meets the parser's deadline.
    """
    for match in re.finditer(r"\$\{", command):
        # Even in single quotes: bashlex loops on `}'${'`.
        if not _BRACED_PARAMETER.match(command, match.start()):
            shown = command[match.start() : match.start() + 12]
            raise Refused(
                f"parameter expansion {shown!r}...: only ${{NAME}} is allowed in read-only mode"
            )
    unquoted, expanding = _views(command)
    if "`" in expanding:
        raise Refused("backtick command substitution `...` is not allowed; use $(...)")
    if "$((" in expanding or "$[" in expanding:
        raise Refused("arithmetic expansion $((...)) is not allowed in read-only mode")
    if re.search(r"<<(?!<)", unquoted):
        raise Refused("here-documents are not allowed in read-only mode")
    compound = _COMPOUND.search(unquoted)
    if compound:
        raise Refused(f"{compound.group(1)!r} statements are not allowed in read-only mode")


def _views(command: str) -> tuple[str, str]:
    """Return the command with quoted text blanked, and with only single-quoted text blanked."""
    unquoted: list[str] = []
    expanding: list[str] = []
    for match in _QUOTING.finditer(command):
        text = match.group()
        blank = " " * len(text)
        if text.startswith(("'", "$'", "\\")):
            unquoted.append(blank)
            expanding.append(blank)
        elif text.startswith('"'):
            unquoted.append(blank)
            expanding.append(re.sub(r"\\.", "  ", text))
        else:
            unquoted.append(text)
            expanding.append(text)
    return "".join(unquoted), "".join(expanding)


def _parse_with_bashlex(command: str) -> list[SimpleCommand]:
    if "$'" in command and "\\'" in command:
        # bash ends $'...' after an escaped quote, bashlex does not: they would disagree.
        raise Refused("$'...' quoting with an escaped quote cannot be checked")
    precheck(command)
    import bashlex  # slow to import (parser tables), so only when a command is parsed

    try:
        with deadline.limit(PARSE_SECONDS):
            trees = bashlex.parse(command)
    except deadline.DeadlineExceeded:
        raise Refused(
            f"the shell parser gave up on this command after {PARSE_SECONDS:g}s"
        ) from None
    except MemoryError:
        raise Refused("the shell parser ran out of memory on this command") from None
    except RecursionError:
        raise Refused("the command is nested too deeply to be checked") from None
    except Exception as exc:  # bashlex raises assorted errors for what it cannot parse
        raise Refused(f"cannot parse command: {exc}") from exc
    reader = _Reader(command)
    try:
        for tree in trees:
            reader.visit(tree)
    except RecursionError:
        raise Refused("the command is nested too deeply to be checked") from None
    reader.check_coverage()
    return reader.commands


class _Reader:
    """Walk a bashlex tree, collecting simple commands and refusing unsupported syntax."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.commands: list[SimpleCommand] = []
        self.spans: list[tuple[int, int]] = []

    def visit(self, node: Any) -> None:
        kind: str = node.kind
        if kind in _TOKENS:
            self.spans.append(node.pos)
        if kind == "list":
            for part in node.parts:
                if part.kind == "operator" and part.op not in (";", "&&", "||", "&"):
                    raise Refused(f"the shell operator {part.op!r} is not supported")
                self.visit(part)
        elif kind == "pipeline":
            for part in node.parts:
                if part.kind == "reservedword" and part.word != "!":
                    raise Refused(f"{part.word!r} is not supported in a pipeline")
                self.visit(part)
        elif kind == "command":
            self._command(node)
        elif kind == "compound":
            self._compound(node)
        elif kind == "function":
            raise Refused("function definitions are not allowed in read-only mode")
        elif kind not in _TOKENS:
            raise Refused(f"shell {kind} syntax is not supported in read-only mode")

    def check_coverage(self) -> None:
        """Refuse text bashlex dropped or took for a comment (bash might run it)."""
        covered = bytearray(len(self.source))
        for start, end in self.spans:
            covered[start:end] = b"\x01" * (end - start)
        for index, char in enumerate(self.source):
            if not covered[index] and not char.isspace():
                if char == "#":
                    raise Refused("comments are not allowed in read-only commands")
                raise Refused(f"cannot parse command near {self.source[index : index + 20]!r}")

    def _compound(self, node: Any) -> None:
        first = node.list[0]
        if first.kind != "reservedword" or first.word not in ("(", "{"):
            raise Refused(f"shell {first.kind} statements are not supported in read-only mode")
        if self.source.startswith("((", node.pos[0]):
            raise Refused("arithmetic commands ((...)) are not allowed in read-only mode")
        for part in node.list:
            self.visit(part)
        redirects = getattr(node, "redirects", None) or []
        if redirects:
            self.commands.append(SimpleCommand((), (), tuple(self._redirect(r) for r in redirects)))

    def _command(self, node: Any) -> None:
        words: list[Word] = []
        assignments: list[tuple[str, Word]] = []
        redirects: list[Redirect] = []
        for part in node.parts:
            if part.kind == "word":
                words.append(self._word(part))
            elif part.kind == "assignment" and not words:
                start, end = part.pos
                match = _ASSIGNMENT.match(self.source, start, end)
                if match is None:
                    raise Refused(f"cannot parse the assignment {part.word!r}")
                self._cover(start, end, part.parts)
                assignments.append((match.group(1), self._scan(match.end(), end, part.parts)))
            elif part.kind == "redirect":
                redirects.append(self._redirect(part))
            else:
                raise Refused(f"shell {part.kind} syntax is not supported in read-only mode")
        self.commands.append(SimpleCommand(tuple(words), tuple(assignments), tuple(redirects)))

    def _redirect(self, node: Any) -> Redirect:
        operator: str = node.type
        if operator in ("<<", "<<-"):
            raise Refused("here-documents are not allowed in read-only mode")
        fd = getattr(node, "input", None)
        output = getattr(node, "output", None)
        target: Word | int | None
        if output is None or output == "-" or isinstance(output, int):
            self.spans.append(node.pos)
            target = None if output is None or output == "-" else output
        else:
            self.spans.append((node.pos[0], output.pos[0]))
            target = self._word(output)
        return Redirect(operator, fd if isinstance(fd, int) else None, target)

    def _word(self, node: Any) -> Word:
        start, end = node.pos
        if self.source.startswith("#", start):
            raise Refused("comments are not allowed in read-only commands")
        parts = getattr(node, "parts", [])
        self._cover(start, end, parts)
        return self._scan(start, end, parts)

    def _cover(self, start: int, end: int, parts: Sequence[Any]) -> None:
        """Mark a word as read, except inside substitutions, whose own nodes must cover them."""
        for part in sorted(parts, key=lambda part: part.pos[0]):
            if part.kind in ("commandsubstitution", "processsubstitution"):
                opening = 1 if self.source.startswith("`", part.pos[0]) else 2
                self.spans.append((start, part.pos[0] + opening))
                start = part.pos[1] - 1
        self.spans.append((start, end))

    def _scan(self, start: int, end: int, parts: Sequence[Any]) -> Word:
        return read_word(self.source, start, end, parts, self.visit)
