"""Log analysis: error counts by type in a time window, over a 1 GB log on the target.

runbook's ``logs`` fixture runs one awk pass on the target and gets a few lines
of counts back; the peer is what an operator would type: ``grep | sort | uniq
-c`` over ``ssh``, run there too (over the whole log: it has no window, which is
less work). Both go through a byte-counting TCP proxy in front of the sshd, so
the bytes that crossed the SSH connection are measured, not estimated.

The log (timestamped lines over two hours, about 5% errors of a dozen types) is
generated once into the cache folder and reused; the window is its second hour
and the baseline its first, whenever the benchmark runs.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import USER
from benchmarks.common import Fleet
from benchmarks.common import Row
from benchmarks.common import Settings
from benchmarks.common import Stat
from benchmarks.common import alternate
from benchmarks.common import fleet
from benchmarks.common import progress

NAMES = ("logs",)
TITLE = "log analysis"
WHY = (
    "grep -E already passes awk only the lines that can match; the rest is wc's count of "
    "the log and awk's bookkeeping on the error lines"
)
#: Seconds of log the generated file spans.
SPAN = 7200
PATTERN = "ERROR|CRITICAL|FATAL|Exception"
PEER = (
    "grep -E {pattern} {path} | grep -oE '[A-Za-z_][A-Za-z0-9_.]*(Error|Exception)' "
    "| sort | uniq -c"
)

RUNBOOK = '''"""Bench log analysis."""
from runbook import check, evidence, hypothesis

PARAMS = {"path": "", "since": 60.0, "baseline": 60.0}
h = hypothesis("h", "Nothing")


@check(tests=h)
def error_counts(logs, params):
    found = logs.error_counts(
        params.path, since_minutes=params.since, baseline_minutes=params.baseline
    )
    evidence("counts", "\\n".join(f"{t.key} {t.window} {t.baseline}" for t in found.types))
'''

_INFO = [
    "INFO http GET /api/items/{n} 200 {ms}ms user={u}",
    "INFO worker job {n} done in {ms}ms queue=default",
    "DEBUG cache hit key=item:{n} ttl=300",
    "INFO http POST /api/orders 201 {ms}ms user={u}",
    "WARNING slow query {ms}ms table=orders id={n}",
]
_ERRORS = [
    "ERROR db query failed: psycopg.OperationalError: connection refused (attempt {u})",
    "ERROR request {n} failed: TimeoutError: upstream took {ms}ms",
    "ERROR handler crashed: KeyError: 'item_{n}'",
    "CRITICAL payment gateway: ConnectionResetError after {ms}ms",
    "ERROR template render: jinja2.exceptions.UndefinedError: 'user' is undefined",
    "FATAL worker {u} out of memory, exiting",
    "ERROR cache: redis.exceptions.ConnectionError: Error 111 connecting",
]


def generate(path: Path, size: int) -> None:
    """Write about ``size`` bytes of log ending now, spread over ``SPAN`` seconds."""
    lines = [
        (_ERRORS[i % len(_ERRORS)] if i % 20 == 0 else _INFO[i % len(_INFO)]).format(
            n=i * 7919 % 100000, ms=i * 31 % 900, u=i % 97
        )
        for i in range(1, 2000)
    ]
    per_second = max(1, size // (SPAN * 100))  # ~100 bytes a line
    start = int(time.time()) - SPAN
    written, second, cursor = 0, 0, 0
    partial = path.with_suffix(".partial")
    with partial.open("w") as out:
        while written < size:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start + second % SPAN))
            chunk = "".join(
                f"{stamp},{j % 1000:03d} {lines[(cursor + j) % len(lines)]}\n"
                for j in range(per_second)
            )
            cursor += per_second
            second += 1
            written += out.write(chunk)
    partial.chmod(0o644)
    partial.rename(path)
    path.with_suffix(".json").write_text(json.dumps({"start": start, "end": start + SPAN}))


def cached_log(settings: Settings) -> tuple[Path, dict[str, float]]:
    """The log of this size in the cache folder, generated on first use."""
    size = settings.size(1 << 30, 2 << 20)
    settings.cache.mkdir(parents=True, exist_ok=True)
    settings.cache.chmod(0o755)  # the login user on the target reads it
    path = settings.cache / f"app-{size >> 20}MiB.log"
    if not path.exists():
        progress(f"{TITLE}: generating a {size >> 20} MiB log in {settings.cache} (once)")
        generate(path, size)
    return path, json.loads(path.with_suffix(".json").read_text())


class CountingProxy:
    """A TCP proxy on 127.0.0.1 to one server that counts the bytes it carries."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.bytes = 0
        self._lock = threading.Lock()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> int:
        """Return the bytes carried since the last call, and start counting again."""
        with self._lock:
            carried, self.bytes = self.bytes, 0
        return carried

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(self.address)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                with self._lock:
                    self.bytes += len(data)
                sink.sendall(data)
        except OSError:
            pass  # the other direction closed the pair
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already shut

    def close(self) -> None:
        """Stop accepting."""
        self.server.close()


def run(settings: Settings) -> list[Row]:
    """Alternate the runbook check and the grep pipeline; compare time and bytes."""
    log, span = cached_log(settings)
    size = log.stat().st_size
    with fleet(1) as hosts:
        hosts.write_runbook("bench_logs", RUNBOOK)
        proxy = CountingProxy(hosts.targets[0])
        hosts.trust("127.0.0.1", proxy.port, hosts.servers[0])
        try:
            samples = alternate(
                {
                    "runbook": lambda: _runbook(hosts, proxy, log, span),
                    "grep": lambda: _grep(hosts, proxy, log),
                },
                settings,
            )
        finally:
            proxy.close()
    ours, peer = (Stat.of(t for t, _ in samples[name]) for name in ("runbook", "grep"))
    carried = Stat.of(b / 1024 for _, b in samples["runbook"])
    progress(
        f"{TITLE}: runbook {ours.median:.2f} s ({carried.median:.1f} KiB over SSH), "
        f"grep {peer.median:.2f} s ({samples['grep'][0][1] / 1024:.1f} KiB)"
    )
    log_size = f"{size / (1 << 20):,.0f} MiB log"
    return [
        Row(
            TITLE,
            f"logs.error_counts, {log_size}",
            "ssh + grep | sort | uniq -c",
            "s",
            ours,
            peer,
            target=1.5,
            why=WHY,
        ),
        Row(
            "log bytes over SSH",
            "bytes over SSH, both ways",
            "the log's size",
            "KiB",
            carried,
            Stat.of([size / 1024]),
            target=0.01,
        ),
    ]


def _runbook(
    hosts: Fleet, proxy: CountingProxy, log: Path, span: dict[str, float]
) -> tuple[float, int]:
    middle = (span["start"] + span["end"]) / 2
    since = (time.time() - middle) / 60
    baseline = (middle - span["start"]) / 60 + 1
    result = hosts.folder / "result.json"
    proxy.take()
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "runbook",
            "run",
            "bench-logs",
            "-q",
            "-H",
            f"ssh://127.0.0.1:{proxy.port}",
            "--json",
            str(result),
            "--param",
            f"path={log}",
            "--param",
            f"since={since:.3f}",
            "--param",
            f"baseline={baseline:.3f}",
        ],
        cwd=hosts.folder,
        env=hosts.env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    time.sleep(0.05)  # let the proxy's threads count the last bytes
    checks = json.loads(result.read_text())["checks"] if result.exists() else []
    if done.returncode != 0 or not checks or checks[0]["outcome"] != "passed":
        raise RuntimeError(
            f"runbook run failed ({done.returncode}): {done.stdout}{done.stderr}{checks}"
        )
    return elapsed, proxy.take()


def _grep(hosts: Fleet, proxy: CountingProxy, log: Path) -> tuple[float, int]:
    command = PEER.format(pattern=shlex.quote(PATTERN), path=shlex.quote(str(log)))
    proxy.take()
    started = time.perf_counter()
    subprocess.run(
        [
            "ssh",
            "-p",
            str(proxy.port),
            "-i",
            str(hosts.key),
            "-F",
            "none",
            "-o",
            f"UserKnownHostsFile={hosts.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{USER}@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    time.sleep(0.05)
    return elapsed, proxy.take()
