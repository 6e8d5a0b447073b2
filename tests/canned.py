"""Test helpers for the system helper plugins: a canned backend and real child processes."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence

from runbook.safety.guard import check_command


class CannedBackend:
    """Answers each command with canned output picked by a substring; records commands."""

    name = "canned"
    uri = "canned://"

    def __init__(self, answers: Sequence[tuple[str, str, str, int]]) -> None:
        self.answers = answers
        self.commands: list[str | list[str]] = []

    def execute(self, command, timeout, on_cancel):
        self.commands.append(command)
        text = command if isinstance(command, str) else shlex.join(command)
        for key, stdout, stderr, status in self.answers:
            if key in text:
                return stdout, stderr, status
        return "", f"{text}: unexpected command", 127

    def close(self) -> None:
        pass


def assert_read_only(commands: Sequence[str | list[str]]) -> None:
    """Every command passes the read-only guard (shell strings and argv lists alike)."""
    for command in commands:
        if isinstance(command, str):
            check_command(command, None)
        else:
            check_command(shlex.join(command), list(command))


@contextlib.contextmanager
def children() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start Python programs that print 'ready [words]' once set up; kill them all at the end.

    The words after 'ready' are kept as the process's ``words`` attribute.
    """
    started: list[subprocess.Popen[str]] = []

    def start(code: str, *args: object) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None
        words = process.stdout.readline().split()
        assert words[:1] == ["ready"], "the helper process did not start"
        process.words = words[1:]  # type: ignore[attr-defined]
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()
            process.wait()
            if process.stdout is not None:
                process.stdout.close()
