"""Exceptions that carry meaning, and the exit codes of the command line.

This is a leaf module: it imports nothing else from the package, so every other
module (and every runbook) can use it without import cycles.
"""

from __future__ import annotations

import enum
from typing import NoReturn


class ExitCode(enum.IntEnum):
    """Exit codes of ``runbook``, modeled on pytest's."""

    #: Ran; nothing ruled in, no check failed.
    OK = 0
    #: Ran; a hypothesis was ruled in, or a check failed, errored, timed out or was blocked.
    FINDINGS = 1
    #: Interrupted (Ctrl-C); a partial report was still written.
    INTERRUPTED = 2
    #: Internal error in runbook or a plugin.
    INTERNAL_ERROR = 3
    #: Usage error: unknown runbook, bad parameter, bad option, bad inventory.
    USAGE_ERROR = 4
    #: Nothing collected or selected, or nothing tested (every check skipped).
    NO_CHECKS = 5


class OutcomeException(BaseException):
    """Base of the exceptions that end a check with an explicit verdict.

    Derives from ``BaseException`` (like pytest's) so that a check's own
    ``except Exception`` does not swallow the verdict.
    """

    def __init__(self, msg: str = "") -> None:
        super().__init__(msg)
        self.msg = msg


class RuleIn(OutcomeException):
    """The check rules its hypotheses in."""


class RuleOut(OutcomeException):
    """The check rules its hypotheses out."""


class Inconclusive(OutcomeException):
    """The check could neither rule its hypotheses in nor out."""


class Skipped(OutcomeException):
    """The check does not apply here (for example: no PostgreSQL on this host)."""


class ReadOnlyViolation(Exception):
    """A check tried to change a target while read-only mode was in force."""

    def __init__(self, operation: str, reason: str, hint: str = "") -> None:
        self.operation = operation
        self.reason = reason
        self.hint = hint
        message = f"refused {operation!r}: {reason}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class HostUnavailable(Exception):
    """A target cannot be used: unreachable, failed auth, rejected host key, ...

    ``status`` is the host status the result records (``unreachable``,
    ``auth_failed``, ``host_key_rejected`` or ``error``).
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CommandTimeout(Exception):
    """A command outlived its timeout and was killed."""


class UsageError(Exception):
    """Bad input from the operator; carries the exit code, like click's exceptions."""

    exit_code = ExitCode.USAGE_ERROR


class CollectionError(Exception):
    """A runbook or plugin could not be loaded; names the file and line.

    ``rule`` names the ``runbook lint`` rule the problem breaks.
    """

    def __init__(self, path: str, lineno: int | None, message: str, rule: str = "imports") -> None:
        self.path = path
        self.lineno = lineno
        self.message = message
        self.rule = rule
        where = f"{path}:{lineno}" if lineno else path
        super().__init__(f"{where}: {message}")


def rule_in(msg: str = "") -> NoReturn:
    """End the running check and rule its hypotheses in, with ``msg`` as evidence."""
    raise RuleIn(msg)


def rule_out(msg: str = "") -> NoReturn:
    """End the running check and rule its hypotheses out."""
    raise RuleOut(msg)


def inconclusive(msg: str = "") -> NoReturn:
    """End the running check without a verdict on its hypotheses."""
    raise Inconclusive(msg)


def skip(msg: str = "") -> NoReturn:
    """End the running check as not applicable; its hypotheses stay untested by it."""
    raise Skipped(msg)
