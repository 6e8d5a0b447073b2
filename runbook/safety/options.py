"""Split a command's arguments into options and operands, the way getopt does.

The read-only rules need to know which word is a verb, a script or an output
file, and that depends on which options take a value. ``Syntax`` describes a
command's options; in strict mode an option it does not describe is refused,
because guessing whether it takes a value could shift every word after it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word


@dataclasses.dataclass(frozen=True, slots=True)
class Syntax:
    """The options of one command."""

    name: str
    flags: str = ""  #: short options without a value
    values: str = ""  #: short options with a value, attached (-n5) or in the next word
    optional: str = ""  #: short options whose value can only be attached (-I{})
    long_flags: frozenset[str] = frozenset()
    long_values: frozenset[str] = frozenset()  #: --name=VALUE or --name VALUE
    long_optional: frozenset[str] = frozenset()  #: --name or --name=VALUE
    strict: bool = True  #: refuse options not described here
    permute: bool = True  #: options may follow operands (GNU); else the first operand ends them


@dataclasses.dataclass(frozen=True, slots=True)
class Option:
    """One option as given: ``-o``, or ``--output`` with abbreviations written out."""

    flag: str
    value: Word | None = None


def long_option(flag: str, *names: str) -> bool:
    """True if ``flag`` is one of ``names`` or abbreviates one (getopt accepts prefixes)."""
    flag = flag.partition("=")[0]
    return len(flag) > 2 and any(name.startswith(flag) for name in names)


def split_options(syntax: Syntax, args: Sequence[Word]) -> tuple[list[Option], list[Word]]:
    """Return the options and the operands of ``args`` (the words after the command name)."""
    options: list[Option] = []
    operands: list[Word] = []
    index = 0
    while index < len(args):
        word = args[index]
        text = word.text
        index += 1
        if not word.is_literal or text == "-" or not text.startswith("-"):
            operands.append(word)
            if not syntax.permute:
                operands.extend(args[index:])
                break
        elif text == "--":
            operands.extend(args[index:])
            break
        elif text.startswith("--"):
            index = _long(syntax, text, args, index, options)
        else:
            index = _short(syntax, text, args, index, options)
    return options, operands


def _long(syntax: Syntax, text: str, args: Sequence[Word], index: int, out: list[Option]) -> int:
    given, equals, value = text.partition("=")
    known = syntax.long_flags | syntax.long_values | syntax.long_optional
    matches = [name for name in known if name.startswith(given)]
    if given in known:
        matches = [given]
    if len(matches) != 1:
        if syntax.strict:
            raise Refused(f"{syntax.name} option {given!r} is not known to the read-only guard")
        out.append(Option(given, Word(value) if equals else None))
        return index
    name = matches[0]
    if equals:
        out.append(Option(name, Word(value)))
    elif name in syntax.long_values and index < len(args):
        out.append(Option(name, args[index]))
        index += 1
    else:
        out.append(Option(name))
    return index


def _short(syntax: Syntax, text: str, args: Sequence[Word], index: int, out: list[Option]) -> int:
    for position, char in enumerate(text[1:], start=2):
        attached = text[position:]
        if char in syntax.values:
            if attached:
                out.append(Option(f"-{char}", Word(attached)))
            elif index < len(args):
                out.append(Option(f"-{char}", args[index]))
                index += 1
            else:
                out.append(Option(f"-{char}"))
            return index
        if char in syntax.optional:
            out.append(Option(f"-{char}", Word(attached) if attached else None))
            return index
        if char not in syntax.flags and syntax.strict:
            raise Refused(f"{syntax.name} option -{char} is not known to the read-only guard")
        out.append(Option(f"-{char}"))
    return index
