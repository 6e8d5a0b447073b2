"""Status updates delivered to a real HTTP receiver on 127.0.0.1, with retries."""

from __future__ import annotations

import datetime
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from runbook.incident.notify import Webhook
from runbook.incident.notify import deliver
from runbook.incident.notify import payload
from runbook.incident.notify import webhooks_from_config
from runbook.incident.statusupdate import make_update
from runbook.outcomes import UsageError

SECRET_PATH = "/hooks/T0KEN-s3cr3t-path"


class Receiver:
    """An HTTP server that records every request and answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None, default: int = 200) -> None:
        self.statuses = list(statuses or [])
        self.default = default
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                receiver.requests.append(
                    {"path": self.path, "type": self.headers["Content-Type"], "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    @property
    def bodies(self) -> list[dict]:
        return [request["body"] for request in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that accepts everything; tests may script failures first."""
    server = Receiver()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


CALM = '''
    """Calm service."""
    from runbook import check, hypothesis

    overload = hypothesis("overload", "The service is overloaded")

    @check(tests=overload)
    def load_is_fine(host):
        pass
'''

BROKEN = '''
    """Broken deploy."""
    from runbook import action, check, hypothesis

    bad = hypothesis("bad-deploy", "The last deploy broke checkout")

    @check(tests=bad)
    def no_recent_deploy(host):
        assert False, "deploy 4711 went out 10 minutes ago"

    @action(mitigates=bad)
    def roll_back(host):
        host.run("true")
'''


def configure(project, url: str, **extra: object) -> None:
    keys = "".join(f"{key} = {json.dumps(value)}\n" for key, value in extra.items())
    project.write("runbook.toml", f'[[notify.webhook]]\nurl = "{url}"\nbackoff = 0.05\n{keys}')


def test_updates_follow_the_incident_from_start_to_resolution(project, receiver):
    configure(project, receiver.url)
    project.runbook("broken", BROKEN)
    opened = project.invoke("incident", "open", "Checkout fails", "--severity", "P1")
    incident = opened.output.strip()
    result, data = project.run_json("broken", "--incident", incident, "--execute", "--yes")
    assert result.exit_code == 1, result.output
    assert project.invoke("incident", "status", incident, "resolved").exit_code == 0
    statuses = [body["status"] for body in receiver.bodies]
    assert statuses == ["investigating", "identified", "monitoring", "resolved"]
    first = receiver.bodies[0]
    assert first["schema"] == "runbook.status_update/1"
    assert first["incident"] == incident
    assert first["severity"] == "P1"
    assert "broken" in first["current_state"]
    assert first["next_update_at"] > first["sent_at"]  # P1: every 30 minutes
    assert receiver.bodies[-1]["next_update_at"] is None
    assert "deploy 4711" in receiver.bodies[1]["current_state"]
    assert "roll_back on local" in receiver.bodies[2]["current_state"]
    assert receiver.bodies[1]["text"].startswith(f"[P1] {incident} Checkout fails: IDENTIFIED")
    assert {request["type"] for request in receiver.requests} == {"application/json"}
    assert data["warnings"] == []


def test_a_receiver_failing_twice_gets_the_update_on_the_third_try(project, receiver):
    receiver.statuses = [500, 503]
    configure(project, receiver.url, retries=3)
    project.runbook("calm", CALM)
    result, data = project.run_json("calm", "--incident", "INC-RETRY")
    assert result.exit_code == 0, result.output
    assert [body["status"] for body in receiver.bodies] == ["investigating"] * 3
    assert data["warnings"] == []
    shown = project.invoke("incident", "show", "INC-RETRY", "--json")
    update = next(e for e in json.loads(shown.output)["events"] if e["kind"] == "update")
    assert update["deliveries"][0]["attempts"] == 3
    assert update["deliveries"][0]["ok"] is True


def test_a_receiver_that_never_answers_well_is_a_warning_not_a_failure(project, receiver):
    receiver.default = 503
    configure(project, receiver.url, retries=2)
    project.runbook("calm", CALM)
    done = project.run("run", "calm", "--incident", "INC-DOWN", "--json", "calm.json")
    assert done.returncode == 0, done.stderr
    assert len(receiver.requests) == 3  # the first try and two retries
    warning = "not delivered after 3 attempt(s): HTTP 503"
    assert "warning: status update (investigating) to json webhook http://127.0.0.1:" in (
        done.stdout
    )
    assert warning in done.stdout
    data = json.loads((project.root / "calm.json").read_text())
    assert any(warning in item for item in data["warnings"])
    report = next((project.root / "runbook-reports").glob("*-calm.md")).read_text()
    assert warning in report
    for text in (done.stdout, done.stderr, report, json.dumps(data)):
        assert SECRET_PATH not in text  # the webhook URL is a secret


def test_status_change_with_a_dead_receiver_warns_and_succeeds(project):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    configure(project, f"http://127.0.0.1:{port}{SECRET_PATH}", retries=1)
    incident = project.invoke("incident", "open", "Nobody listens").output.strip()
    done = project.run("incident", "status", incident, "monitoring")
    assert done.returncode == 0
    assert "not delivered after 2 attempt(s): URLError:" in done.stderr
    assert SECRET_PATH not in done.stderr + done.stdout


def test_slack_format_posts_text_and_blocks(project, receiver):
    configure(project, receiver.url, format="slack")
    incident = project.invoke("incident", "open", "Slow search", "--impact", "search is slow")
    project.invoke("incident", "status", incident.output.strip(), "identified", "-m", "GC pauses")
    body = receiver.bodies[0]
    assert set(body) == {"text", "blocks"}
    assert "IDENTIFIED" in body["text"]
    assert "Impact: search is slow" in body["text"]
    assert "Current state: GC pauses" in body["text"]
    assert body["blocks"][0]["text"] == {"type": "mrkdwn", "text": body["text"]}


def test_runs_without_an_incident_send_nothing(project, receiver):
    configure(project, receiver.url)
    project.runbook("calm", CALM)
    result, _ = project.run_json("calm")
    assert result.exit_code == 0
    assert receiver.requests == []


def test_the_url_can_come_from_the_environment(project, receiver, monkeypatch):
    monkeypatch.setenv("TEAM_WEBHOOK", receiver.url)
    project.write("runbook.toml", '[[notify.webhook]]\nurl_env = "TEAM_WEBHOOK"\n')
    incident = project.invoke("incident", "open", "From env").output.strip()
    assert project.invoke("incident", "status", incident, "resolved").exit_code == 0
    assert [body["status"] for body in receiver.bodies] == ["resolved"]


def test_backoff_doubles_between_tries():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    sleeps: list[float] = []
    hook = Webhook(url=f"http://127.0.0.1:{port}/x", retries=3, backoff=0.5, timeout=1)
    delivery = deliver(hook, {"a": 1}, sleep=sleeps.append)
    assert sleeps == [0.5, 1.0, 2.0]
    assert (delivery.ok, delivery.attempts) == (False, 4)
    assert "refused" in (delivery.error or "").lower()
    assert delivery.destination == f"json webhook http://127.0.0.1:{port}/..."


def test_a_client_error_is_not_retried(receiver):
    receiver.default = 404
    sleeps: list[float] = []
    delivery = deliver(Webhook(url=receiver.url, retries=3), {"a": 1}, sleep=sleeps.append)
    assert (delivery.ok, delivery.attempts, delivery.error) == (False, 1, "HTTP 404")
    assert sleeps == []


def test_unset_url_variable_is_a_failed_delivery(monkeypatch):
    monkeypatch.delenv("NO_SUCH_HOOK", raising=False)
    (hook,) = webhooks_from_config({"notify": {"webhook": {"url_env": "NO_SUCH_HOOK"}}})
    delivery = deliver(hook, {})
    assert (delivery.ok, delivery.attempts, delivery.error) == (
        False,
        0,
        "$NO_SUCH_HOOK is not set",
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"format": "xml", "url": "http://x"}, "format must be one of json, slack"),
        ({"url": "ftp://x"}, "must start with http:// or https://"),
        ({"url": "https://"}, "must start with http:// or https:// and name a host"),
        ({"url": "https://x:port/secret"}, "the url is malformed"),
        ({}, "needs url or url_env"),
        ({"url": "http://x", "colour": "red"}, "unknown key(s) colour"),
        ({"url": "http://x", "retries": "many"}, "invalid literal"),
    ],
)
def test_bad_webhook_configuration_is_a_usage_error(table, message):
    with pytest.raises(UsageError, match=r"notify\.webhook") as raised:
        webhooks_from_config({"notify": {"webhook": [table]}})
    assert message in str(raised.value)
    assert "secret" not in str(raised.value)  # a URL is a secret, even a wrong one


def test_bad_configuration_stops_a_run_with_exit_4(project):
    project.write("runbook.toml", '[[notify.webhook]]\nurl = "http://x"\nformat = "xml"\n')
    project.runbook("calm", CALM)
    done = project.run("run", "calm")
    assert done.returncode == 4
    assert "format must be one of json, slack" in done.stderr
    assert "Traceback" not in done.stderr


def test_payload_json_is_the_whole_update():
    incident = {"id": "INC-1", "title": "T", "severity": None, "impact": ""}
    update = make_update(incident, "resolved", "Done.", now=0)
    body = payload(update, "json")
    assert body["next_update_at"] is None
    assert body["sent_at"] == "1970-01-01T00:00:00.000Z"
    assert "Next update: none planned" in body["text"]
    assert "[severity not set] INC-1 T: RESOLVED" in body["text"]


def test_a_crashing_notifier_plugin_is_a_warning(project, receiver):
    configure(project, receiver.url)
    project.write(
        "tools/pager.py",
        """
        from runbook import hookimpl

        @hookimpl
        def runbook_status_update(update):
            raise ConnectionError("pager API is down")
        """,
    )
    text = (project.root / "runbook.toml").read_text()
    project.write("runbook.toml", 'plugins = ["tools/pager.py"]\n' + text)
    project.runbook("calm", CALM)
    result, data = project.run_json("calm", "--incident", "INC-PAGER")
    assert result.exit_code == 0, result.output
    assert data["warnings"] == [
        "status update (investigating) to a notifier plugin not delivered after 1 "
        "attempt(s): ConnectionError: pager API is down"
    ]


def test_the_report_names_the_incident_and_the_updates_sent(project, receiver):
    configure(project, receiver.url)
    project.runbook("broken", BROKEN)
    project.run_json("broken", "--incident", "INC-R", "--execute", "--yes")
    report = (project.root / "broken.md").read_text()
    assert "## Incident\n\nThis run is part of incident **INC-R** (Broken deploy)" in report
    assert "status *monitoring*" in report
    assert (
        "Status updates sent: investigating (delivered to 1 of 1), identified (delivered to "
        "1 of 1), monitoring (delivered to 1 of 1)." in report
    )


def test_the_update_template_and_interval_come_from_the_configuration(project, receiver):
    project.write("status.j2", "{{ update.incident }} is {{ update.status }}: {{ update.impact }}")
    project.write(
        "runbook.toml",
        f'[notify]\ntemplate = "status.j2"\nupdate_interval_minutes = 5\n\n'
        f'[[notify.webhook]]\nurl = "{receiver.url}"\n',
    )
    incident = project.invoke("incident", "open", "T", "--impact", "all users").output.strip()
    project.invoke("incident", "status", incident, "identified")
    (body,) = receiver.bodies
    assert body["text"] == f"{incident} is identified: all users\n"
    sent = datetime.datetime.fromisoformat(body["sent_at"])
    due = datetime.datetime.fromisoformat(body["next_update_at"])
    assert due - sent == datetime.timedelta(minutes=5)
