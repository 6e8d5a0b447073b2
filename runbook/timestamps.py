"""UTC timestamps, formatted one way for results, logs and file names."""

from __future__ import annotations

import datetime
import time


def isotime(timestamp: float | None = None, *, precise: bool = False) -> str:
    """Format a UNIX time (default: now) as UTC ISO 8601 with a ``Z``.

    To the second, or with ``precise`` to the millisecond (timelines, audit logs).
    """
    moment = datetime.datetime.fromtimestamp(
        time.time() if timestamp is None else timestamp, datetime.UTC
    )
    if precise:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def file_stamp(timestamp: float | None = None) -> str:
    """Format a UNIX time (default: now) for a file name: ``20261122T030001Z``."""
    moment = datetime.datetime.fromtimestamp(
        time.time() if timestamp is None else timestamp, datetime.UTC
    )
    return moment.strftime("%Y%m%dT%H%M%SZ")
