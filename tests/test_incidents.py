"""The incident store: ids, the append-only timeline, run results, and safe names."""

from __future__ import annotations

import json
import threading

import pytest

from runbook.incident.store import Event
from runbook.incident.store import IncidentStore
from runbook.incident.store import check_id
from runbook.outcomes import UsageError
from runbook.timestamps import isotime


@pytest.mark.parametrize(
    ("incident_id", "ok"),
    [
        ("INC-20261124-001", True),
        ("page.4711_b", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("..", False),
        ("../x", False),
        ("a/b", False),
        ("-rf", False),
        ("a b", False),
        ("", False),
    ],
)
def test_check_id(incident_id, ok):
    if ok:
        assert check_id(incident_id) == incident_id
    else:
        with pytest.raises(UsageError, match="invalid incident id"):
            check_id(incident_id)


def test_new_ids_are_unique_even_when_opened_at_once(tmp_path):
    store = IncidentStore(tmp_path / "incidents")
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(store.open("t")["id"])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 8
    assert sorted(int(i.rsplit("-", 1)[1]) for i in ids) == list(range(1, 9))


def test_the_timeline_is_append_only_and_read_back_in_time_order(tmp_path):
    store = IncidentStore(tmp_path)
    incident = store.open("Disk", severity="P2", operator="alice")["id"]
    store.append(incident, "note", "first", by="alice")
    later = Event("2999-01-01T00:00:00.000Z", "note", "from another clock")
    store.update(incident, later)
    store.append(incident, "note", "second")
    events = store.events(incident)
    assert [e.text for e in events] == [
        "incident opened: Disk, severity P2",
        "first",
        "second",
        "from another clock",
    ]
    assert events[1].data == {"by": "alice"}
    lines = (tmp_path / incident / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[1]) == {
        "time": events[1].time,
        "kind": "note",
        "text": "first",
        "by": "alice",
    }


def test_update_changes_the_incident_and_records_why(tmp_path):
    store = IncidentStore(tmp_path)
    incident = store.open("Disk")["id"]
    store.update(
        incident, Event(isotime(precise=True), "status", "status: resolved"), status="resolved"
    )
    assert store.load(incident)["status"] == "resolved"
    assert store.events(incident)[-1].kind == "status"
    assert not (tmp_path / incident / "incident.json.tmp").exists()


def test_runs_are_kept_side_by_side_in_start_order(tmp_path):
    store = IncidentStore(tmp_path)
    incident = store.open("Disk")["id"]
    second = {"started_at": "2026-11-24T01:00:02Z", "runbook": {"name": "b"}}
    first = {"started_at": "2026-11-24T01:00:01Z", "runbook": {"name": "a"}}
    paths = [store.save_run(incident, "b", second), store.save_run(incident, "a", first)]
    paths.append(store.save_run(incident, "a", first))  # same second, same name: kept too
    assert len(set(paths)) == 3
    assert [run["runbook"]["name"] for run in store.runs(incident)] == ["a", "a", "b"]


def test_unknown_incidents_are_usage_errors_and_leave_no_folder(tmp_path):
    store = IncidentStore(tmp_path)
    with pytest.raises(UsageError, match="unknown incident 'INC-X'"):
        store.append("INC-X", "note", "hi")
    with pytest.raises(UsageError, match="unknown incident"):
        store.update("INC-X", Event(isotime(precise=True), "status", "x"), status="resolved")
    assert not (tmp_path / "INC-X").exists()
