"""Frozen records of a run's set-up: what to run and how, as plugins and fixtures see it.

The engine builds these once and hands them out; nothing here refers to the
engine, so hook specifications and plugins can name them without importing it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from runbook.model import ActionItem
    from runbook.model import CheckItem
    from runbook.model import Runbook
    from runbook.results import HypothesisResult
    from runbook.results import Mode

#: Asked before an action runs in execute mode: returns (go ahead?, reason if not).
#: Asks the operator: (action, host, hypotheses as judged there, the action's description
#: with this run's parameter values) -> (go, the reason when not).
Confirm = Callable[["ActionItem", str, "Sequence[HypothesisResult]", str], tuple[bool, str]]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A host to run against: ``name`` is shown in reports, ``spec`` picks the backend."""

    name: str
    spec: str


#: Seconds a check (or an action) may take unless it or ``--timeout`` says otherwise.
DEFAULT_CHECK_TIMEOUT = 60.0

#: The target of a run that names none: this machine.
LOCAL = Target("local", "local")


@dataclasses.dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run: mode, targets, selection, identity and where results go."""

    targets: tuple[Target, ...] = (LOCAL,)
    forks: int | None = None
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    keyword: str | None = None
    execute: bool = False
    confirm: Confirm | None = None
    check_timeout: float | None = None
    incident: str | None = None
    severity: str | None = None
    operator: str | None = None
    report: str | None = None
    json: str | None = None
    #: The cassette a replay answers every command from (its name); None for a live run.
    replay: str | None = None

    def timeout_for(self, own: float | None = None) -> float:
        """Seconds a step may take: its own timeout, else ``--timeout``, else the default."""
        return own or self.check_timeout or DEFAULT_CHECK_TIMEOUT


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """What the ``run_info`` fixture tells checks and actions about this run."""

    runbook: str
    mode: Mode
    incident: str | None
    severity: str | None
    operator: str
    started_at: float
    #: The cassette this run is replayed from; None when it reaches real targets.
    replay: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunStart:
    """What ``runbook_run_started`` tells plugins: the run about to start, frozen.

    ``hosts`` are the names reports give the ``targets``, in the same order.
    ``overrides`` are the operator's ``--param`` values with secret ones masked;
    ``info.severity`` is the severity the operator gave, if any (the runbook's own
    is decided from the findings, after the checks). ``redact``
    masks the run's secrets in a text; ``warn`` adds a warning to the run's result
    (once, however often it is given).
    """

    runbook: Runbook
    checks: tuple[CheckItem, ...]
    targets: tuple[Target, ...]
    hosts: tuple[str, ...]
    info: RunInfo
    overrides: Mapping[str, str]
    redact: Callable[[str], str]
    warn: Callable[[str], None]

    @property
    def mode(self) -> Mode:
        """``read-only`` or ``execute``."""
        return self.info.mode


@dataclasses.dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One status update of an incident, with its rendered text."""

    incident: str
    title: str
    status: str
    severity: str | None
    impact: str
    current_state: str
    sent_at: str
    #: When the next update is due (UTC ISO 8601); None once resolved.
    next_update_at: str | None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the generic JSON payload of the update."""
        return {"schema": "runbook.status_update/1", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """How delivering an update to one destination went."""

    #: Where it went, safe to print: a webhook's scheme and host only, never its path.
    destination: str
    ok: bool
    attempts: int
    error: str | None = None
