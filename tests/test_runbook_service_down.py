"""The built-in service-down runbook against real faults: processes, sockets, HTTP, DNS, TLS.

Every fault is real on this machine: a process that runs or does not, a port with or
without a listening socket, HTTP and TLS servers on 127.0.0.1 and certificates made by
``openssl req -x509``. Each test starts from a healthy service and breaks one thing, so
the hypothesis it names is ruled in and every other one is ruled out.

DNS: ``no-such-host.invalid`` uses the reserved ``.invalid`` top-level domain (RFC
6761), which never resolves; ``getent hosts`` answers "not found" in milliseconds here.
Should a resolver hang instead, the check's own timeout turns it into ``timeout``.
"""

from __future__ import annotations

import dataclasses
import http.server
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from resultdata import assert_passed_checks_say_what_they_measured
from resultdata import by_id
from sshd import free_port
from sshd import unavailable

HYPOTHESES = [
    "process-not-running",
    "port-not-listening",
    "health-check-failing",
    "dns-not-resolving",
    "tls-certificate-expiring",
]


class Handler(http.server.BaseHTTPRequestHandler):
    """/health is healthy, /broken answers 500, /maintenance 200 with the wrong body."""

    def do_GET(self) -> None:
        status, body = {
            "/health": (200, b'{"status": "ok"}'),
            "/broken": (500, b"internal error"),
            "/maintenance": (200, b'{"status": "maintenance"}'),
        }.get(self.path, (404, b"no such page"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.port = int(self.server_address[1])
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Probes that read the certificate and leave are expected."""


def serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def require(*programs: str) -> None:
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        unavailable(f"{' and '.join(missing)} not installed: apt-get install -y curl openssl")


@pytest.fixture(scope="module")
def web() -> Iterator[Server]:
    require("curl", "getent", "ss", "pgrep", "ps")
    yield from serve(Server())


def tls_server(folder: Path, days: int) -> Iterator[Server]:
    """An HTTPS server whose self-signed certificate expires in ``days`` days."""
    require("openssl")
    key, cert = folder / f"key-{days}.pem", folder / f"cert-{days}.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", str(days), "-nodes"]
    subprocess.run(
        [*request, "-subj", f"/CN=svc-{days}d", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from serve(Server(context))


@pytest.fixture(scope="module")
def tls_90_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from tls_server(tmp_path_factory.mktemp("tls"), 90)


@pytest.fixture(scope="module")
def tls_2_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from tls_server(tmp_path_factory.mktemp("tls"), 2)


@dataclasses.dataclass(frozen=True, slots=True)
class Service:
    """The stand-in service process: its name and pid."""

    name: str
    pid: int


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real long-running process with a distinctive name: a copy of sleep, run."""
    name = f"rbsvc-{secrets.token_hex(4)}"  # 14 characters: pgrep -x sees all of it
    program = tmp_path_factory.mktemp("svc") / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", program)
    process = subprocess.Popen([str(program), "600"])
    try:
        yield Service(name, process.pid)
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def healthy(web: Server, tls_90_days: Server, service: Service) -> dict[str, str]:
    """Parameters under which every check passes: break one to make a fault."""
    return {
        "process": service.name,
        "port": str(web.port),
        "health_url": f"{web.url}/health",
        "body_match": '"ok"',
        "dns_name": "localhost",
        "tls_host": "127.0.0.1",
        "tls_port": str(tls_90_days.port),
        "http_timeout": "3",
    }


def param_args(params: dict[str, str]) -> list[str]:
    return [arg for key, value in params.items() for arg in ("--param", f"{key}={value}")]


def run_service_down(project, params: dict[str, str], *args: str) -> tuple[object, dict]:
    result, data = project.run_json("service-down", *param_args(params), *args)
    assert not [command for command in data["commands"] if command["blocked"]], data["commands"]
    return result, data


def assert_only_ruled_in(data: dict, culprits: set[str]) -> dict[str, dict]:
    hypotheses = by_id(data["hypotheses"])
    assert list(hypotheses) == HYPOTHESES
    statuses = {key: value["status"] for key, value in hypotheses.items()}
    expected = {key: "ruled_in" if key in culprits else "ruled_out" for key in HYPOTHESES}
    assert statuses == expected, [c["message"] for c in data["checks"]]
    return hypotheses


def test_a_healthy_service_rules_everything_out(project, healthy, service, web):
    result, data = run_service_down(project, healthy)
    hypotheses = assert_only_ruled_in(data, set())
    assert result.exit_code == 0, result.output
    checks = by_id(data["checks"])
    assert checks["service_answers"]["outcome"] == "passed"
    assert checks["service_answers"]["tests"] == []
    assert {check["outcome"] for check in checks.values()} == {"passed"}
    assert by_id(data["actions"])["restart_service"]["status"] == "not_needed"
    assert (data["runbook"]["name"], data["runbook"]["title"]) == ("service-down", "Service down")
    # What was measured, against what was expected, and about whom.
    url = healthy["health_url"]
    answered = rf"GET {re.escape(url)} answered 200 with '\"ok\"' in \d+ ms, expected 200"
    assert re.fullmatch(answered, checks["service_answers"]["message"])
    evidence = {key: value["evidence"] for key, value in hypotheses.items()}
    assert evidence["process-not-running"] == [
        f"1 process named '{service.name}' running on local: pid {service.pid}"
    ]
    [listening] = evidence["port-not-listening"]
    assert re.fullmatch(
        rf"(.+ \(pid \d+\) listens|a process listens) on TCP 127\.0\.0\.1:{web.port}.*", listening
    ), listening
    assert re.fullmatch(answered, evidence["health-check-failing"][0])
    [resolved] = evidence["dns-not-resolving"]
    assert re.fullmatch(r"localhost resolves to .*(127\.0\.0\.1|::1).* on local", resolved)
    [certificate] = evidence["tls-certificate-expiring"]
    assert re.fullmatch(
        r"the certificate of 127\.0\.0\.1:\d+ expires in (89|90) days "
        r"\(\d{4}-\d\d-\d\d\), threshold 14 days",
        certificate,
    ), certificate
    assert_passed_checks_say_what_they_measured(data)


def test_a_process_that_is_not_running_is_ruled_in(project, healthy):
    missing = f"rbgone-{secrets.token_hex(4)}"
    result, data = run_service_down(project, {**healthy, "process": missing})
    hypotheses = assert_only_ruled_in(data, {"process-not-running"})
    assert hypotheses["process-not-running"]["evidence"] == [
        f"no process named '{missing}' is running on local"
    ]
    assert result.exit_code == 1
    # Read-only: the restart is planned, not run.
    assert by_id(data["actions"])["restart_service"]["status"] == "planned"


def test_a_running_process_is_listed_with_its_pid(project, healthy, service):
    _, data = run_service_down(project, healthy)
    check = by_id(data["checks"])["process_is_running"]
    [table] = check["evidence"]
    assert table["title"] == f"Processes named {service.name}"
    [row] = table["body"].splitlines()[2:]
    assert row.split()[0] == str(service.pid) and row.endswith(f"/{service.name} 600")


def test_a_closed_port_is_ruled_in_and_a_listening_one_listed(project, healthy, web):
    closed = free_port("127.0.0.1")
    _, data = run_service_down(project, {**healthy, "port": str(closed)})
    hypotheses = assert_only_ruled_in(data, {"port-not-listening"})
    assert hypotheses["port-not-listening"]["evidence"] == [
        f"nothing listens on TCP port {closed} on local"
    ]
    [listening] = by_id(data["checks"])["port_is_listening"]["evidence"]
    assert str(web.port) in listening["body"]  # what does listen, for the operator


@pytest.mark.parametrize(
    ("path", "wanted"),
    [
        ("/broken", "answered 500, expected 200"),
        ("/maintenance", "answered 200 without '\"ok\"' in its body"),
    ],
)
def test_a_failing_health_check_is_ruled_in(project, healthy, web, path, wanted):
    url = f"{web.url}{path}"
    result, data = run_service_down(project, {**healthy, "health_url": url})
    hypotheses = assert_only_ruled_in(data, {"health-check-failing"})
    assert hypotheses["health-check-failing"]["evidence"] == [f"GET {url} {wanted}"]
    checks = by_id(data["checks"])
    assert checks["service_answers"]["outcome"] == "failed"  # the symptom is confirmed
    assert result.exit_code == 1


def test_a_name_that_does_not_resolve_is_ruled_in(project, healthy):
    name = "no-such-host.invalid"
    _, data = run_service_down(project, {**healthy, "dns_name": name})
    hypotheses = assert_only_ruled_in(data, {"dns-not-resolving"})
    [message] = hypotheses["dns-not-resolving"]["evidence"]
    assert message.startswith(f"{name} does not resolve on local")


def test_a_certificate_expiring_in_two_days_is_ruled_in(project, healthy, tls_2_days):
    _, data = run_service_down(project, {**healthy, "tls_port": str(tls_2_days.port)})
    hypotheses = assert_only_ruled_in(data, {"tls-certificate-expiring"})
    [message] = hypotheses["tls-certificate-expiring"]["evidence"]
    assert message.startswith(f"the certificate of 127.0.0.1:{tls_2_days.port} (")
    assert "svc-2d" in message, message
    assert re.search(r"expires in (1\.9|2\.0) days \(.* UTC; threshold 14 days\)", message), message
    [table] = by_id(data["checks"])["certificate_is_valid_for_long_enough"]["evidence"]
    assert table["title"] == "Server certificate" and "svc-2d" in table["body"]


def test_checks_that_do_not_apply_are_skipped_with_a_reason(project, healthy):
    # An empty value (an unset CI variable) supplies nothing, like leaving the --param out.
    params = {**healthy, "process": "", "port": "", "dns_name": "", "tls_host": ""}
    _, data = run_service_down(project, params)
    checks = by_id(data["checks"])
    skipped = {
        key: check["message"] for key, check in checks.items() if check["outcome"] == "skipped"
    }
    assert skipped == {
        "process_is_running": "needs --param process=PROCESS",
        "port_is_listening": "needs --param port=PORT",
        "name_resolves": "needs --param dns_name=NAME (or a health_url with a host name)",
        "certificate_is_valid_for_long_enough": (
            "needs --param tls_host=HOST (or an https health_url)"
        ),
    }
    statuses = {h["id"]: h["status"] for h in data["hypotheses"]}
    assert statuses["health-check-failing"] == "ruled_out"
    assert statuses["dns-not-resolving"] == "untested"


def test_service_down_over_ssh_finds_a_closed_port_and_a_failing_health_check(
    remote_project, sshd, healthy, web
):
    # The sshd runs on this machine, so the target sees the same sockets and servers.
    closed = free_port("127.0.0.1")
    url = f"{web.url}/broken"
    params = {**healthy, "port": str(closed), "health_url": url}
    _, data = run_service_down(remote_project, params, "-H", f"127.0.0.2:{sshd.port}")
    assert data["hosts"][0]["status"] == "ok", data["hosts"]
    hypotheses = assert_only_ruled_in(data, {"port-not-listening", "health-check-failing"})
    target = data["hosts"][0]["name"]
    assert data["hosts"][0]["uri"] == f"ssh://{sshd.user}@127.0.0.2:{sshd.port}"
    assert hypotheses["port-not-listening"]["hosts"] == {target: "ruled_in"}
    assert hypotheses["port-not-listening"]["evidence"] == [
        f"nothing listens on TCP port {closed} on {target}"
    ]
    assert hypotheses["health-check-failing"]["evidence"] == [
        f"GET {url} answered 500, expected 200"
    ]


def test_service_down_lints_and_dry_runs_cleanly(tmp_path):
    def runbook(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "runbook", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
            timeout=120,
        )

    lint = runbook("lint", "service-down")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = runbook("run", "service-down", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "restart_service" in dry.stdout
    for hypothesis in HYPOTHESES:
        assert hypothesis in dry.stdout


def test_a_healthy_service_given_only_its_health_url_rules_nothing_in(project, web):
    # A real HTTP server on 127.0.0.1: no made-up process name or port is looked for.
    url = f"{web.url}/health"
    result, data = run_service_down(project, {"health_url": url})
    hypotheses = by_id(data["hypotheses"])
    statuses = {key: value["status"] for key, value in hypotheses.items()}
    assert "ruled_in" not in statuses.values(), [c["message"] for c in data["checks"]]
    assert statuses["health-check-failing"] == "ruled_out"
    assert statuses["process-not-running"] == statuses["port-not-listening"] == "untested"
    checks = by_id(data["checks"])
    assert checks["process_is_running"]["message"] == "needs --param process=PROCESS"
    assert checks["port_is_listening"]["message"] == "needs --param port=PORT"
    assert checks["service_answers"]["outcome"] == "passed"
    [response] = checks["health_endpoint_is_healthy"]["evidence"][:1]
    assert url in response["body"] and " 200 " in response["body"]  # the measured answer
    assert by_id(data["actions"])["restart_service"]["status"] == "not_needed"
    assert (data["severity"], data["severity_source"]) == (None, None)  # found nothing
    assert result.exit_code == 0, result.output


def test_without_parameters_nothing_is_guessed(project):
    result, data = run_service_down(project, {})
    checks = by_id(data["checks"])
    assert {c["outcome"] for c in checks.values()} == {"skipped"}
    assert checks["service_answers"]["message"] == "needs --param health_url=HEALTH_URL"
    assert checks["process_is_running"]["message"] == "needs --param process=PROCESS"
    assert {h["status"] for h in data["hypotheses"]} == {"untested"}
    assert data["severity"] is None
    assert result.exit_code != 1, result.output  # nothing ruled in on a machine never looked at


def test_a_broken_health_check_on_a_real_service_suggests_p1(project, web):
    url = f"{web.url}/broken"
    result, data = run_service_down(project, {"health_url": url})
    [reason] = by_id(data["hypotheses"])["health-check-failing"]["evidence"]
    assert reason == f"GET {url} answered 500, expected 200"
    assert (data["severity"], data["severity_source"]) == ("P1", "runbook")
    assert result.exit_code == 1
