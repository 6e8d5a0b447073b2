"""The read-only guard: decide whether a check may run a command.

An essential plugin. It fails closed: a command is allowed only when every
simple command in it is on the read-only allowlist without a dangerous flag,
and anything it cannot parse or classify is refused. Shell features that can
write or hide a command (output redirection, command and process
substitution, here-documents, newlines) are refused outright.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from runbook.outcomes import ReadOnlyViolation

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.hosts import CommandPolicy
    from runbook.steps import Step

#: Commands that only read. Verb- and flag-sensitive commands are checked further below.
READ_ONLY_COMMANDS = frozenset(
    """
    awk basename cat cut date df dig du echo egrep env expr false fgrep file find free
    getent grep head hostname host id ip iostat journalctl jq last lsblk lsof ls
    md5sum mpstat netstat nproc nslookup pgrep pidof pidstat printenv printf ps pwd
    readlink realpath sar sed seq sha1sum sha256sum sleep sort ss stat sysctl systemctl
    tail test timeout top tr true uname uniq uptime vmstat w wc which who whoami xargs
    zcat zgrep nice ionice stdbuf kubectl docker dmesg [ getconf cksum tac column
    numfmt comm diff
    """.split()
)

#: Wrappers whose real command follows their own options.
WRAPPERS = frozenset({"env", "nice", "ionice", "timeout", "stdbuf", "xargs"})

SYSTEMCTL_VERBS = frozenset(
    {
        "status",
        "show",
        "is-active",
        "is-enabled",
        "is-failed",
        "cat",
        "list-units",
        "list-unit-files",
        "list-timers",
        "list-sockets",
        "list-dependencies",
        "list-jobs",
    }
)
KUBECTL_VERBS = frozenset({"get", "describe", "logs", "top", "explain", "version"})
DOCKER_VERBS = frozenset({"ps", "logs", "inspect", "stats", "top", "version", "info", "images"})
FIND_ACTIONS = (
    "-delete",
    "-exec",
    "-execdir",
    "-ok",
    "-okdir",
    "-fprint",
    "-fprint0",
    "-fls",
    "-fprintf",
)
SAFE_REDIRECT_TARGETS = frozenset({"/dev/null", "&1", "&2"})

_OPERATORS = {"|", "||", "&&", ";", "&"}
_HINT = (
    "if this is really read-only, allow it with @check(allow_commands=[...]) or [read_only] allow"
)


class Refused(Exception):
    """Internal: why a command was refused."""


def make_policy(config: Config, mode: str) -> CommandPolicy:
    """Build the policy ``Host`` consults before a read-only step runs a command."""
    configured = config.read_only_allow

    def policy(command: str, argv: list[str] | None, step: Step) -> ReadOnlyViolation | None:
        answers = config.hook.runbook_command_policy(command=command, mode=mode, step=step)
        refusals = [a for a in answers if a and a.startswith("refuse")]
        if refusals:
            reason = refusals[0].partition(":")[2].strip() or "refused by a plugin policy"
            return ReadOnlyViolation(command, reason, _HINT)
        if "allow" in answers:
            return None
        try:
            check_command(command, argv, (*configured, *step.allow_commands))
        except Refused as exc:
            return ReadOnlyViolation(command, str(exc), _HINT)
        return None

    return policy


def check_command(command: str, argv: list[str] | None, allowed: Sequence[str] = ()) -> None:
    """Raise ``Refused`` unless ``command`` (or ``argv``) is read-only."""
    extra = [shlex.split(entry) for entry in allowed]
    if argv is not None:
        _check_simple(argv, extra)
        return
    for simple in split_commands(command):
        _check_simple(simple, extra)


def split_commands(command: str) -> list[list[str]]:
    """Split a shell string into simple commands; raise ``Refused`` on risky syntax."""
    for marker, what in (
        ("\n", "embedded newline"),
        ("`", "backtick command substitution"),
        ("$(", "command substitution"),
        ("<(", "process substitution"),
        (">(", "process substitution"),
        ("<<", "here-document"),
    ):
        if marker in command:
            raise Refused(f"{what} is not allowed in read-only mode")
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise Refused(f"cannot parse command: {exc}") from None
    commands: list[list[str]] = [[]]
    tokens_iter = iter(tokens)
    for token in tokens_iter:
        if token in _OPERATORS:
            commands.append([])
        elif token in ("(", ")"):
            raise Refused("subshells are not allowed in read-only mode")
        elif set(token) <= set("<>&") or token.endswith((">", "<")):
            _check_redirect(commands[-1], token, next(tokens_iter, ""))
        else:
            commands[-1].append(token)
    return [simple for simple in commands if simple]


def _check_redirect(current: list[str], operator: str, target: str) -> None:
    # `2>/dev/null` lexes as ["2", ">", "/dev/null"]: the fd number sticks to the command.
    if current and current[-1].isdigit():
        current.pop()
    if operator in ("<",):
        return  # reading a file is fine
    if operator in (">", ">>", ">&", "&>") and target in SAFE_REDIRECT_TARGETS:
        return
    raise Refused(f"output redirection {operator!r} to {target!r} writes to a file")


def _check_simple(words: list[str], extra: list[list[str]]) -> None:
    words = _strip_assignments(words)
    if not words:
        return
    if any(words[: len(entry)] == entry for entry in extra if entry):
        return
    name = os.path.basename(words[0])
    if name not in READ_ONLY_COMMANDS:
        raise Refused(f"{name!r} is not on the read-only allowlist")
    if name in WRAPPERS:
        inner = _unwrap(name, words[1:])
        if inner:
            _check_simple(inner, extra)
        return
    rule = _RULES.get(name)
    if rule is not None:
        rule(words)


def _strip_assignments(words: list[str]) -> list[str]:
    index = 0
    while index < len(words) and "=" in words[index] and words[index].split("=")[0].isidentifier():
        index += 1
    return words[index:]


def _unwrap(name: str, args: list[str]) -> list[str]:
    """Return the command a wrapper runs, skipping the wrapper's own options."""
    index = 0
    while index < len(args) and args[index].startswith("-"):
        option = args[index]
        index += 1
        takes_value = {
            "nice": ("-n",),
            "ionice": ("-c", "-n"),
            "timeout": ("-s", "-k"),
            "xargs": ("-n", "-P", "-I", "-d", "-L", "-s", "-E"),
            "env": ("-u",),
            "stdbuf": (),
        }.get(name, ())
        if option in takes_value:
            index += 1
    rest = args[index:]
    if name == "timeout" and rest:
        rest = rest[1:]  # the duration
    if name == "env":
        rest = _strip_assignments(rest)
    if name == "nice" and rest and rest[0].lstrip("-").isdigit():
        rest = rest[1:]
    return rest


def _first_verb(words: list[str]) -> str:
    return next((word for word in words[1:] if not word.startswith("-")), "")


def _systemctl(words: list[str]) -> None:
    verb = _first_verb(words)
    if verb not in SYSTEMCTL_VERBS:
        raise Refused(
            f"systemctl {verb or '(no verb)'} changes state; only status/show/list-* read"
        )


def _kubectl(words: list[str]) -> None:
    verb = _first_verb(words)
    if verb not in KUBECTL_VERBS:
        raise Refused(f"kubectl {verb or '(no verb)'} is not read-only")


def _docker(words: list[str]) -> None:
    verb = _first_verb(words)
    if verb not in DOCKER_VERBS:
        raise Refused(f"docker {verb or '(no verb)'} is not read-only")


def _sed(words: list[str]) -> None:
    for word in words[1:]:
        if (
            word.startswith("-i")
            or word.startswith("--in-place")
            or (word.startswith("-") and not word.startswith("--") and "i" in word[1:])
        ):
            raise Refused("sed -i edits files in place")
    script = " ".join(w for w in words[1:] if not w.startswith("-"))
    if any(f"{c} " in script or script.endswith(c) for c in ("w", "W", "e")):
        raise Refused("sed script may write files or run commands (w/W/e)")


def _find(words: list[str]) -> None:
    for word in words:
        if word in FIND_ACTIONS:
            raise Refused(f"find {word} changes files or runs commands")


def _awk(words: list[str]) -> None:
    program = " ".join(words[1:])
    for marker in ("system", ">", "|", "fflush"):
        if marker in program:
            raise Refused(f"awk program uses {marker!r}, which can write or run commands")


def _sysctl(words: list[str]) -> None:
    if any(word in ("-w", "--write", "-p", "--load") or "=" in word for word in words[1:]):
        raise Refused("sysctl with -w/-p or KEY=VALUE changes kernel settings")


def _date(words: list[str]) -> None:
    if any(word in ("-s", "--set") or word.startswith("--set=") for word in words[1:]):
        raise Refused("date -s sets the clock")


def _hostname(words: list[str]) -> None:
    if any(not word.startswith("-") for word in words[1:]):
        raise Refused("hostname NAME sets the host name")


def _ip(words: list[str]) -> None:
    if any(word in ("add", "del", "delete", "set", "change", "replace", "flush") for word in words):
        raise Refused("ip with add/del/set/flush changes the network configuration")


def _dmesg(words: list[str]) -> None:
    if any(word in ("-c", "-C", "--clear", "--read-clear") for word in words):
        raise Refused("dmesg -c clears the kernel log")


def _journalctl(words: list[str]) -> None:
    writes = ("--vacuum", "--rotate", "--flush", "--sync", "--relinquish-var", "--setup-keys")
    if any(word.startswith(writes) for word in words[1:]):
        raise Refused("journalctl --vacuum/--rotate/--flush changes the journal")


_RULES = {
    "journalctl": _journalctl,
    "systemctl": _systemctl,
    "kubectl": _kubectl,
    "docker": _docker,
    "sed": _sed,
    "find": _find,
    "awk": _awk,
    "sysctl": _sysctl,
    "date": _date,
    "hostname": _hostname,
    "ip": _ip,
    "dmesg": _dmesg,
}
