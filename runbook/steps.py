"""The running step (a check or an action) and what it collects.

A check runs in a worker thread; a context variable tells ``evidence()`` and
``Host.run`` which step they belong to, so that evidence and commands are
attributed to the right check without threading state through every call.
"""

from __future__ import annotations

import contextvars
import dataclasses
import threading
import types
from collections.abc import Callable
from collections.abc import Mapping
from typing import Literal

StepKind = Literal["check", "action"]

#: Metadata of record fields that never hold free text (ids, outcomes, numbers): the
#: redactor skips them, which keeps redacting a result cheap.
NOT_SECRET: Mapping[str, bool] = types.MappingProxyType({"redact": False})


@dataclasses.dataclass(frozen=True, slots=True)
class Evidence:
    """One piece of evidence attached to a check: a title and rendered text."""

    title: str
    body: str


@dataclasses.dataclass(frozen=True, slots=True)
class CommandRecord:
    """One command sent to a target, as the report and the audit trail see it."""

    host: str = dataclasses.field(metadata=NOT_SECRET)
    step: str = dataclasses.field(metadata=NOT_SECRET)
    command: str
    exit_status: int | None = dataclasses.field(metadata=NOT_SECRET)
    duration_s: float = dataclasses.field(metadata=NOT_SECRET)
    blocked: bool = dataclasses.field(metadata=NOT_SECRET)
    started_at: float = dataclasses.field(metadata=NOT_SECRET)
    reason: str = ""


@dataclasses.dataclass(slots=True)
class Step:
    """Mutable collector for the one check or action that is running."""

    id: str
    kind: StepKind
    host: str
    read_only: bool
    allow_commands: tuple[str, ...] = ()
    evidence: list[Evidence] = dataclasses.field(default_factory=list)
    commands: list[CommandRecord] = dataclasses.field(default_factory=list)
    #: In-process changes the audit hook refused (the check ends blocked).
    refusals: list[str] = dataclasses.field(default_factory=list)
    _cancels: list[Callable[[], None]] = dataclasses.field(default_factory=list)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    cancelled: bool = False

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Register ``callback`` to stop work in flight; returns a function that forgets it."""
        with self._lock:
            self._cancels.append(callback)

        def forget() -> None:
            with self._lock:
                if callback in self._cancels:
                    self._cancels.remove(callback)

        return forget

    def cancel(self) -> None:
        """Stop the commands still running for this step (used on timeout and Ctrl-C)."""
        with self._lock:
            self.cancelled = True
            callbacks = list(self._cancels)
        for callback in callbacks:
            callback()


current_step: contextvars.ContextVar[Step | None] = contextvars.ContextVar(
    "runbook_current_step", default=None
)
