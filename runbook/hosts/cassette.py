"""Cassettes: record every command a run sends to its targets, and replay them.

``run --record FILE`` wraps each target's backend so that every command and
what it printed is kept (redacted, like everything a run writes) and written
as YAML when the run ends. ``run --replay FILE`` answers every command from
such a file instead: no target is contacted, so CI can run a runbook against a
real incident again and again. Replay matches a command on its host and its
exact (redacted) command line; a command run several times is answered in the
recorded order, the last answer repeating. A command not in the cassette fails
with ``CassetteMiss``, which makes its check an ``error`` that names it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from collections.abc import Generator
from collections.abc import Mapping
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from runbook.hosts.backend import Backend
from runbook.hosts.backend import Connecting
from runbook.hosts.host import host_name
from runbook.markers import hookimpl
from runbook.outcomes import CommandTimeout
from runbook.outcomes import HostUnavailable
from runbook.outcomes import UsageError
from runbook.steps import current_step
from runbook.timestamps import isotime

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.records import RunStart
    from runbook.records import Target
    from runbook.results import RunResult

#: Version of the cassette format; bumped on incompatible changes.
SCHEMA = "runbook.cassette/1"

Redact = Callable[[str], str]
_T = TypeVar("_T")
OnCancel = Callable[[Callable[[], None]], Callable[[], None]] | None


class CassetteError(UsageError):
    """A cassette file that cannot be read or does not fit the run."""


class CassetteMiss(Exception):
    """A replayed command that the cassette does not hold."""


@dataclasses.dataclass(frozen=True, slots=True)
class Interaction:
    """One request to a host and what came back: a command, or a plugin's exchange.

    ``kind`` is ``command`` for ``host.run``; a plugin client that reaches the
    target another way (``sql`` for the postgres fixture) records its request
    and the plain data it got back as ``response``, or the ``error`` it raised.
    """

    request: str
    stdout: str = ""
    stderr: str = ""
    exit_status: int | None = 0
    duration_s: float = 0.0
    check: str | None = None
    timed_out: bool = False
    kind: str = "command"
    response: Any = None
    error: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        """What replay matches on (with the host): the kind and the exact request."""
        return self.kind, self.request

    def to_dict(self) -> dict[str, Any]:
        """The YAML form: empty and default fields are left out to keep diffs small."""
        data: dict[str, Any] = {self.kind: self.request}
        if self.check:
            data["check"] = self.check
        data["duration_s"] = round(self.duration_s, 4)
        if self.timed_out:
            data["timed_out"] = True
        elif self.error is not None:
            data["error"] = self.error
        elif self.kind != "command":
            data["response"] = self.response
        else:
            data["exit_status"] = self.exit_status
            data["stdout"] = self.stdout
            if self.stderr:
                data["stderr"] = self.stderr
        return data


@dataclasses.dataclass(slots=True)
class Tape:
    """Everything recorded for one host, in order."""

    name: str
    spec: str
    uri: str
    interactions: list[Interaction] = dataclasses.field(default_factory=list)
    #: (host status, message) when the host could not be reached.
    unavailable: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"spec": self.spec, "uri": self.uri}
        if self.unavailable is not None:
            data["unavailable"] = {"status": self.unavailable[0], "message": self.unavailable[1]}
        data["interactions"] = [item.to_dict() for item in self.interactions]
        return data


@dataclasses.dataclass(slots=True)
class Cassette:
    """The commands of one runbook's run, per host."""

    runbook: str
    hosts: dict[str, Tape] = dataclasses.field(default_factory=dict)
    recorded_at: str = ""
    #: The ``--param`` values of the recorded run (secret ones as ``***``); replay reuses them.
    params: dict[str, str] = dataclasses.field(default_factory=dict)

    def targets(self, names: Sequence[str] = ()) -> tuple[Target, ...]:
        """The recorded targets, or those of ``names`` (which must all be recorded)."""
        from runbook.records import Target

        unknown = [name for name in names if name not in self.hosts]
        if unknown:
            raise CassetteError(
                f"host {unknown[0]!r} is not in the cassette; it holds: {', '.join(self.hosts)}"
            )
        chosen = names or list(self.hosts)
        return tuple(Target(name, self.hosts[name].spec) for name in chosen)

    def dumps(self) -> str:
        """The cassette as YAML: block scalars keep outputs readable and diffs small."""
        data = {
            "schema": SCHEMA,
            "runbook": self.runbook,
            "recorded_at": self.recorded_at,
            "params": self.params,
            "hosts": {name: tape.to_dict() for name, tape in self.hosts.items()},
        }
        return _yaml_dump(data)

    @classmethod
    def load(cls, path: Path) -> Cassette:
        """Read a cassette file; raise ``CassetteError`` naming what is wrong."""
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CassetteError(f"cannot read cassette {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise CassetteError(f"cassette {path}{where} is not valid YAML") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CassetteError(f"cassette {path} is malformed: {exc}") from None

    @classmethod
    def from_dict(cls, data: Any) -> Cassette:
        """Build a cassette from its parsed YAML form (``ValueError`` if it is not one)."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else None
            raise ValueError(f"schema is {found!r}, expected {SCHEMA!r}")
        hosts = {}
        for name, tape in (data.get("hosts") or {}).items():
            unavailable = tape.get("unavailable")
            hosts[str(name)] = Tape(
                str(name),
                str(tape.get("spec", name)),
                str(tape.get("uri", name)),
                [_interaction(item) for item in tape.get("interactions") or ()],
                (str(unavailable["status"]), str(unavailable["message"])) if unavailable else None,
            )
        params = {str(key): str(value) for key, value in (data.get("params") or {}).items()}
        return cls(str(data["runbook"]), hosts, str(data.get("recorded_at", "")), params)

    @classmethod
    def from_outputs(
        cls, runbook: str, outputs: Mapping[str, Mapping[str, Any] | str], host: str = "local"
    ) -> Cassette:
        """A one-host cassette from canned outputs: ``{command: stdout | {stdout, ...}}``."""
        interactions = [
            _interaction({"command": command, "stdout": answer})
            if isinstance(answer, str)
            else _interaction({"command": command, **answer})
            for command, answer in outputs.items()
        ]
        return cls(runbook, {host: Tape(host, host, host, interactions)})


def _interaction(data: Mapping[str, Any]) -> Interaction:
    exit_status = data.get("exit_status", 0)
    kind = next((key for key in data if key not in _FIELDS), None)
    if kind is None:
        raise ValueError(f"an interaction names no command: {dict(data)}")
    return Interaction(
        request=str(data[kind]),
        kind=str(kind),
        response=data.get("response"),
        error=None if data.get("error") is None else str(data["error"]),
        stdout=str(data.get("stdout") or ""),
        stderr=str(data.get("stderr") or ""),
        exit_status=None if exit_status is None else int(exit_status),
        duration_s=float(data.get("duration_s", 0.0)),
        check=data.get("check"),
        timed_out=bool(data.get("timed_out", False)),
    )


_FIELDS = {f.name for f in dataclasses.fields(Interaction)}


def _yaml_dump(data: Any) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    dumped: str = yaml.dump(
        data,
        Dumper=Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
    return dumped


class RecordingBackend:
    """A backend that passes everything through and keeps what the target answered."""

    def __init__(self, backend: Backend, tape: Tape, redact: Callable[[], Redact]) -> None:
        self.backend = backend
        self.tape = tape
        self.name = backend.name
        self.uri = backend.uri
        self._redact = redact
        self._lock = threading.Lock()

    def connect(self) -> None:
        if not isinstance(self.backend, Connecting):
            return
        try:
            self.backend.connect()
        except HostUnavailable as exc:
            self.tape.unavailable = (exc.status, self._redact()(exc.message))
            raise

    def execute(
        self, command: str | Sequence[str], timeout: float, on_cancel: OnCancel
    ) -> tuple[str, str, int]:
        started, request = _clock(), _display(command)
        try:
            stdout, stderr, status = self.backend.execute(command, timeout, on_cancel)
        except CommandTimeout:
            self._keep(Interaction(request, timed_out=True), started)
            raise
        redact = self._redact()
        self._keep(Interaction(request, redact(stdout), redact(stderr), status), started)
        return stdout, stderr, status

    def exchange(self, kind: str, request: str, perform: Callable[[], _T]) -> _T:
        """Do a plugin's exchange with the target and keep its (plain data) response."""
        started = _clock()
        try:
            response = perform()
        except Exception as exc:
            self._keep(Interaction(request, kind=kind, error=str(exc)), started)
            raise
        self._keep(Interaction(request, kind=kind, response=response), started)
        return response

    def _keep(self, item: Interaction, started: float) -> None:
        redact = self._redact()
        step = current_step.get()
        kept = dataclasses.replace(
            item,
            request=redact(item.request),
            duration_s=_clock() - started,
            check=step.id if step is not None else None,
            response=None if item.response is None else _redact_data(redact, item.response),
            error=None if item.error is None else redact(item.error),
        )
        with self._lock:
            self.tape.interactions.append(kept)

    def close(self) -> None:
        self.backend.close()


def _redact_data(redact: Redact, data: Any) -> Any:
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {key: _redact_data(redact, value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_redact_data(redact, value) for value in data]
    return data


class ReplayBackend:
    """A backend that answers every request from a tape and contacts nothing."""

    def __init__(self, tape: Tape, source: str, redact: Callable[[], Redact]) -> None:
        self.name = tape.name
        self.uri = tape.uri
        self.tape = tape
        self._source = source
        self._redact = redact
        self._answers: dict[tuple[str, str], list[Interaction]] = {}
        for item in tape.interactions:
            self._answers.setdefault(item.key, []).append(item)
        self._lock = threading.Lock()

    def connect(self) -> None:
        if self.tape.unavailable is not None:
            raise HostUnavailable(*self.tape.unavailable)

    def execute(
        self, command: str | Sequence[str], timeout: float, on_cancel: OnCancel
    ) -> tuple[str, str, int]:
        item = self._answer("command", _display(command))
        if item.timed_out or item.exit_status is None:
            raise CommandTimeout(f"timed out when recorded: {item.request}")
        return item.stdout, item.stderr, item.exit_status

    def exchange(self, kind: str, request: str, perform: Callable[[], Any]) -> Any:
        """Answer a plugin's exchange from the tape; ``perform`` is never called."""
        item = self._answer(kind, request)
        if item.error is not None:
            raise RuntimeError(item.error)
        return item.response

    def _answer(self, kind: str, request: str) -> Interaction:
        """The next recorded answer to ``request``; the last one repeats."""
        key = (kind, self._redact()(request))
        with self._lock:
            answers = self._answers.get(key)
            if not answers:
                what = "command" if kind == "command" else f"{kind} request"
                raise CassetteMiss(
                    f"{what} not in cassette {self._source} for host {self.name}: {key[1]}"
                )
            return answers.pop(0) if len(answers) > 1 else answers[0]

    def close(self) -> None:
        pass


def _display(command: str | Sequence[str]) -> str:
    import shlex

    return command if isinstance(command, str) else shlex.join(command)


def _clock() -> float:
    import time

    return time.perf_counter()


class CassetteRecorder:
    """Registered for ``--record FILE``: wraps every backend and writes the cassette."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cassette: Cassette | None = None
        self._redact: Redact = str
        self._recording: dict[str, RecordingBackend] = {}

    def redactor(self) -> Redact:
        return self._redact

    @hookimpl(wrapper=True)
    def runbook_make_host(
        self, spec: str, config: Config
    ) -> Generator[None, Backend | None, Backend | None]:
        backend = yield
        if backend is None:
            return None
        recording = RecordingBackend(backend, Tape(backend.name, spec, backend.uri), self.redactor)
        self._recording[spec] = recording
        return recording

    @hookimpl
    def runbook_run_started(self, run: RunStart) -> None:
        self._redact = run.redact
        self.cassette = Cassette(
            run.runbook.name, recorded_at=isotime(), params=dict(run.overrides)
        )
        for target in run.targets:
            recording = self._recording.get(target.spec)
            if recording is not None:
                recording.tape.name = host_name(target, recording.backend)
                self.cassette.hosts[recording.tape.name] = recording.tape

    @hookimpl
    def runbook_run_finished(self, result: RunResult) -> None:
        """Write what was recorded, also after Ctrl-C (a partial cassette)."""
        if self.cassette is not None:
            from runbook.files import write_private

            write_private(self.path, self.cassette.dumps())


class CassettePlayer:
    """Registered for ``--replay FILE``: every recorded target is answered from the file."""

    def __init__(self, cassette: Cassette, source: str) -> None:
        self.source = source
        self.cassette = cassette
        self._tapes = {tape.spec: tape for tape in cassette.hosts.values()}
        self._redact: Redact = str

    def redactor(self) -> Redact:
        return self._redact

    @hookimpl(tryfirst=True)
    def runbook_make_host(self, spec: str, config: Config) -> Backend | None:
        tape = self._tapes.get(spec)
        if tape is None:
            raise CassetteError(f"target {spec!r} is not in the cassette {self.source}")
        return ReplayBackend(tape, self.source, self.redactor)

    @hookimpl
    def runbook_run_started(self, run: RunStart) -> None:
        self._redact = run.redact
