"""Runbook parameters: coercion, ``KEY=VALUE`` parsing, read-only access and redaction."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest

from runbook.outcomes import Skipped
from runbook.outcomes import UsageError
from runbook.params import Params
from runbook.params import coerce
from runbook.params import is_secret_name
from runbook.params import param_type
from runbook.params import parse_assignments
from runbook.params import resolve_params
from runbook.params import shown_default


def pickle_round_trip(value: Any) -> Any:
    """Parameters travel to the worker that runs a check by pickle."""
    return pickle.loads(pickle.dumps(value))


@pytest.mark.parametrize(
    ("raw", "default", "expected"),
    [
        ("app", "service", "app"),
        ("", "service", ""),
        ("  spaced  ", "x", "  spaced  "),
        ("42", 90, 42),
        ("-3", 0, -3),
        (" 7 ", 0, 7),
        ("0x1f", 0, 31),
        ("1_000", 0, 1000),
        ("95.5", 90.0, 95.5),
        ("95", 90.0, 95.0),
        ("1e3", 0.5, 1000.0),
        ("a,b", ["x"], ["a", "b"]),
        (" a , b ,, c ", [], ["a", "b", "c"]),
        ("", ["x"], []),
        ("a,b", ("x",), ("a", "b")),
        ("anything", None, "anything"),
    ],
)
def test_coerce_to_the_type_of_the_default(raw, default, expected):
    value = coerce("key", raw, default)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("True", True),
        ("YES", True),
        ("on", True),
        ("y", True),
        ("1", True),
        (" yes ", True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("OFF", False),
        ("n", False),
        ("0", False),
    ],
)
def test_coerce_bool_words(raw, expected):
    assert coerce("verbose", raw, False) is expected
    assert coerce("verbose", raw, True) is expected


@pytest.mark.parametrize(
    ("raw", "default", "kind"),
    [
        ("maybe", True, "bool"),
        ("", False, "bool"),
        ("2", False, "bool"),
        ("ninety", 90, "int"),
        ("9.5", 90, "int"),
        ("", 90, "int"),
        ("fast", 1.5, "float"),
        ("", 1.5, "float"),
    ],
)
def test_coerce_rejects_a_value_of_the_wrong_type(raw, default, kind):
    with pytest.raises(UsageError) as info:
        coerce("cpu_threshold", raw, default)
    message = str(info.value)
    assert f"cpu_threshold={raw!r}" in message
    assert f"not a valid {kind}" in message


@pytest.mark.parametrize(
    ("assignments", "expected"),
    [
        ([], {}),
        (["service=web"], {"service": "web"}),
        (["service="], {"service": ""}),
        (["query=a=b"], {"query": "a=b"}),
        ([" service =web"], {"service": "web"}),
        (["path=/var/log/a b.log"], {"path": "/var/log/a b.log"}),
        (["limit=1", "limit=2"], {"limit": "2"}),
        (["a=1", "b=2"], {"a": "1", "b": "2"}),
    ],
)
def test_parse_assignments(assignments, expected):
    assert parse_assignments(assignments) == expected


@pytest.mark.parametrize("assignment", ["service", "=web", " =web", ""])
def test_parse_assignments_rejects_a_missing_key_or_equals(assignment):
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_assignments(["ok=1", assignment])


DEFAULTS = {"cpu_threshold": 90.0, "service": "app", "limit": 5, "verbose": False}


def test_resolve_merges_and_coerces_overrides():
    params = resolve_params(DEFAULTS, {"cpu_threshold": "75", "verbose": "yes"})
    assert dict(params) == {"cpu_threshold": 75.0, "service": "app", "limit": 5, "verbose": True}
    assert DEFAULTS["cpu_threshold"] == 90.0  # the runbook's defaults are not touched


def test_unknown_parameter_suggests_the_closest_and_lists_all():
    with pytest.raises(UsageError) as info:
        resolve_params(DEFAULTS, {"cpu_treshold": "75"})
    message = str(info.value)
    assert "unknown parameter 'cpu_treshold'" in message
    assert "Did you mean 'cpu_threshold'?" in message
    assert "Known parameters: cpu_threshold, limit, service, verbose" in message


def test_unknown_parameter_without_a_close_match():
    with pytest.raises(UsageError) as info:
        resolve_params(DEFAULTS, {"zzz": "1"})
    assert "Did you mean" not in str(info.value)
    assert "Known parameters: cpu_threshold" in str(info.value)


def test_unknown_parameter_of_a_runbook_without_parameters():
    with pytest.raises(UsageError, match="takes no parameters"):
        resolve_params({}, {"service": "web"})


def test_params_attribute_and_item_access():
    params = Params({"service": "web", "limit": 5})
    assert params.service == "web"
    assert params["limit"] == 5
    assert params.get("missing", "fallback") == "fallback"
    assert "service" in params
    assert len(params) == 2
    assert list(params) == ["service", "limit"]
    assert params == {"service": "web", "limit": 5}


def test_unknown_attribute_is_an_attribute_error_that_lists_known_names():
    params = Params({"service": "web", "limit": 5})
    with pytest.raises(AttributeError, match="no parameter 'servce'; known: limit, service"):
        params.servce  # noqa: B018
    assert getattr(params, "servce", "default") == "default"
    assert not hasattr(params, "missing")


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy])
def test_params_can_be_copied(duplicate):
    # A check or fixture may copy its parameters; the copy stays read-only.
    params = Params({"service": "web", "tags": ["a"]})
    clone = duplicate(params)
    assert clone == params
    assert clone.service == "web"
    with pytest.raises(AttributeError, match="read-only"):
        clone.service = "db"


def test_params_are_read_only():
    source = {"service": "web"}
    params = Params(source)
    with pytest.raises(AttributeError, match="read-only"):
        params.service = "db"
    with pytest.raises(AttributeError, match="read-only"):
        params.new_one = 1
    with pytest.raises(TypeError):
        params["service"] = "db"  # type: ignore[index]
    source["service"] = "changed behind its back"
    assert params.service == "web"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("db_password", True),
        ("PGPASSWORD", True),
        ("passwd", True),
        ("api_token", True),
        ("GITHUB_TOKEN", True),
        ("client_secret", True),
        ("ssh_key", True),
        ("aws_secret_access_key", True),
        ("credentials", True),
        ("database_dsn", True),
        ("service", False),
        ("cpu_threshold", False),
        ("log_file", False),
        ("host", False),
        ("port", False),
    ],
)
def test_secret_looking_names(name, secret):
    assert is_secret_name(name) is secret


def test_secret_values_are_redacted_in_reports_and_repr():
    params = Params({"service": "web", "db_password": "hunter2", "api_token": "", "limit": 5})
    assert params.redacted() == {
        "service": "web",
        "db_password": "***",
        "api_token": "",  # empty: nothing to hide, and the report shows it is unset
        "limit": 5,
    }
    assert "hunter2" not in repr(params)
    assert "hunter2" not in str(params)
    assert params.db_password == "hunter2"  # checks still get the real value


# Must-supply parameters: declared by their type, no made-up default.

REQUIRED = {"process": str, "port": int, "timeout": 5.0}


def test_a_must_supply_parameter_coerces_to_its_declared_type():
    params = resolve_params(REQUIRED, {"process": "nginx", "port": "0x1f90"})
    assert (params.process, params.port, params.timeout) == ("nginx", 8080, 5.0)
    assert params.unset == ()
    with pytest.raises(UsageError, match=r"port='http': not a valid int"):
        resolve_params(REQUIRED, {"port": "http"})


def test_reading_an_unsupplied_parameter_skips_the_check_naming_it():
    params = resolve_params(REQUIRED, {"process": "nginx"})
    assert params.unset == ("port",)
    with pytest.raises(Skipped, match=r"^needs --param port=PORT$"):
        params.port  # noqa: B018
    # A fallback may look without being skipped.
    assert params.get("port") is None
    assert "port" not in params and "process" in params
    assert params.redacted() == {"process": "nginx", "timeout": 5.0, "port": None}


@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_value_supplies_nothing(raw):
    # An empty CI variable (--param port=$PORT) is no port, not a usage error or port 0.
    params = resolve_params(REQUIRED, {"port": raw, "process": raw})
    assert params.unset == ("process", "port")


@pytest.mark.parametrize("duplicate", [copy.copy, copy.deepcopy, pickle_round_trip])
def test_unsupplied_parameters_survive_a_copy(duplicate):
    clone = duplicate(resolve_params(REQUIRED, {}))
    assert clone.unset == ("process", "port")
    with pytest.raises(Skipped, match="needs --param process=PROCESS"):
        clone.process  # noqa: B018


def test_runbook_show_marks_must_supply_parameters():
    assert [param_type(v).__name__ for v in REQUIRED.values()] == ["str", "int", "float"]
    assert [shown_default(v) for v in REQUIRED.values()] == ["(required)", "(required)", "5.0"]
