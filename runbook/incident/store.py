"""The incident store: a plain folder per incident under the report directory.

``<report-dir>/incidents/<ID>/`` holds ``incident.json`` (title, severity, status,
impact as they are now), ``events.jsonl`` (the append-only timeline, one JSON
object per line with a UTC time) and ``runs/`` (the JSON result of every run of
the incident). No server: several terminals can share it through the file system.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from runbook.files import write_private
from runbook.outcomes import UsageError
from runbook.timestamps import file_stamp
from runbook.timestamps import isotime

if TYPE_CHECKING:
    from runbook.config import Config

#: Incident statuses, in the order an incident usually moves through them.
STATUSES = ("investigating", "identified", "monitoring", "resolved")
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ID_PREFIX = "INC"


def check_id(incident_id: str) -> str:
    """Return ``incident_id`` if it can name a folder safely, else raise a usage error."""
    if not ID_PATTERN.match(incident_id):
        raise UsageError(
            f"invalid incident id {incident_id!r}: use letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit), e.g. INC-20261124-001"
        )
    return incident_id


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One timeline entry: when, what kind, a line of text, and details."""

    time: str
    kind: str
    text: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON line stored in ``events.jsonl``."""
        return {"time": self.time, "kind": self.kind, "text": self.text, **self.data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Read an event back from its JSON line."""
        rest = {k: v for k, v in data.items() if k not in ("time", "kind", "text")}
        return cls(str(data["time"]), str(data["kind"]), str(data.get("text", "")), rest)


class IncidentStore:
    """The incidents under one report directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()  # a run records from several target threads

    @classmethod
    def from_config(cls, config: Config) -> IncidentStore:
        """The store under the configured report directory: ``<report-dir>/incidents``."""
        return cls(config.report_dir / "incidents")

    def folder(self, incident_id: str) -> Path:
        """Return the folder of an incident (it may not exist)."""
        return self.root / check_id(incident_id)

    def exists(self, incident_id: str) -> bool:
        """True if the incident has a store."""
        return (self.folder(incident_id) / "incident.json").is_file()

    def new_id(self) -> str:
        """Reserve and return the next free ``INC-YYYYMMDD-NNN`` of today (UTC)."""
        day = file_stamp()[:8]
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        taken = [p.name for p in self.root.glob(f"{ID_PREFIX}-{day}-*")]
        number = max((int(n.rsplit("-", 1)[1]) for n in taken if n[-3:].isdigit()), default=0)
        while True:
            number += 1
            candidate = f"{ID_PREFIX}-{day}-{number:03d}"
            try:
                (self.root / candidate).mkdir(mode=0o700)
            except FileExistsError:
                continue  # another terminal took it a moment ago
            return candidate

    def open(
        self,
        title: str,
        *,
        severity: str | None = None,
        impact: str = "",
        operator: str = "",
        incident_id: str | None = None,
        set_by: str = "operator",
    ) -> dict[str, Any]:
        """Create an incident (a new id unless ``incident_id`` is given) and return it."""
        incident_id = check_id(incident_id) if incident_id else self.new_id()
        now = isotime(precise=True)
        incident = {
            "id": incident_id,
            "title": title,
            "severity": severity,
            "severity_set_by": set_by if severity else None,
            "status": "investigating",
            "impact": impact,
            "opened_at": now,
            "opened_by": operator,
            "resolved_at": None,
        }
        with self._locked(incident_id):
            if self.exists(incident_id):
                raise UsageError(f"incident {incident_id} already exists")
            self._save(incident)
            suffix = f", severity {severity}" if severity else ""
            opened = Event(now, "opened", f"incident opened: {title}{suffix}", {"by": operator})
            self._append(incident_id, opened)
        return incident

    def load(self, incident_id: str) -> dict[str, Any]:
        """Return an incident's current state; an unknown id is a usage error."""
        path = self.folder(incident_id) / "incident.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"unknown incident {incident_id!r} (`runbook incident open TITLE` creates one)"
            ) from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: unreadable incident: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: unreadable incident: not a JSON object")
        return data

    def update(self, incident_id: str, event: Event, **changes: Any) -> dict[str, Any]:
        """Change fields of an incident and record why, as one step."""
        self.load(incident_id)  # an unknown id is an error, not a new folder
        with self._locked(incident_id):
            incident = self.load(incident_id)
            incident.update(changes)
            self._save(incident)
            self._append(incident_id, event)
        return incident

    def append(self, incident_id: str, kind: str, text: str, **data: Any) -> Event:
        """Add an event to the timeline, stamped now."""
        self.load(incident_id)
        event = Event(isotime(precise=True), kind, text, data)
        with self._locked(incident_id):
            self._append(incident_id, event)
        return event

    def events(self, incident_id: str) -> list[Event]:
        """Return the timeline, oldest first (stable for events of the same millisecond)."""
        self.load(incident_id)
        path = self.folder(incident_id) / "events.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        events = [Event.from_dict(json.loads(line)) for line in lines if line.strip()]
        return sorted(events, key=lambda event: event.time)

    def save_run(self, incident_id: str, name: str, data: dict[str, Any]) -> Path:
        """Keep the JSON result of a run of the incident; return where it went."""
        stamp = str(data.get("started_at", isotime(precise=True))).replace("-", "").replace(":", "")
        folder = self.folder(incident_id) / "runs"
        path = folder / f"{stamp}-{name}.json"
        counter = 1
        while path.exists():
            counter += 1
            path = folder / f"{stamp}-{name}-{counter}.json"
        write_private(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return path

    def runs(self, incident_id: str) -> list[dict[str, Any]]:
        """Return the JSON results of the incident's runs, in the order they started."""
        folder = self.folder(incident_id) / "runs"
        found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
        return sorted(found, key=lambda data: str(data.get("started_at", "")))

    def _save(self, incident: dict[str, Any]) -> None:
        folder = self.folder(incident["id"])
        temporary = folder / "incident.json.tmp"
        write_private(temporary, json.dumps(incident, indent=2, ensure_ascii=False) + "\n")
        temporary.replace(folder / "incident.json")  # readers never see half a file

    def _append(self, incident_id: str, event: Event) -> None:
        path = self.folder(incident_id) / "events.jsonl"
        line = json.dumps(event.to_dict(), ensure_ascii=False) + "\n"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a", encoding="utf-8") as stream:
            stream.write(line)

    @contextlib.contextmanager
    def _locked(self, incident_id: str) -> Iterator[None]:
        """Serialize changes to one incident across threads and processes."""
        folder = self.folder(incident_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._lock:
            descriptor = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                yield
            finally:
                os.close(descriptor)  # closing releases the lock
