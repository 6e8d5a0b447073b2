"""What every benchmark shares: settings, timing, alternating runs, rows, a fleet of sshds.

A benchmark is a module with ``NAMES`` (the rows it can produce, for ``--only``)
and ``run(settings) -> list[Row]``. Each row compares one runbook figure with one
peer figure: medians of several runs after a warm-up, runbook and peer alternated
so that a burst of load on the shared machine hits both, with the min-max range
and the ratio runbook/peer against the target ratio.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# The SSH tests' real-sshd helpers (tests/ is not a package).
from sshd import USER as USER  # type: ignore[import-not-found]  # noqa: E402
from sshd import SSHServer  # noqa: E402
from sshd import keygen  # noqa: E402
from sshd import start_sshd  # noqa: E402

T = TypeVar("T")

#: Addresses one sshd listens on (sshd accepts at most 16 ListenAddress lines).
ADDRESSES_PER_SSHD = 16


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """How big and how often: ``quick`` runs every benchmark once at a tiny size."""

    quick: bool
    repeat: int
    warmup: int
    #: Where generated inputs that are slow to make (the 1 GB log) are kept between runs.
    cache: Path

    def size(self, full: int, quick: int) -> int:
        """The size to use: ``full``, or ``quick`` in a quick run."""
        return quick if self.quick else full


@dataclasses.dataclass(frozen=True, slots=True)
class Stat:
    """Samples of one figure: median and range."""

    samples: tuple[float, ...]

    @classmethod
    def of(cls, values: Iterator[float] | list[float] | tuple[float, ...]) -> Stat:
        """Build from any iterable of samples."""
        return cls(tuple(values))

    @property
    def median(self) -> float:
        """The median sample."""
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        """The smallest sample."""
        return min(self.samples)

    @property
    def high(self) -> float:
        """The largest sample."""
        return max(self.samples)


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One line of the results: runbook against one peer on one benchmark."""

    benchmark: str
    ours: str
    peer: str
    unit: str
    runbook: Stat
    other: Stat
    #: runbook/peer must be at most this (below it when ``strict``) for the target to be met.
    target: float
    strict: bool = False
    #: Why the target is missed, shown only when it is.
    why: str = ""

    @property
    def ratio(self) -> float:
        """runbook's median over the peer's (below 1.0: runbook is better)."""
        return self.runbook.median / self.other.median if self.other.median else float("inf")

    @property
    def met(self) -> bool:
        """Whether the ratio meets the target."""
        return self.ratio < self.target if self.strict else self.ratio <= self.target

    @property
    def target_text(self) -> str:
        """The target as written in the table."""
        return f"< {self.target:g}x" if self.strict else f"<= {self.target:g}x"


def alternate(sides: dict[str, Callable[[], T]], settings: Settings) -> dict[str, list[T]]:
    """Call every side ``warmup`` times unrecorded, then ``repeat`` times, interleaved.

    The order rotates each round, so no side always runs right after another.
    """
    names = list(sides)
    for _ in range(settings.warmup):
        for name in names:
            sides[name]()
    samples: dict[str, list[T]] = {name: [] for name in names}
    for round_ in range(settings.repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(sides[name]())
    return samples


def environ(**extra: str) -> dict[str, str]:
    """The environment of every measured process, runbook's and the peers'.

    Python may write bytecode caches, as a pip install has them: a run with
    PYTHONDONTWRITEBYTECODE set would compile runbook's modules from source on
    every start, and no peer's (their caches were written when pip installed them).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def run_timed(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> tuple[float, float]:
    """Run ``argv``; return (wall seconds, peak RSS in MiB of its largest process)."""
    with tempfile.NamedTemporaryFile("r") as rss_file:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        rss_kib = float(rss_file.read().split()[-1])
    if done.returncode not in ok:
        raise RuntimeError(
            f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
            f"{done.stderr[-2000:]}"
        )
    return wall, rss_kib / 1024


def wall(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Callable[[], float]:
    """A side for ``alternate``: the wall time of one run of ``argv``."""
    return lambda: run_timed(argv, cwd, env, ok=(0, 1))[0]


def console_script(name: str) -> list[str]:
    """The argv of a console script installed next to this interpreter."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", name]


def has_module(module: str) -> bool:
    """Whether this interpreter can import ``module`` (a peer may not be installed)."""
    return importlib.util.find_spec(module) is not None


def skipped(benchmark: str, peer: str, why: str) -> None:
    """Say that a peer is left out of a benchmark."""
    print(f"  {benchmark}: skipped {peer}: {why}", flush=True)


def progress(text: str) -> None:
    """One line of progress on stderr."""
    print(f"  {text}", file=sys.stderr, flush=True)


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=f"runbook-bench-{prefix}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclasses.dataclass
class Fleet:
    """Private sshds on 127.0.0.2.. and a folder with the key, known_hosts and runbook.toml."""

    folder: Path
    key: Path
    known_hosts: Path
    servers: list[SSHServer]

    @property
    def targets(self) -> list[tuple[str, int]]:
        """(address, port) of every host."""
        return [(h, s.port) for s in self.servers for h in s.addresses]

    @property
    def specs(self) -> str:
        """The hosts as ``runbook run -H`` takes them, comma separated."""
        return ",".join(f"ssh://{h}:{p}" for h, p in self.targets)

    @property
    def env(self) -> dict[str, str]:
        """The environment for runbook and the peers: the audit log inside the folder."""
        return environ(RUNBOOK_AUDIT_LOG=str(self.folder / "audit.jsonl"))

    def write_runbook(self, name: str, source: str) -> None:
        """Write ``runbooks/<name>.py`` in the folder."""
        (self.folder / "runbooks").mkdir(exist_ok=True)
        (self.folder / "runbooks" / f"{name}.py").write_text(source)

    def trust(self, address: str, port: int, server: SSHServer) -> None:
        """Add ``address:port`` with ``server``'s host key to known_hosts (for a proxy)."""
        kind, blob = server.host_key.with_suffix(".pub").read_text().split()[:2]
        with self.known_hosts.open("a") as known:
            known.write(f"[{address}]:{port} {kind} {blob}\n")


@contextmanager
def fleet(hosts: int) -> Iterator[Fleet]:
    """Start sshds for ``hosts`` loopback addresses; stop them by PID afterwards."""
    addresses = [f"127.0.0.{2 + i}" for i in range(hosts)]
    with workdir("fleet") as folder:
        key = keygen(folder / "id_bench")
        servers: list[SSHServer] = []
        try:
            for i in range(0, hosts, ADDRESSES_PER_SSHD):
                servers.append(start_sshd(tuple(addresses[i : i + ADDRESSES_PER_SSHD]), [key]))
            known = folder / "known_hosts"
            known.write_text(
                "".join(s.host_key_line(h) + "\n" for s in servers for h in s.addresses)
            )
            (folder / "ssh_config").write_text(f"Host *\n  User {USER}\n  IdentityFile {key}\n")
            (folder / "runbook.toml").write_text(
                f'ssh_config = "{folder / "ssh_config"}"\nknown_hosts = "{known}"\n'
                f'report_dir = "{folder / "reports"}"\n'
            )
            yield Fleet(folder, key, known, servers)
        finally:
            for server in servers:
                server.stop()
