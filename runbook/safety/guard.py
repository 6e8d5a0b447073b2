"""The read-only guard: decide whether a check may run a command.

An essential plugin. It fails closed: a command is allowed only when every
simple command in it (those in pipelines, lists, subshells and command
substitutions, and those behind wrappers such as ``timeout`` or ``sh -c``) is
on the read-only allowlist without a verb, option or redirection that writes.
Anything it cannot parse or classify is refused. ``runbook.safety.shell`` parses,
``runbook.safety.wrappers`` unwraps, and ``runbook.safety.command_rules`` holds the rules of
commands that only read with some arguments.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.outcomes import ReadOnlyViolation
from runbook.safety import deadline
from runbook.safety.command_rules import FIND_ACTIONS as FIND_ACTIONS
from runbook.safety.command_rules import RULES
from runbook.safety.shell import Redirect
from runbook.safety.shell import parse
from runbook.safety.shellwords import Refused as Refused
from runbook.safety.shellwords import Word
from runbook.safety.verb_rules import DOCKER_VERBS as DOCKER_VERBS
from runbook.safety.verb_rules import KUBECTL_VERBS as KUBECTL_VERBS
from runbook.safety.verb_rules import SYSTEMCTL_VERBS as SYSTEMCTL_VERBS
from runbook.safety.wrappers import SHELLS
from runbook.safety.wrappers import WRAPPERS
from runbook.safety.wrappers import unwrap

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.hosts.host import CommandPolicy
    from runbook.steps import Step

#: Commands that only read. Verb- and flag-sensitive ones have a rule in command_rules.
READ_ONLY_COMMANDS = frozenset(
    """
    awk basename cat curl cut date df dig du echo egrep env expr false fgrep file find free
    getent grep head hostname host id ip iostat journalctl jq last lsblk lsof ls
    md5sum mpstat netstat nproc nslookup openssl pgrep pidof pidstat printenv printf ps pwd
    readlink realpath sar sed seq sha1sum sha256sum sleep sort ss stat sysctl systemctl
    tail test timeout top tr true uname uniq uptime vmstat w wc which who whoami xargs
    zcat zgrep nice ionice stdbuf kubectl docker dmesg [ getconf cksum tac column
    numfmt comm diff lscpu ulimit
    """.split()
)
#: A command named by its path is judged by its name only when it lives here.
SYSTEM_DIRECTORIES = frozenset(
    {"/bin", "/usr/bin", "/sbin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"}
)
#: Variables a command may be given (``NAME=value cmd``): others, such as PATH, LD_PRELOAD
#: or PAGER, can make an allowed command run something else.
SAFE_VARIABLES = re.compile(
    r"LANG|LANGUAGE|LC_[A-Z]+|TZ|COLUMNS|LINES|TERM|NO_COLOR|TIME_STYLE|POSIXLY_CORRECT"
)
SAFE_REDIRECT_TARGETS = frozenset({"/dev/null"})
#: How deep wrappers and ``sh -c`` may nest (``timeout 5 nice env sh -c '...'`` is 4).
MAX_NESTING = 8

_HINT = (
    "if this is really read-only, allow it with @check(allow_commands=[...]) or [read_only] allow"
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    extensions: tuple[tuple[str, ...], ...]
    depth: int = 0
    appended: bool = False  #: under xargs, which adds arguments the guard cannot see


def make_policy(config: Config, mode: str) -> CommandPolicy:
    """Build the policy ``Host`` consults before a read-only step runs a command."""
    configured = config.read_only_allow
    deadline.start()  # the parser's watchdog is the framework's thread, not a check's
    # The same command on many hosts is parsed once per run: the verdict depends only
    # on the command and the extensions in force.
    verdicts: dict[tuple[str, tuple[str, ...] | None, tuple[str, ...]], str | None] = {}

    def policy(command: str, argv: list[str] | None, step: Step) -> ReadOnlyViolation | None:
        try:
            answers = config.hook.runbook_command_policy(command=command, mode=mode, step=step)
            refusals = [a for a in answers if a and a.startswith("refuse")]
        except Exception as exc:  # a plugin that cannot judge refuses: the guard fails closed
            return ReadOnlyViolation(command, _could_not_judge(exc), _HINT)
        if refusals:
            reason = refusals[0].partition(":")[2].strip() or "refused by a plugin policy"
            return ReadOnlyViolation(command, reason, _HINT)
        if "allow" in answers:
            return None
        allowed = (*configured, *step.allow_commands)
        key = (command, None if argv is None else tuple(argv), allowed)
        if key not in verdicts:
            try:
                check_command(command, argv, allowed)
            except Refused as exc:
                verdicts[key] = str(exc)
            else:
                verdicts[key] = None
        reason = verdicts[key]
        return None if reason is None else ReadOnlyViolation(command, reason, _HINT)

    return policy


def check_command(command: str, argv: list[str] | None, allowed: Sequence[str] = ()) -> None:
    """Raise ``Refused`` unless ``command`` (or ``argv``, run without a shell) is read-only.

    ``allowed`` are allowlist extensions: each allows a simple command whose first
    words are the entry's words.
    """
    try:
        context = _Context(tuple(tuple(shlex.split(entry)) for entry in allowed))
        if argv is not None:
            _check_simple([Word(arg) for arg in argv], (), context)
        else:
            _check_script(command, context)
    except Refused:
        raise
    except Exception as exc:  # a rule or the parser failed: refuse, never let it through
        raise Refused(_could_not_judge(exc)) from None


def _could_not_judge(error: Exception) -> str:
    return f"the read-only guard could not judge this command: {type(error).__name__}: {error}"


def split_commands(command: str) -> list[list[str]]:
    """Return the words of each simple command in a shell string (redirections left out)."""
    return [[word.text for word in simple.words] for simple in parse(command) if simple.words]


def _check_script(command: str, context: _Context) -> None:
    for simple in parse(command):
        for redirect in simple.redirects:
            _check_redirect(redirect)
        if simple.words:
            _check_simple(simple.words, simple.assignments, context)
        elif simple.assignments:
            name, value = simple.assignments[0]
            raise Refused(
                f"the assignment {name}={value.text} sets a shell variable that later words "
                "could expand; pass the value itself"
            )


def _check_redirect(redirect: Redirect) -> None:
    operator, target = redirect.operator, redirect.target
    if operator in ("<", "<<<"):
        return  # reading; substitutions in the target were judged on their own
    if isinstance(target, Word):
        if target.is_literal and target.text in SAFE_REDIRECT_TARGETS and operator != "<>":
            return
        raise Refused(f"output redirection {operator!r} to {target.text!r} writes to a file")
    # Duplicating or closing standard output and error (2>&1, >&2, 2>&-) writes nothing.
    if operator == ">&" and redirect.fd in (None, 1, 2) and target in (None, 1, 2):
        return
    raise Refused(f"the redirection {operator!r} of descriptor {redirect.fd} is not allowed")


def _check_simple(
    words: Sequence[Word], env: Sequence[tuple[str, Word]], context: _Context
) -> None:
    if any(char in word.text for word in words for char in "\n\r\0"):
        raise Refused("an embedded newline is not allowed in read-only mode")
    head = words[0]
    if not head.is_literal:
        raise Refused(f"the command name {head.text!r} is only known after {head.expansion}")
    name = os.path.basename(head.text)
    extended = _extension_length(words, context.extensions)
    if name in WRAPPERS or name in SHELLS:
        _check_wrapper(name, words, env, extended, context)
        return
    if extended:
        return
    _check_name(head.text, name)
    _check_env(env)
    _check_options(name, words)
    if name not in READ_ONLY_COMMANDS:
        raise Refused(f"{name!r} is not on the read-only allowlist")
    rule = RULES.get(name)
    if rule is None:
        return
    if context.appended:
        raise Refused(f"xargs adds arguments to {name} that the guard cannot see")
    for word in words[1:]:
        if not word.is_path:
            raise Refused(f"the {name} argument {word.text!r} is only known after {word.expansion}")
    rule(words[1:])


def _check_wrapper(
    name: str,
    words: Sequence[Word],
    env: Sequence[tuple[str, Word]],
    extended: int,
    context: _Context,
) -> None:
    """Judge the command a wrapper runs; an extension may allow the wrapper itself."""
    if context.depth >= MAX_NESTING:
        raise Refused("wrappers and shells nested this deep cannot be checked")
    context = dataclasses.replace(context, depth=context.depth + 1)
    wrapped = unwrap(name, words[1:])
    start = 1 + wrapped.start
    if extended > start:
        return  # the extension names the wrapped command too
    if not extended:
        _check_name(words[0].text, name)
        _check_env(env)
        _check_options(name, words[:start])
    if wrapped.script is not None:
        _check_script(wrapped.script.text, context)
    elif wrapped.command:
        appended = context.appended or wrapped.appends
        _check_simple(wrapped.command, wrapped.env, dataclasses.replace(context, appended=appended))
    elif context.appended and name != "xargs":
        raise Refused(f"xargs adds the command that {name} runs, which the guard cannot see")
    if not extended and name not in READ_ONLY_COMMANDS:
        why = "checks never run a command as another user"
        if name in SHELLS:
            why = "a nested shell is refused even when its script only reads; run it directly"
        raise Refused(f"{name!r} is not on the read-only allowlist: {why}")


def _check_name(text: str, name: str) -> None:
    if "/" in text and os.path.dirname(text) not in SYSTEM_DIRECTORIES:
        directories = ", ".join(sorted(SYSTEM_DIRECTORIES))
        raise Refused(f"{text!r} runs a program by its path; only those in {directories} are known")


def _check_env(env: Sequence[tuple[str, Word]]) -> None:
    for name, _ in env:
        if not SAFE_VARIABLES.fullmatch(name):
            raise Refused(
                f"setting {name} can change what a command runs; only locale, time zone and "
                "terminal variables (LANG, LC_*, TZ, COLUMNS, TERM) may be set"
            )


def _check_options(name: str, words: Sequence[Word]) -> None:
    for word in words[1:]:
        if word.may_be_option:
            raise Refused(
                f"{word.text!r} ({word.expansion}) could expand to an option of {name} or to "
                "several words; pass a literal value, or quote it after a literal directory"
            )


def _extension_length(words: Sequence[Word], extensions: Sequence[tuple[str, ...]]) -> int:
    """Return the length of the longest extension that ``words`` start with (0 for none)."""
    texts: list[str] = []
    for word in words:
        if not word.is_literal:
            break
        texts.append(word.text)
    return max(
        (len(entry) for entry in extensions if entry and tuple(texts[: len(entry)]) == entry),
        default=0,
    )
