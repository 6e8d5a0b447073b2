"""Find the command that a wrapper (env, nice, timeout, xargs, sudo, sh -c, ...) runs.

The guard judges the wrapped command as if it had been typed alone, so each
wrapper's own options must be read exactly: a misread option value would
shift the wrapped command by a word. Options these parsers do not know are
refused.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from collections.abc import Sequence

from runbook.safety.options import Option
from runbook.safety.options import Syntax
from runbook.safety.options import split_options
from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word

#: Shells whose ``-c SCRIPT`` is parsed and judged like a command of its own.
SHELLS = frozenset({"sh", "bash", "dash"})
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_OPTIONS = frozenset({"errexit", "nounset", "pipefail", "xtrace", "noglob", "posix"})


@dataclasses.dataclass(frozen=True, slots=True)
class Wrapped:
    """What a wrapper runs, found in its arguments."""

    start: int  #: index in the arguments of the wrapped command (their length if none)
    command: tuple[Word, ...] = ()  #: the wrapped command's words, as the wrapper runs them
    env: tuple[tuple[str, Word], ...] = ()  #: NAME=value words the wrapper exports
    script: Word | None = None  #: the script of ``sh -c SCRIPT``
    appends: bool = False  #: xargs adds arguments the guard cannot see


_ENV = Syntax(
    "env",
    flags="i0v",
    values="uCS",
    long_flags=frozenset(
        "--ignore-environment --null --debug --list-signal-handling --help --version".split()
    ),
    long_values=frozenset({"--unset", "--chdir", "--split-string"}),
    long_optional=frozenset({"--block-signal", "--default-signal", "--ignore-signal"}),
    permute=False,
)
_NICE = Syntax(
    "nice",
    values="n",
    long_flags=frozenset({"--help", "--version"}),
    long_values=frozenset({"--adjustment"}),
    permute=False,
)
_TIMEOUT = Syntax(
    "timeout",
    flags="v",
    values="sk",
    long_flags=frozenset({"--preserve-status", "--foreground", "--verbose", "--help", "--version"}),
    long_values=frozenset({"--signal", "--kill-after"}),
    permute=False,
)
_STDBUF = Syntax(
    "stdbuf",
    values="ioe",
    long_flags=frozenset({"--help", "--version"}),
    long_values=frozenset({"--input", "--output", "--error"}),
    permute=False,
)
_XARGS = Syntax(
    "xargs",
    flags="0oprtx",
    values="adEILnPs",
    optional="eil",
    long_flags=frozenset(
        "--null --open-tty --interactive --no-run-if-empty --verbose --exit --show-limits "
        "--help --version".split()
    ),
    long_values=frozenset(
        "--arg-file --delimiter --max-args --max-procs --max-chars --process-slot-var".split()
    ),
    long_optional=frozenset({"--eof", "--replace", "--max-lines"}),
    permute=False,
)
_IONICE = Syntax(
    "ionice",
    flags="th",
    values="cnpPu",
    long_flags=frozenset({"--ignore", "--help", "--version"}),
    long_values=frozenset({"--class", "--classdata", "--pid", "--pgid", "--uid"}),
    permute=False,
)
_SUDO = Syntax(
    "sudo",
    flags="AbBEHkKlnPSvVise",
    values="ugCDhprtTUR",
    long_flags=frozenset(
        "--askpass --background --bell --set-home --reset-timestamp --remove-timestamp --list "
        "--non-interactive --preserve-groups --stdin --validate --version --help --login "
        "--shell --edit".split()
    ),
    long_values=frozenset(
        "--user --group --close-from --chdir --host --prompt --role --type --command-timeout "
        "--other-user --chroot".split()
    ),
    long_optional=frozenset({"--preserve-env"}),
    permute=False,
)
_SHELL = Syntax(
    "sh",
    flags="ceuxvfn",
    values="o",
    long_flags=frozenset({"--norc", "--noprofile", "--posix"}),
    permute=False,
)


def unwrap(name: str, args: Sequence[Word]) -> Wrapped:
    """Return what the wrapper ``name`` runs, given its arguments."""
    wrapped = _UNWRAP[name](args)
    if wrapped.command or wrapped.script is not None:
        return wrapped
    return dataclasses.replace(wrapped, command=tuple(args[wrapped.start :]))


def _split(syntax: Syntax, args: Sequence[Word]) -> tuple[list[Option], int]:
    """Split a wrapper's options; return them and the index of the first operand."""
    options, operands = split_options(syntax, args)
    start = len(args) - len(operands)
    for word in args[:start]:
        if not word.is_literal:
            raise Refused(f"the {syntax.name} option {word.text!r} is only known after expansion")
    return options, start


def _assignments(args: Sequence[Word], start: int) -> tuple[tuple[tuple[str, Word], ...], int]:
    """Read NAME=value words from ``start``; return them and the index after them."""
    env: list[tuple[str, Word]] = []
    while start < len(args):
        word = args[start]
        match = _ASSIGNMENT.match(word.text)
        if match is None or (not word.is_literal and len(word.prefix) < match.end()):
            break
        cut = match.end()
        value = dataclasses.replace(word, text=word.text[cut:], prefix=word.prefix[cut:])
        env.append((match.group()[:-1], value))
        start += 1
    return tuple(env), start


def _timeout(args: Sequence[Word]) -> Wrapped:
    _, start = _split(_TIMEOUT, args)
    if start < len(args) and not args[start].is_literal:
        raise Refused(f"the timeout duration {args[start].text!r} is only known after expansion")
    return Wrapped(min(start + 1, len(args)))  # the duration comes before the command


def _env(args: Sequence[Word]) -> Wrapped:
    options, start = _split(_ENV, args)
    if any(option.flag in ("-S", "--split-string") for option in options):
        raise Refused("env -S splits its argument into a command line the guard cannot see")
    if start < len(args) and args[start].text == "-" and args[start].is_literal:
        start += 1  # `env -` is `env -i`
    env, start = _assignments(args, start)
    return Wrapped(start, env=env)


def _nice(args: Sequence[Word]) -> Wrapped:
    if args and re.fullmatch(r"-\d+", args[0].text):
        return Wrapped(1 + _split(_NICE, args[1:])[1])  # the old `nice -10 COMMAND` form
    return Wrapped(_split(_NICE, args)[1])


def _ionice(args: Sequence[Word]) -> Wrapped:
    options, start = _split(_IONICE, args)
    flags = {option.flag for option in options}
    if flags & {"-p", "-P", "-u", "--pid", "--pgid", "--uid"}:
        if flags & {"-c", "-n", "--class", "--classdata"}:
            raise Refused("ionice -c/-n with -p/-P/-u changes the I/O priority of other processes")
        return Wrapped(len(args))  # prints the priorities of those processes
    return Wrapped(start)


def _sudo(args: Sequence[Word]) -> Wrapped:
    options, start = _split(_SUDO, args)
    for option in options:
        if option.flag in ("-i", "-s", "--login", "--shell"):
            raise Refused(f"sudo {option.flag} runs a shell")
        if option.flag in ("-e", "--edit"):
            raise Refused("sudo -e edits files")
    env, start = _assignments(args, start)
    return Wrapped(start, env=env)


def _shell(args: Sequence[Word]) -> Wrapped:
    options, start = _split(_SHELL, args)
    for option in options:
        if option.flag == "-o" and (
            option.value is None or option.value.text not in _SHELL_OPTIONS
        ):
            raise Refused(
                f"shell option -o {option.value.text if option.value else ''} cannot be checked"
            )
    if "-c" not in {option.flag for option in options} or start >= len(args):
        raise Refused(
            "a shell without -c runs a script file or standard input, which cannot be checked"
        )
    script = args[start]
    if not script.is_literal:
        raise Refused(f"the shell script {script.text!r} is only known after {script.expansion}")
    return Wrapped(start, script=script)


def _xargs(args: Sequence[Word]) -> Wrapped:
    options, start = _split(_XARGS, args)
    env: list[tuple[str, Word]] = []
    replace = ""
    for option in options:
        value = option.value.text if option.value is not None else ""
        if option.flag == "--process-slot-var":
            # xargs exports NAME=SLOT to the command: judged as `NAME=0 command` would be.
            env.append((value, Word("0", "the xargs process slot number")))
        elif option.flag in ("-I", "-i", "--replace"):
            replace = value or ("{}" if option.flag != "-I" else "")
            if not replace:
                raise Refused("xargs -I with an empty replacement string cannot be checked")
    command = tuple(args[start:])
    if replace:
        command = tuple(_replaced(word, replace) for word in command)
    return Wrapped(start, command=command, env=tuple(env), appends=True)


def _replaced(word: Word, replace: str) -> Word:
    """Mark the words where xargs -I puts an input line: their value is known at run time.

    GNU xargs replaces in the arguments only; other implementations also in the
    command name, so every word is read as if it could be replaced.
    """
    at = word.text.find(replace)
    if at < 0:
        return word
    prefix = word.text[:at]
    if not word.is_literal and len(word.prefix) <= len(prefix):
        return word  # an earlier expansion already makes the word unknown from there
    # The line is inserted as one argument: it does not split, but it may start with '-'.
    what = f"the xargs -I replacement {replace!r}"
    return Word(word.text, what, prefix, word.splits, from_xargs=True)


_UNWRAP: dict[str, Callable[[Sequence[Word]], Wrapped]] = {
    "env": _env,
    "nice": _nice,
    "ionice": _ionice,
    "timeout": _timeout,
    "stdbuf": lambda args: Wrapped(_split(_STDBUF, args)[1]),
    "xargs": _xargs,
    "sudo": _sudo,
    **{shell: _shell for shell in SHELLS},
}
#: Commands that run another command given in their arguments.
WRAPPERS = frozenset(_UNWRAP) - SHELLS
