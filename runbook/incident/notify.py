"""The built-in webhook notifier: status updates as generic JSON or Slack-compatible posts.

Configured in ``runbook.toml``::

    [[notify.webhook]]
    url_env = "SLACK_WEBHOOK_URL"   # or url = "https://..."
    format = "slack"                # or "json" (the default)

A delivery is retried with exponential backoff on connection errors, timeouts,
HTTP 429 and 5xx; it never raises, so a dead receiver never fails a run. A
webhook URL is a secret: only its scheme and host are ever printed.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

from runbook.markers import hookimpl
from runbook.outcomes import UsageError
from runbook.records import Delivery

if TYPE_CHECKING:
    from runbook.config import Config
    from runbook.records import StatusUpdate

FORMATS = ("json", "slack")
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook destination and how hard to try it."""

    url: str = dataclasses.field(repr=False)  # a secret: never in a repr or a log
    format: str = "json"
    timeout: float = 5.0
    retries: int = 3
    backoff: float = 1.0
    #: The environment variable the URL comes from, if any (to say which one is unset).
    url_env: str | None = None

    @property
    def destination(self) -> str:
        """Where it goes, safe to print: scheme and host, never the path or query."""
        if not self.url:
            return f"webhook ${self.url_env}"
        parts = urllib.parse.urlsplit(self.url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{self.format} webhook {parts.scheme}://{host}{port}/..."


def webhooks_from_config(values: dict[str, Any]) -> list[Webhook]:
    """Read the ``[[notify.webhook]]`` tables (a single ``[notify.webhook]`` table works too)."""
    section = values.get("notify", {})
    if not isinstance(section, dict):
        raise UsageError("configuration [notify] must be a table")
    tables = section.get("webhook", [])
    tables = [tables] if isinstance(tables, dict) else tables
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError("configuration [[notify.webhook]] must be tables")
    return [_webhook(table, index) for index, table in enumerate(tables, start=1)]


def _webhook(table: dict[str, Any], index: int) -> Webhook:
    where = f"[[notify.webhook]] #{index}"
    known = {f.name for f in dataclasses.fields(Webhook)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {sorted(known)}")
    url_env = table.get("url_env")
    url = table.get("url") or (os.environ.get(str(url_env), "") if url_env else "")
    if not table.get("url") and not url_env:
        raise UsageError(f"{where}: needs url or url_env")
    if url:
        _check_url(str(url), where)
    if table.get("format", "json") not in FORMATS:
        raise UsageError(f"{where}: format must be one of {', '.join(FORMATS)}")
    try:
        return Webhook(
            url=str(url),
            format=str(table.get("format", "json")),
            timeout=float(table.get("timeout", 5.0)),
            retries=max(0, int(table.get("retries", 3))),
            backoff=max(0.0, float(table.get("backoff", 1.0))),
            url_env=str(url_env) if url_env else None,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None


def _check_url(url: str, where: str) -> None:
    """Refuse a URL that is not http(s) or has no host; never show the URL itself."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
    except ValueError:
        raise UsageError(f"{where}: the url is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{where}: the url must start with http:// or https:// and name a host")


def payload(update: StatusUpdate, format: str) -> dict[str, Any]:
    """Return the body to post: the update's fields, or Slack's ``text`` and ``blocks``."""
    if format == "slack":
        return {
            "text": update.text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": update.text}}],
        }
    return update.to_dict()


def deliver(
    webhook: Webhook, body: dict[str, Any], sleep: Callable[[float], None] = time.sleep
) -> Delivery:
    """POST ``body`` as JSON, retrying with backoff; never raise."""
    if not webhook.url:
        return Delivery(webhook.destination, False, 0, f"${webhook.url_env} is not set")
    data = json.dumps(body).encode("utf-8")
    error = ""
    attempts = 0
    for attempt in range(webhook.retries + 1):
        if attempt:
            sleep(webhook.backoff * 2 ** (attempt - 1))
        attempts += 1
        request = urllib.request.Request(
            webhook.url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "runbook"},
        )
        try:
            with urllib.request.urlopen(request, timeout=webhook.timeout) as response:
                response.read()
            return Delivery(webhook.destination, True, attempts)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code not in RETRY_STATUSES:
                break  # the receiver refuses this request; asking again will not help
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            error = f"{type(exc).__name__}: {reason}".replace(webhook.url, webhook.destination)
    return Delivery(webhook.destination, False, attempts, error)


class WebhookNotifier:
    """Deliver every status update to each configured webhook."""

    def __init__(self, webhooks: list[Webhook]) -> None:
        self.webhooks = webhooks

    @hookimpl
    def runbook_status_update(self, update: StatusUpdate) -> list[Delivery]:
        """Post the update to every webhook, one after the other."""
        return [deliver(hook, payload(update, hook.format)) for hook in self.webhooks]


@hookimpl
def runbook_configure(config: Config) -> None:
    """Register a webhook notifier when the configuration names webhooks."""
    webhooks = webhooks_from_config(config.values)
    if webhooks:
        config.pluginmanager.register(WebhookNotifier(webhooks), "webhook-notifier")
