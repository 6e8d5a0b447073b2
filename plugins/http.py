"""The ``http`` fixture: HTTP, TLS, DNS and TCP probes that run on the target.

The client never opens a connection from this process. Each probe is one
ordinary command (``curl``, ``getent``, ``openssl x509``) sent through
``Host.run``, so it sees what the target sees (its resolver, routes, proxies
and firewall), works the same locally, over SSH and against a replayed
cassette, and passes the read-only guard. It offers GET and HEAD only. What
the commands print is parsed by pure ``parse_*`` functions, tested without a
host.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from typing import Any
from typing import ClassVar

from runbook import fixture

if TYPE_CHECKING:
    from runbook import CommandResult
    from runbook import Host

#: Redirects ``follow_redirects=True`` follows before giving up.
MAX_REDIRECTS = 10
#: Headers that ask a server to treat a GET as another method: the client refuses them.
METHOD_OVERRIDE_HEADERS = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)

# curl writes this after the body, so its last occurrence in the output is curl's own.
_TRAILER = "\n[runbook-http] "
_WRITE_OUT = "\\n[runbook-http] %{http_code} %{time_total} %{num_redirects} %{url_effective}"
# Seconds the host waits beyond curl's own --max-time before it kills curl.
_GRACE_S = 5.0
# tcp_connect first waits this long: a connected probe lasts until its time is up.
_QUICK_CONNECT_S = 0.5
# curl exit statuses: could not resolve, could not connect, timed out, not installed.
_NO_ADDRESS, _NO_CONNECTION, _TIMED_OUT, _NOT_FOUND = 6, 7, 28, 127
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(r"HTTP/\d(?:\.\d)? (\d{3})")
_BLANK_LINE = re.compile(r"\r?\n\r?\n")
_CERT_FIELD = re.compile(r"^\*\s+(subject|start date|expire date|issuer):\s*(.*?)\s*$", re.M)
_OPENSSL_DATE = re.compile(
    r"(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<hour>\d{2}):(?P<minute>\d{2}):"
    r"(?P<second>\d{2})(?:\.\d+)? (?P<year>\d{4})(?: GMT)?"
)
_MONTHS = {
    name: number
    for number, name in enumerate(
        "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1
    )
}


class HttpError(RuntimeError):
    """No HTTP response: the name did not resolve, the connection or TLS failed, curl is missing."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        #: curl's exit status: 6 no address, 7 no connection, 28 timeout, 35 or 60 TLS ...
        self.exit_status = exit_status


class HttpTimeout(HttpError, TimeoutError):
    """No complete response within the timeout."""


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResponse:
    """One HTTP response, whatever its status."""

    #: The URL that answered: the last one when redirects were followed.
    url: str
    status: int
    #: Seconds from the start of the request to the end of the response (redirects included).
    elapsed_s: float
    #: Header names in lower case; a repeated header's values are joined with ", ".
    headers: dict[str, str]
    body: str

    @property
    def ok(self) -> bool:
        """True for a status below 400 (success or redirect)."""
        return self.status < 400

    def json(self) -> Any:
        """Return the body parsed as JSON; raise ``ValueError`` if it is not JSON."""
        return json.loads(self.body)


@dataclasses.dataclass(frozen=True, slots=True)
class TlsCertificate:
    """The validity and names of a certificate (the server's, or one read from a file)."""

    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime

    def days_left(self, now: dt.datetime | None = None) -> float:
        """Return the days until the certificate expires (negative once it has)."""
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400


# Parsers: pure functions of command output.


def parse_headers(block: str) -> tuple[int, dict[str, str]]:
    """Parse one response head (status line and header lines) into its status and headers."""
    lines = re.split(r"\r?\n", block.strip("\r\n"))
    match = _STATUS_LINE.match(lines[0])
    if match is None:
        raise ValueError(f"not an HTTP status line: {lines[0]!r}")
    headers: dict[str, str] = {}
    name = ""
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and name:  # an obsolete folded continuation line
            headers[name] = f"{headers[name]} {line.strip()}"
            continue
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            name = ""
            continue
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return int(match[1]), headers


def parse_curl_response(text: str) -> HttpResponse:
    """Parse what the client's curl printed: response heads, the body, then its trailer.

    Following redirects, curl prints the head of every response; informational
    ones (``100 Continue``, ``103 Early Hints``) may come before each. The
    trailer says how many redirects there were, so the body starts after the
    head of the last response, whatever the body itself contains.
    """
    output, found, trailer = text.rpartition(_TRAILER)
    if not found:
        raise ValueError("no [runbook-http] trailer in curl's output")
    fields = trailer.rstrip("\n").split(" ", 3)
    try:
        code, total, redirects = int(fields[0]), float(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        raise ValueError(f"not a [runbook-http] trailer: {trailer.strip()!r}") from None
    url = fields[3] if len(fields) > 3 else ""
    status = code
    headers: dict[str, str] = {}
    remaining = redirects + 1
    while remaining and _STATUS_LINE.match(output):
        end = _BLANK_LINE.search(output)
        block, output = (output[: end.start()], output[end.end() :]) if end else (output, "")
        status, headers = parse_headers(block)
        if not 100 <= status < 200:
            remaining -= 1
    return HttpResponse(url, code or status, total, headers, output)


def parse_openssl_date(text: str) -> dt.datetime:
    """Parse a certificate date as OpenSSL (``Nov  6 23:00:45 2026 GMT``) or GnuTLS print it."""
    text = " ".join(text.split())
    match = _OPENSSL_DATE.fullmatch(text)
    try:
        if match and match["month"] in _MONTHS:
            numbers = [int(match[key]) for key in ("year", "day", "hour", "minute", "second")]
            year, day, hour, minute, second = numbers
            month = _MONTHS[match["month"]]
            return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
        if text[:4].isdigit():  # ISO 8601, as openssl -dateopt iso_8601 prints it
            parsed = dt.datetime.fromisoformat(text.replace(" GMT", "Z"))
        else:  # RFC 5322, as GnuTLS prints it: Fri, 06 Nov 2026 23:00:45 GMT
            parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a certificate date: {text!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def parse_curl_certificate(text: str) -> TlsCertificate:
    """Parse the server certificate from ``curl -v`` (its standard error)."""
    _, found, rest = text.partition("Server certificate:")
    if not found:
        raise ValueError("no server certificate in curl's verbose output")
    fields: dict[str, str] = {}
    for key, value in _CERT_FIELD.findall(rest):
        fields.setdefault(key, value)
    if "expire date" not in fields or "start date" not in fields:
        raise ValueError("no start or expire date after curl's 'Server certificate:'")
    return TlsCertificate(
        subject=fields.get("subject", ""),
        issuer=fields.get("issuer", ""),
        not_before=parse_openssl_date(fields["start date"]),
        not_after=parse_openssl_date(fields["expire date"]),
    )


def parse_openssl_x509(text: str) -> TlsCertificate:
    """Parse ``openssl x509 -noout -subject -issuer -startdate -enddate`` output."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals:
            fields.setdefault(key.strip(), value.strip())
    if "notBefore" not in fields or "notAfter" not in fields:
        raise ValueError("no notBefore= or notAfter= line in openssl x509 output")
    return TlsCertificate(
        subject=fields.get("subject", ""),
        issuer=fields.get("issuer", ""),
        not_before=parse_openssl_date(fields["notBefore"]),
        not_after=parse_openssl_date(fields["notAfter"]),
    )


def parse_getent_ahosts(text: str) -> list[str]:
    """Return the addresses of ``getent ahosts NAME`` output, once each, in its order."""
    addresses: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] not in addresses:
            addresses.append(fields[0])
    return addresses


def parse_connect_time(text: str) -> float:
    """Parse curl's ``%{time_connect}``: seconds until connected, 0 when it never was."""
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"not a curl time_connect value: {text.strip()!r}") from None


# The client: one command on the host per probe.


class HttpClient:
    """HTTP, TLS, DNS and TCP probes that run on one target (the ``http`` fixture)."""

    #: What the probes raise when no response comes: ``except http.Error``.
    Error: ClassVar[type[HttpError]] = HttpError
    #: What they raise when the response does not come in time: ``except http.Timeout``.
    Timeout: ClassVar[type[HttpTimeout]] = HttpTimeout

    def __init__(self, host: Host) -> None:
        self.host = host

    def __repr__(self) -> str:
        return f"<HttpClient on {self.host.name}>"

    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        follow_redirects: bool = False,
    ) -> HttpResponse:
        """Send a GET from the target and return the response, whatever its status.

        Raise ``HttpError`` when no response comes (the name does not resolve,
        the connection is refused, TLS fails), ``HttpTimeout`` when it does not
        come within ``timeout`` seconds. Certificates are verified.
        """
        return self._request("GET", url, headers, timeout, follow_redirects)

    def head(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        follow_redirects: bool = False,
    ) -> HttpResponse:
        """Send a HEAD from the target: as ``get``, and the body is empty."""
        return self._request("HEAD", url, headers, timeout, follow_redirects)

    def tls_certificate(
        self, host: str, port: int = 443, servername: str | None = None, *, timeout: float = 10.0
    ) -> TlsCertificate:
        """Return the certificate the server at ``host:port`` presents to the target.

        ``servername`` is the name sent with SNI (default ``host``). The
        certificate is read, not verified, so an expired or self-signed one is
        returned too. After the handshake curl sends one ``HEAD /``.
        """
        name = servername or host
        argv = ["curl", "-q", "-sS", "-v", "-k", "-I", "-o", "/dev/null"]
        argv += ["--max-time", _seconds(timeout)]
        if name != host:
            argv += ["--connect-to", f"{_address(name, port)}:{_address(host, port)}"]
        argv.append(f"https://{_address(name, port)}/")
        result = self.host.run(argv, timeout=timeout + _GRACE_S)
        try:
            return parse_curl_certificate(result.stderr)
        except ValueError:
            raise self._error(f"TLS to {host}:{port}", result, timeout) from None

    def tls_expiry(
        self, host: str, port: int = 443, servername: str | None = None, *, timeout: float = 10.0
    ) -> dt.datetime:
        """Return when the certificate of the server at ``host:port`` expires (UTC)."""
        return self.tls_certificate(host, port, servername, timeout=timeout).not_after

    def certificate_file(self, path: str) -> TlsCertificate:
        """Read a PEM certificate file on the target (``openssl x509``)."""
        fields = ["-subject", "-issuer", "-startdate", "-enddate"]
        result = self.host.run(["openssl", "x509", "-noout", *fields, "-in", path])
        if not result.succeeded:
            raise RuntimeError(result.describe_failure(self.host.name))
        return parse_openssl_x509(result.stdout)

    def resolve(self, name: str) -> list[str]:
        """Return the addresses ``name`` resolves to on the target (none if it does not)."""
        if not name or name.startswith("-") or any(char.isspace() for char in name):
            raise ValueError(f"not a host name: {name!r}")
        result = self.host.run(["getent", "ahosts", name])
        if result.exit_status == 2:  # getent: the name is not known
            return []
        if not result.succeeded:
            raise RuntimeError(result.describe_failure(self.host.name))
        return parse_getent_ahosts(result.stdout)

    def tcp_connect(self, host: str, port: int, timeout: float = 3.0) -> bool:
        """Return True if the target can open a TCP connection to ``host:port`` in time.

        Nothing is sent (``curl telnet://`` with ``-T /dev/null``). An open port
        takes about half a second to report: curl stays connected until its time
        is up. False when the name does not resolve or the connection is refused
        or does not complete within ``timeout`` seconds.
        """
        url = f"telnet://{_address(host, port)}"
        limits = [timeout] if timeout <= _QUICK_CONNECT_S else [_QUICK_CONNECT_S, timeout]
        for limit in limits:
            seconds = _seconds(limit)
            argv = ["curl", "-q", "-sS", "-T", "/dev/null", "-o", "/dev/null"]
            argv += ["--connect-timeout", seconds, "--max-time", seconds]
            result = self.host.run([*argv, "-w", "%{time_connect}", url], timeout=limit + _GRACE_S)
            if result.exit_status not in (0, _NO_ADDRESS, _NO_CONNECTION, _TIMED_OUT):
                raise self._error(f"TCP to {host}:{port}", result, limit)
            if parse_connect_time(result.stdout) > 0:
                return True
            if result.exit_status != _TIMED_OUT:
                return False
        return False

    def _request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        timeout: float,
        follow_redirects: bool,
    ) -> HttpResponse:
        if not re.fullmatch(r"https?://[^\s\x00-\x1f]+", url, re.I):
            raise ValueError(
                f"the http fixture fetches http:// and https:// URLs only, not {url!r}"
            )
        argv = ["curl", "-q", "-sS", "-g", "--suppress-connect-headers"]
        argv += ["-I"] if method == "HEAD" else ["-D", "-"]
        argv += ["--max-time", _seconds(timeout), "-w", _WRITE_OUT]
        for name, value in (headers or {}).items():
            argv += ["-H", _header(name, value)]
        if follow_redirects:
            argv += ["-L", "--max-redirs", str(MAX_REDIRECTS), "--proto-redir", "=http,https"]
        result = self.host.run([*argv, url], timeout=timeout + _GRACE_S)
        if not result.succeeded:
            raise self._error(f"{method} {url}", result, timeout)
        return parse_curl_response(result.stdout)

    def _error(self, what: str, result: CommandResult, timeout: float) -> HttpError:
        """Turn a failed curl into the exception its exit status calls for."""
        status, where = result.exit_status, self.host.name
        if status == _TIMED_OUT:
            return HttpTimeout(f"{what}: no response within {timeout:g}s on {where}", status)
        if status == _NOT_FOUND:
            return HttpError(f"{what}: curl is not installed on {where}", status)
        # With -v, curl's own message ("curl: (35) ...") is not the last line.
        lines = result.stderr.strip().splitlines()
        errors = [line for line in lines if line.startswith("curl: (")] or lines[-1:]
        detail = errors[-1] if errors else f"curl exited with status {status}"
        return HttpError(f"{what} failed on {where}: {detail}", status)


@fixture(scope="host")
def http(host: Host) -> HttpClient:
    """An HTTP client that runs curl on the current target: GET and HEAD only."""
    return HttpClient(host)


def _seconds(timeout: float) -> str:
    if timeout <= 0:
        raise ValueError("timeout must be a positive number of seconds")
    return f"{timeout:g}"


def _address(host: str, port: int) -> str:
    """Return ``host:port`` for a URL, with an IPv6 address in brackets."""
    bare = host.removeprefix("[").removesuffix("]")
    if not re.fullmatch(r"[\w.-]+|[0-9A-Fa-f:.]+", bare) or bare.startswith("-"):
        raise ValueError(f"not a host name or address: {host!r}")
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port!r}")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def _header(name: str, value: str) -> str:
    """Return the ``-H`` argument for one header, refusing what would change the request."""
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"not an HTTP header name: {name!r}")
    if name.lower() in METHOD_OVERRIDE_HEADERS:
        raise ValueError(f"header {name} would turn the request into another method")
    if any(char in value for char in "\r\n\0"):
        raise ValueError(f"header {name}: a value cannot hold line breaks")
    return f"{name}: {value}" if value else f"{name};"  # curl sends "Name;" as an empty header
