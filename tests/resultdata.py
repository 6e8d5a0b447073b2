"""Reading a runbook's JSON result in tests: entries by id, statuses, a check's evidence."""

from __future__ import annotations


def by_id(entries: list[dict]) -> dict[str, dict]:
    """Index checks, hypotheses or actions of a JSON result by their ``id``."""
    return {entry["id"]: entry for entry in entries}


def statuses(result: dict) -> dict[str, str]:
    """Map each hypothesis id to its status."""
    return {h["id"]: h["status"] for h in result["hypotheses"]}


def check_evidence(result: dict, check_id: str) -> str:
    """Return the evidence bodies of one check, joined."""
    check = by_id(result["checks"])[check_id]
    return "\n".join(item["body"] for item in check["evidence"])


def evidence_of(result: dict, hypothesis_id: str) -> list[str]:
    """Return the messages that decided one hypothesis (one line per check and host)."""
    return by_id(result["hypotheses"])[hypothesis_id]["evidence"]


def assert_passed_checks_say_what_they_measured(result: dict) -> None:
    """Every passed check has a message: a symptom row or a ruled-out hypothesis never says -."""
    silent = [c["id"] for c in result["checks"] if c["outcome"] == "passed" and not c["message"]]
    assert not silent, f"passed without saying what they measured: {silent}"
