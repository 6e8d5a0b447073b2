"""The http plugin: parsers on literal text, probes against real servers on 127.0.0.1, the CLI.

Every probe runs curl, getent or openssl on this machine through a ``Host`` whose
read-only guard is on, so each test also proves the guard allows what the client sends.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runbook.plugins.http import HttpClient
from runbook.plugins.http import HttpError
from runbook.plugins.http import HttpTimeout
from runbook.plugins.http import parse_connect_time
from runbook.plugins.http import parse_curl_certificate
from runbook.plugins.http import parse_curl_response
from runbook.plugins.http import parse_getent_ahosts
from runbook.plugins.http import parse_headers
from runbook.plugins.http import parse_openssl_date
from runbook.plugins.http import parse_openssl_x509
from sshd import unavailable

from runbook.hosts.host import Host
from runbook.hosts.local import LocalBackend
from runbook.pluginmanager import load_config
from runbook.safety.guard import make_policy
from runbook.steps import Step
from runbook.steps import current_step

PLUGIN = "runbook.plugins.http"
UTC = dt.UTC

# Parsers: literal text as curl, openssl and getent print it.

TRAILER = "\n[runbook-http] {code} 0.012345 {redirects} {url}"


def curl_output(heads, body, code=200, redirects=0, url="http://a/"):
    """What the client's curl prints: response heads, the body, then the trailer."""
    heads = "".join(head.replace("\n", "\r\n") + "\r\n" for head in heads)
    return heads + body + TRAILER.format(code=code, redirects=redirects, url=url)


def test_response_is_status_headers_body_and_timing():
    text = curl_output(
        ["HTTP/1.1 200 OK\nContent-Type: application/json\nX-Tag: a\nx-tag: b\n"],
        '{"status": "ok"}',
    )
    response = parse_curl_response(text)
    assert response.status == 200
    assert response.url == "http://a/"
    assert response.elapsed_s == pytest.approx(0.012345)
    assert response.headers == {"content-type": "application/json", "x-tag": "a, b"}
    assert response.body == '{"status": "ok"}'
    assert response.json() == {"status": "ok"}
    assert response.ok


def test_redirects_and_informational_heads_come_before_the_body():
    text = curl_output(
        [
            "HTTP/1.1 302 Found\nLocation: /b\n",
            "HTTP/1.1 103 Early Hints\nLink: </s.css>\n",
            "HTTP/2 200\nserver: b\n",
        ],
        "HTTP/1.1 500 in the body\r\n\r\n[runbook-http] 999 not the trailer",
        redirects=1,
        url="http://a/b",
    )
    response = parse_curl_response(text)
    assert (response.status, response.url, response.headers) == (200, "http://a/b", {"server": "b"})
    assert response.body == "HTTP/1.1 500 in the body\r\n\r\n[runbook-http] 999 not the trailer"


def test_head_response_has_no_body_and_folded_headers_join():
    text = curl_output(["HTTP/1.0 404 Not Found\nX-Long: one\n  two\nbad line\n"], "", code=404)
    response = parse_curl_response(text)
    assert (response.status, response.headers, response.body) == (404, {"x-long": "one two"}, "")
    assert not response.ok


def test_missing_trailer_or_status_line_is_an_error():
    with pytest.raises(ValueError, match="trailer"):
        parse_curl_response("HTTP/1.1 200 OK\r\n\r\nbody")
    with pytest.raises(ValueError, match="status line"):
        parse_headers("200 OK\r\nServer: x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Nov 26 23:00:45 2026 GMT", dt.datetime(2026, 11, 26, 23, 0, 45, tzinfo=UTC)),
        ("Jan  4 08:05:00 2027 GMT", dt.datetime(2027, 1, 4, 8, 5, tzinfo=UTC)),
        ("Feb 29 12:00:00.5 2028 GMT", dt.datetime(2028, 2, 29, 12, tzinfo=UTC)),
        ("Fri, 06 Nov 2026 23:00:45 GMT", dt.datetime(2026, 11, 6, 23, 0, 45, tzinfo=UTC)),
        ("2026-11-06 23:00:45Z", dt.datetime(2026, 11, 6, 23, 0, 45, tzinfo=UTC)),
    ],
)
def test_certificate_dates_parse_to_utc(text, expected):
    assert parse_openssl_date(text) == expected


@pytest.mark.parametrize(
    "text", ["", "tomorrow", "Foo 26 23:00:45 2026 GMT", "Nov 31 00:00:00 2026"]
)
def test_bad_certificate_date_is_an_error(text):
    with pytest.raises(ValueError, match="not a certificate date"):
        parse_openssl_date(text)


CURL_VERBOSE = """\
*   Trying 127.0.0.1:8443...
* Connected to 127.0.0.1 (127.0.0.1) port 8443 (#0)
* SSL connection using TLSv1.3 / TLS_AES_256_GCM_SHA384
* Server certificate:
*  subject: CN=localhost
*  start date: Nov 23 23:00:45 2026 GMT
*  expire date: Nov 26 23:00:45 2026 GMT
*  issuer: CN=localhost
*  SSL certificate verify result: self-signed certificate (18), continuing anyway.
> HEAD / HTTP/1.1
< Date: Mon, 23 Nov 2026 23:00:50 GMT
"""


def test_server_certificate_from_curl_verbose():
    certificate = parse_curl_certificate(CURL_VERBOSE)
    assert (certificate.subject, certificate.issuer) == ("CN=localhost", "CN=localhost")
    assert certificate.not_before == dt.datetime(2026, 11, 23, 23, 0, 45, tzinfo=UTC)
    assert certificate.not_after == dt.datetime(2026, 11, 26, 23, 0, 45, tzinfo=UTC)
    assert certificate.days_left(dt.datetime(2026, 11, 25, 23, 0, 45, tzinfo=UTC)) == 1.0
    with pytest.raises(ValueError, match="no server certificate"):
        parse_curl_certificate("* Connected to 127.0.0.1\n< Date: Mon, 23 Nov 2026 GMT\n")


def test_certificate_file_fields_from_openssl_x509():
    certificate = parse_openssl_x509(
        "subject=CN = localhost\nissuer=O = Example CA\n"
        "notBefore=Nov 23 23:00:45 2026 GMT\nnotAfter=Nov 26 23:00:45 2026 GMT\n"
    )
    assert (certificate.subject, certificate.issuer) == ("CN = localhost", "O = Example CA")
    assert certificate.not_after == dt.datetime(2026, 11, 26, 23, 0, 45, tzinfo=UTC)
    with pytest.raises(ValueError, match="notAfter"):
        parse_openssl_x509("subject=CN = localhost\n")


def test_getent_addresses_once_each_in_order():
    text = (
        "10.0.0.5        STREAM db.internal\n10.0.0.5        DGRAM\n10.0.0.5        RAW\n"
        "fd00::5         STREAM\nfd00::5         DGRAM\n"
    )
    assert parse_getent_ahosts(text) == ["10.0.0.5", "fd00::5"]
    assert parse_getent_ahosts("") == []


def test_connect_time():
    assert parse_connect_time("0.000412") == pytest.approx(0.000412)
    assert parse_connect_time("0.000000\n") == 0
    with pytest.raises(ValueError):
        parse_connect_time("")


# Real servers on 127.0.0.1.


class Handler(http.server.BaseHTTPRequestHandler):
    """/health 200 JSON, /broken 500, /slow answers late, /moved redirects, /hints sends 103."""

    def do_GET(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        try:
            self._answer(self.command != "HEAD")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout test)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.send_error(405)

    do_PUT = do_DELETE = do_POST

    def _answer(self, with_body: bool) -> None:
        path = self.path.partition("?")[0]
        if path == "/slow":
            time.sleep(2)
        if path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/hints":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
        status, body = {
            "/health": (200, b'{"status": "ok"}'),
            "/slow": (200, b"late"),
            "/hints": (200, b"hinted"),
            "/headers": (200, json.dumps(dict(self.headers)).encode()),
            "/broken": (500, b"boom"),
        }.get(path, (404, b"no such page"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"

    def handle_error(self, request: object, client_address: object) -> None:
        """Probes that connect and leave (tcp_connect) or fail TLS are expected."""


def require(*programs: str) -> None:
    """Skip (fail in CI) when the probes' programs are not installed here."""
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        unavailable(f"{' and '.join(missing)} not installed: apt-get install -y curl openssl")


def serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def web() -> Iterator[Server]:
    require("curl")
    yield from serve(Server())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for CN=localhost, valid for 3 days from now."""
    require("openssl")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    request = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "3", "-nodes"]
    subprocess.run(
        [*request, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return key, cert


@pytest.fixture(scope="module")
def tls_web(certificate: tuple[Path, Path]) -> Iterator[Server]:
    key, cert = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    yield from serve(Server(context))


@pytest.fixture
def step() -> Iterator[Step]:
    """A running read-only check, so that the guard judges every command."""
    running = Step("probe", "check", "local", read_only=True)
    token = current_step.set(running)
    yield running
    current_step.reset(token)
    refused = [record.command for record in running.commands if record.blocked]
    assert not refused, f"the guard refused what the client sent: {refused}"


@pytest.fixture
def http(tmp_path: Path, step: Step) -> HttpClient:
    require("curl", "getent")
    policy = make_policy(load_config(start=tmp_path), "read-only")
    return HttpClient(Host(LocalBackend(), policy=policy))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_get_returns_status_headers_body_and_timing(http, web):
    response = http.get(f"{web.url}/health")
    assert response.status == 200
    assert response.url == f"{web.url}/health"
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["set-cookie"] == "a=1, b=2"
    assert 0 < response.elapsed_s < 5


def test_get_returns_a_server_error_without_raising(http, web):
    response = http.get(f"{web.url}/broken")
    assert (response.status, response.body, response.ok) == (500, "boom", False)


def test_get_sends_the_headers_given(http, web):
    response = http.get(
        f"{web.url}/headers", headers={"Accept": "application/json", "X-Request-Id": "r-42"}
    )
    sent = response.json()
    assert (sent["Accept"], sent["X-Request-Id"]) == ("application/json", "r-42")


def test_redirects_are_followed_only_when_asked(http, web):
    moved = http.get(f"{web.url}/moved")
    assert (moved.status, moved.headers["location"], moved.body) == (302, "/health", "")
    followed = http.get(f"{web.url}/moved", follow_redirects=True)
    assert (followed.status, followed.url) == (200, f"{web.url}/health")
    assert followed.json() == {"status": "ok"}


def test_informational_response_before_the_real_one(http, web):
    response = http.get(f"{web.url}/hints")
    assert (response.status, response.body) == (200, "hinted")


def test_head_sends_head_and_has_no_body(http, web):
    response = http.head(f"{web.url}/health")
    assert (response.status, response.body) == (200, "")
    assert response.headers["content-length"] == "16"
    assert web.requests[-1][:2] == ("HEAD", "/health")


def test_slow_response_times_out(http, web):
    started = time.monotonic()
    with pytest.raises(HttpTimeout, match=r"no response within 0.5s") as info:
        http.get(f"{web.url}/slow", timeout=0.5)
    assert isinstance(info.value, http.Timeout) and isinstance(info.value, TimeoutError)
    assert info.value.exit_status == 28
    assert time.monotonic() - started < 2


def test_refused_connection_is_an_http_error(http):
    with pytest.raises(http.Error, match="Failed to connect") as info:
        http.get(f"http://127.0.0.1:{closed_port()}/health")
    assert info.value.exit_status == 7


def test_certificates_are_verified(http, tls_web):
    with pytest.raises(HttpError) as info:
        http.get(f"{tls_web.url}/health")
    assert info.value.exit_status == 60  # self-signed


@pytest.mark.parametrize(
    ("url", "headers", "message"),
    [
        ("file:///etc/passwd", None, "http:// and https:// URLs only"),
        ("-o/tmp/x", None, "http:// and https:// URLs only"),
        ("http://a/ b", None, "http:// and https:// URLs only"),
        ("http://a/", {"X-HTTP-Method-Override": "DELETE"}, "another method"),
        ("http://a/", {"Bad Name": "x"}, "not an HTTP header name"),
        ("http://a/", {"@/etc/passwd": "x"}, "not an HTTP header name"),
        ("http://a/", {"X-A": "1\r\nX-B: 2"}, "line breaks"),
    ],
)
def test_client_refuses_what_is_not_a_plain_get(http, step, url, headers, message):
    with pytest.raises(ValueError, match=message):
        http.get(url, headers=headers)
    assert step.commands == []


def test_tls_expiry_of_a_server(http, tls_web):
    expiry = http.tls_expiry("127.0.0.1", tls_web.port)
    expected = dt.datetime.now(UTC) + dt.timedelta(days=3)
    assert abs((expiry - expected).total_seconds()) < 600
    certificate = http.tls_certificate("127.0.0.1", tls_web.port, servername="localhost")
    assert "localhost" in certificate.subject
    assert certificate.not_after == expiry
    assert 2.9 < certificate.days_left() <= 3


def test_tls_on_a_plain_http_port_is_an_http_error(http, web):
    with pytest.raises(HttpError, match="failed on local: curl: \\(35\\)"):
        http.tls_expiry("127.0.0.1", web.port)


def test_certificate_file(http, certificate, tls_web):
    _, cert = certificate
    from_file = http.certificate_file(str(cert))
    assert from_file.not_after == http.tls_expiry("127.0.0.1", tls_web.port)
    assert "localhost" in from_file.subject
    with pytest.raises(RuntimeError, match="failed on local"):
        http.certificate_file(str(cert.parent / "missing.pem"))


def test_resolve(http):
    assert {"127.0.0.1", "::1"} & set(http.resolve("localhost"))
    assert http.resolve("no-such-host.invalid") == []
    with pytest.raises(ValueError, match="not a host name"):
        http.resolve("-s files")


def test_tcp_connect_open_and_closed_ports(http, web):
    before = len(web.requests)
    started = time.monotonic()
    assert http.tcp_connect("127.0.0.1", web.port) is True
    assert time.monotonic() - started < 2
    assert http.tcp_connect("127.0.0.1", closed_port()) is False
    assert http.tcp_connect("localhost", web.port, timeout=0.3) is True
    assert web.requests[before:] == []  # connected, sent nothing
    with pytest.raises(ValueError, match="not a TCP port"):
        http.tcp_connect("127.0.0.1", 0)


# Through a real runbook and the CLI.

HEALTH_RUNBOOK = '''
    """Web health.

    Symptoms: users see errors.
    """
    from runbook import check, evidence, hypothesis, rule_in

    PARAMS = {"url": "http://127.0.0.1:9/health"}

    unhealthy = hypothesis("unhealthy", "The health endpoint fails")


    @check(tests=unhealthy)
    def health_endpoint_answers(http, params):
        try:
            response = http.get(params.url, timeout=5)
        except http.Error as exc:
            rule_in(str(exc))
        evidence("Response", [{"status": response.status, "body": response.body}])
        assert response.status == 200, f"GET {params.url} answered {response.status}"
'''

WRITING_RUNBOOK = '''
    """Sneaky writes.

    Symptoms: none.
    """
    from runbook import check, hypothesis

    PARAMS = {"url": "http://127.0.0.1:9/admin"}

    sneaky = hypothesis("sneaky", "A check can change a server")


    @check(tests=sneaky)
    def post(host, params):
        host.run(["curl", "-q", "-sS", "-X", "POST", params.url])


    @check(tests=sneaky)
    def post_data(host, params):
        host.run("curl -q -sS -d reset=1 %s", params.url)


    @check(tests=sneaky)
    def put_without_q(host, params):
        host.run(["curl", "-X", "PUT", params.url])


    @check(tests=sneaky)
    def method_override(host, params):
        host.run(["curl", "-q", "-H", "X-HTTP-Method-Override: DELETE", params.url])
'''


def test_runbook_check_passes_against_a_healthy_server(project, web):
    project.runbook("web_health", HEALTH_RUNBOOK)
    result, data = project.run_json("web-health", "--param", f"url={web.url}/health")
    assert result.exit_code == 0, result.output
    (checked,) = data["checks"]
    assert checked["outcome"] == "passed"
    assert data["hypotheses"][0]["status"] == "ruled_out"
    (command,) = data["commands"]
    assert command["command"].startswith("curl -q ") and not command["blocked"]


def test_runbook_check_fails_against_a_broken_server(project, web):
    project.runbook("web_health", HEALTH_RUNBOOK)
    result, data = project.run_json("web-health", "--param", f"url={web.url}/broken")
    assert result.exit_code == 1, result.output
    assert data["checks"][0]["outcome"] == "failed"
    assert data["checks"][0]["message"] == f"GET {web.url}/broken answered 500"
    assert data["hypotheses"][0]["status"] == "ruled_in"


def test_runbook_check_rules_in_when_nothing_listens(project):
    project.runbook("web_health", HEALTH_RUNBOOK)
    url = f"http://127.0.0.1:{closed_port()}/health"
    result, data = project.run_json("web-health", "--param", f"url={url}")
    assert result.exit_code == 1, result.output
    assert "Failed to connect" in data["checks"][0]["message"]
    assert data["hypotheses"][0]["status"] == "ruled_in"


def test_curl_that_could_change_the_server_is_blocked(project, web):
    project.runbook("sneaky", WRITING_RUNBOOK)
    before = len(web.requests)
    result, data = project.run_json("sneaky", "--param", f"url={web.url}/admin")
    assert result.exit_code == 1, result.output
    assert [check["outcome"] for check in data["checks"]] == ["blocked"] * 4
    assert all(command["blocked"] for command in data["commands"])
    assert len(data["commands"]) == 4
    assert "only GET and HEAD read" in data["checks"][0]["message"]
    assert "sends a request body" in data["checks"][1]["message"]
    assert "start with -q" in data["checks"][2]["message"]
    assert "another method" in data["checks"][3]["message"]
    assert web.requests[before:] == []  # the server saw no request at all
    assert data["hypotheses"][0]["status"] == "inconclusive"


def test_runbook_check_runs_curl_on_the_target_over_ssh(remote_project, web, sshd):
    project = remote_project
    project.runbook("web_health", HEALTH_RUNBOOK)
    target = f"ssh://127.0.0.2:{sshd.port}"
    result, data = project.run_json("web-health", "-H", target, "--param", f"url={web.url}/health")
    assert result.exit_code == 0, result.output
    assert data["hosts"][0]["uri"] == f"ssh://{sshd.user}@127.0.0.2:{sshd.port}"
    assert data["checks"][0]["outcome"] == "passed"
    assert web.requests[-1][2]["User-Agent"].startswith("curl/")  # curl on the target asked


def test_plugin_lists_the_http_fixture(project):
    result = project.invoke("plugins")
    assert result.exit_code == 0, result.output
    assert "http" in result.output and PLUGIN in result.output
