"""Service down.

Symptoms: the service does not answer, its health check fails, clients see connection
refused, timeouts, name resolution or TLS errors. The checks tell a process that is not
running from one that runs but does not listen on its port, from a health endpoint that
answers with an error, from a name that does not resolve and from a TLS certificate that
has expired or is about to.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import urllib.parse
from typing import TYPE_CHECKING
from typing import Any

from runbook import action
from runbook import check
from runbook import evidence
from runbook import hookimpl
from runbook import hypothesis
from runbook import rule_in
from runbook import severity_from_findings
from runbook import skip

if TYPE_CHECKING:
    from runbook.plugins.http import HttpClient
    from runbook.plugins.http import HttpResponse

    from runbook import Host

# A parameter declared by its type (str, int) names something only the operator knows: a
# check that needs it is skipped ("needs --param port=PORT") until it is given.
PARAMS = {
    # The process name (as pgrep -x matches it: the first 15 characters).
    "process": str,
    # The TCP port the service listens on.
    "port": int,
    # The URL of the health endpoint, fetched from the target.
    "health_url": str,
    # The status a healthy service answers with.
    "expected_status": 200,
    # Text the healthy body contains; "" accepts any body.
    "body_match": "",
    # The name clients resolve; "" means the health URL's host when it is a name.
    "dns_name": "",
    # The TLS endpoint whose certificate to read; "" means the health URL's host if https.
    "tls_host": "",
    # Its port; 0 means the health URL's port when the host comes from it, else 443.
    "tls_port": 0,
    # The name sent with SNI; "" means the TLS host.
    "tls_servername": "",
    # A certificate expiring within this many days counts as expiring.
    "expiry_days": 14.0,
    # Seconds each HTTP or TLS probe may take.
    "http_timeout": 5.0,
    # The systemd unit the restart action restarts.
    "service": str,
}
TAGS = ["availability", "http", "tls", "dns", "linux"]
SEVERITY = "P1"

not_running = hypothesis("process-not-running", "The service's process is not running")
not_listening = hypothesis("port-not-listening", "Nothing listens on the service's TCP port")
unhealthy = hypothesis(
    "health-check-failing", "The health endpoint answers with an error or the wrong body"
)
no_dns = hypothesis("dns-not-resolving", "The service's name does not resolve on the target")
tls_expiring = hypothesis(
    "tls-certificate-expiring", "The TLS certificate has expired or expires within days"
)

#: How many listening sockets the evidence lists when none is on the port (by port number).
LISTENERS_SHOWN = 200
# ``pgrep -x`` compares with the kernel's process name, which keeps 15 characters.
_COMM_LENGTH = 15


def _url_host(url: str | None) -> tuple[str, int | None, str]:
    """Return the host, port and scheme of ``url`` ("" when there is none)."""
    if not url:
        return "", None, ""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname or "", port, parts.scheme.lower()


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _health_problem(response: HttpResponse, params: Any) -> str | None:
    """Return why ``response`` is not healthy, or None when it is."""
    if response.status != params.expected_status:
        return f"answered {response.status}, expected {params.expected_status}"
    if params.body_match and params.body_match not in response.body:
        return f"answered {response.status} without {params.body_match!r} in its body"
    return None


def _fetch_health(http: HttpClient, url: str, params: Any) -> HttpResponse:
    """GET ``url``; raise ``AssertionError`` naming the URL when nothing answers."""
    try:
        return http.get(url, timeout=params.http_timeout)
    except http.Error as exc:
        raise AssertionError(f"GET {url}: no response: {exc}") from None


def _healthy_answer(url: str, response: HttpResponse, params: Any) -> str:
    """Say what a healthy ``response`` measured: its status, time and the body it matched."""
    body = f" with {params.body_match!r}" if params.body_match else ""
    return (
        f"GET {url} answered {response.status}{body} in {response.elapsed_s * 1000:.0f} ms, "
        f"expected {params.expected_status}"
    )


def _response_row(response: HttpResponse) -> dict[str, Any]:
    return {
        "url": response.url,
        "status": response.status,
        "seconds": round(response.elapsed_s, 3),
        "body": response.body[:200],
    }


@check
def service_answers(http: HttpClient, params: Any) -> str:
    """Symptom: fail when the health URL does not answer with the expected status and body."""
    url = params.health_url
    response = _fetch_health(http, url, params)
    evidence("Health endpoint response", [_response_row(response)])
    problem = _health_problem(response, params)
    assert problem is None, f"GET {url} {problem}"
    return _healthy_answer(url, response, params)


@check(tests=not_running)
def process_is_running(host: Host, params: Any) -> str:
    """Rule ``process-not-running`` out when a process named ``process`` runs."""
    name = params.process[:_COMM_LENGTH]
    found = host.run(["pgrep", "-x", name])
    if found.exit_status not in (0, 1):
        raise RuntimeError(f"pgrep failed on {host.name}: {found.stderr.strip()}")
    pids = found.stdout.split()
    if not pids:
        evidence(f"Processes named {name}", "none")
        rule_in(f"no process named {params.process!r} is running on {host.name}")
    listing = host.run(["ps", "-ww", "-o", "pid=,user=,etime=,rss=,args=", "-p", ",".join(pids)])
    rows = []
    for line in listing.stdout.splitlines():
        fields = line.split(None, 4)
        if len(fields) == 5:
            pid, user, elapsed, rss, args = fields
            rows.append({"pid": pid, "user": user, "elapsed": elapsed, "rss_kb": rss, "args": args})
    evidence(f"Processes named {name}", rows or pids)
    shown = ", ".join(pids[:5]) + (", ..." if len(pids) > 5 else "")
    many = "es" if len(pids) > 1 else ""
    return f"{len(pids)} process{many} named {name!r} running on {host.name}: pid {shown}"


@check(tests=not_listening)
def port_is_listening(host: Host, params: Any) -> str:
    """Rule ``port-not-listening`` out when a TCP socket listens on ``port``."""
    port = params.port
    sockets = [
        {"address": row.address, "port": row.port, "process": row.process}
        for row in sorted(host.listening_ports(), key=lambda row: (row.port, row.address))
    ]
    matching = [row for row in sockets if row["port"] == port]
    if matching:
        evidence(f"TCP sockets listening on port {port}", matching)
        return _listeners(matching)
    evidence("TCP sockets listening (none on the port)", sockets[:LISTENERS_SHOWN] or "none")
    rule_in(f"nothing listens on TCP port {port} on {host.name}")


def _listeners(matching: list[dict[str, Any]]) -> str:
    """Say who listens where: ``nginx (pid 7) listens on TCP 0.0.0.0:80, [::]:80``."""
    where = ", ".join(f"{row['address']}:{row['port']}" for row in matching[:3])
    if len(matching) > 3:
        where += ", ..."
    owners = sorted({row["process"] for row in matching if row["process"]})
    if not owners:
        return f"a process listens on TCP {where} (its owner is not shown to this user)"
    verb = "listen" if len(owners) > 1 else "listens"
    return f"{', '.join(owners[:2])}{', ...' if len(owners) > 2 else ''} {verb} on TCP {where}"


@check(tests=unhealthy)
def health_endpoint_is_healthy(http: HttpClient, params: Any) -> str:
    """Rule ``health-check-failing`` out when ``health_url`` answers as a healthy service."""
    url = params.health_url
    response = _fetch_health(http, url, params)
    evidence("Health endpoint response", [_response_row(response)])
    evidence("Response headers", [{"header": k, "value": v} for k, v in response.headers.items()])
    problem = _health_problem(response, params)
    assert problem is None, f"GET {url} {problem}"
    return _healthy_answer(url, response, params)


# A resolver that hangs would hold the run: the timeout makes it an inconclusive check.
@check(tests=no_dns, timeout=30)
def name_resolves(http: HttpClient, host: Host, params: Any) -> str:
    """Rule ``dns-not-resolving`` out when ``dns_name`` resolves to an address on the target."""
    name = params.dns_name
    if not name:
        url_host, _, _ = _url_host(params.get("health_url"))
        if not url_host or _is_address(url_host):
            skip("needs --param dns_name=NAME (or a health_url with a host name)")
        name = url_host
    addresses = http.resolve(name)
    evidence(f"Addresses of {name}", [{"name": name, "address": a} for a in addresses] or "none")
    if not addresses:
        rule_in(f"{name} does not resolve on {host.name} (getent ahosts found no address)")
    shown = ", ".join(addresses[:3]) + (", ..." if len(addresses) > 3 else "")
    return f"{name} resolves to {shown} on {host.name}"


@check(tests=tls_expiring)
def certificate_is_valid_for_long_enough(http: HttpClient, params: Any) -> str:
    """Rule ``tls-certificate-expiring`` out when the certificate lasts over ``expiry_days``."""
    tls_host, port = params.tls_host, params.tls_port or 443
    if not tls_host:
        url_host, url_port, scheme = _url_host(params.get("health_url"))
        if scheme != "https" or not url_host:
            skip("needs --param tls_host=HOST (or an https health_url)")
        tls_host, port = url_host, params.tls_port or url_port or 443
    servername = params.tls_servername or None
    certificate = http.tls_certificate(tls_host, port, servername, timeout=params.http_timeout)
    now = dt.datetime.now(dt.UTC)
    days = certificate.days_left(now)
    evidence(
        "Server certificate",
        [
            {
                "endpoint": f"{tls_host}:{port}",
                "subject": certificate.subject,
                "issuer": certificate.issuer,
                "not_after": certificate.not_after.strftime("%Y-%m-%d %H:%M UTC"),
                "days_left": round(days, 1),
            }
        ],
    )
    where = f"the certificate of {tls_host}:{port} ({certificate.subject})"
    expires = certificate.not_after.strftime("%Y-%m-%d %H:%M UTC")
    assert days >= 0, f"{where} expired {-days:.1f} days ago ({expires})"
    assert days >= params.expiry_days, (
        f"{where} expires in {days:.1f} days ({expires}; threshold {params.expiry_days:g} days)"
    )
    return (
        f"the certificate of {tls_host}:{port} expires in {days:.0f} days "
        f"({certificate.not_after:%Y-%m-%d}), threshold {params.expiry_days:g} days"
    )


@action(mitigates=[not_running, not_listening, unhealthy])
def restart_service(host: Host, params: Any) -> None:
    """Restart ``service``: it starts a dead process and resets one that stopped answering."""
    host.restart_service(params.service)
    status = host.run("systemctl is-active %s", params.service)
    evidence(f"systemctl is-active {params.service}", status)


#: The severity each ruled-in hypothesis suggests (P0..P4 as in docs/incidents.md):
#: an expired certificate is P1.
#: One level less when the symptom check ran and did not confirm the symptom; nothing
#: ruled in: P1 when the service does not answer (no cause found), else none.
SEVERITY_BY_FINDING = {
    "process-not-running": "P1",
    "port-not-listening": "P1",
    "health-check-failing": "P1",
    "dns-not-resolving": "P1",
    "tls-certificate-expiring": "P3",
}


@hookimpl
def runbook_suggest_severity(result: Any) -> str | None:
    """Suggest a severity from what this run found; None when it found nothing."""
    expired = [c for c in result.checks if c.outcome == "failed" and " expired " in c.message]
    # Clients refuse an expired certificate now; "expiring" alone has no impact yet.
    also = ["P1"] if any("tls-certificate-expiring" in c.tests for c in expired) else []
    return severity_from_findings(result, SEVERITY_BY_FINDING, symptom_only="P1", also=also)
