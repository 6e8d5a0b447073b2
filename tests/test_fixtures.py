"""Fixtures: scopes, caching, yield teardown, dependencies and the errors they report."""

from __future__ import annotations

import textwrap

import pytest

from runbook.collect import collect
from runbook.engine.runner import Run
from runbook.fixtures import FixtureError
from runbook.fixtures import FixtureManager
from runbook.fixtures import argnames
from runbook.fixtures import fixture
from runbook.fixtures import fixtures_in
from runbook.outcomes import CollectionError
from runbook.pluginmanager import load_config
from runbook.records import RunOptions


def manager(*functions):
    """Build a manager from fixture functions defined in the test."""
    return FixtureManager(fixtures_in({f.__name__: f for f in functions}, "test"))


def keys(host="web1", check="c1"):
    return {"run": "run", "host": host, "check": f"{host}/{check}"}


def test_each_scope_caches_its_value_for_its_own_lifetime():
    made = []

    @fixture(scope="run")
    def cluster():
        made.append("cluster")
        return object()

    @fixture(scope="host")
    def connection():
        made.append("connection")
        return object()

    @fixture
    def scratch():
        made.append("scratch")
        return object()

    fixtures = manager(cluster, connection, scratch)
    names = ["cluster", "connection", "scratch"]
    first = fixtures.resolve(names, keys("web1", "c1"), {})
    again = fixtures.resolve(names, keys("web1", "c1"), {})
    next_check = fixtures.resolve(names, keys("web1", "c2"), {})
    other_host = fixtures.resolve(names, keys("web2", "c1"), {})

    assert again == first
    assert next_check["cluster"] is first["cluster"]
    assert next_check["connection"] is first["connection"]
    assert next_check["scratch"] is not first["scratch"]
    assert other_host["cluster"] is first["cluster"]
    assert other_host["connection"] is not first["connection"]
    assert made == [
        "cluster",
        "connection",
        "scratch",
        "scratch",
        "connection",
        "scratch",
    ]


def test_dependencies_are_set_up_first_and_torn_down_last():
    log = []

    @fixture(scope="run")
    def database():
        log.append("database up")
        yield "db"
        log.append("database down")

    @fixture(scope="host")
    def session(database):
        log.append(f"session up on {database}")
        yield f"session({database})"
        log.append("session down")

    @fixture
    def cursor(session):
        log.append(f"cursor up on {session}")
        yield f"cursor({session})"
        log.append("cursor down")

    fixtures = manager(cursor, session, database)
    fixtures.validate(["cursor"])
    values = fixtures.resolve(["cursor"], keys(), {})
    assert values == {"cursor": "cursor(session(db))"}

    assert fixtures.finish("check", "web1/c1") == []
    assert fixtures.finish("host", "web1") == []
    assert fixtures.finish("run", "run") == []
    assert log == [
        "database up",
        "session up on db",
        "cursor up on session(db)",
        "cursor down",
        "session down",
        "database down",
    ]


def test_teardown_runs_in_reverse_order_of_setup_within_a_scope():
    log = []

    def tracked(name):
        def factory():
            log.append(f"{name} up")
            yield name
            log.append(f"{name} down")

        factory.__name__ = name
        return fixture(factory)

    fixtures = manager(tracked("first"), tracked("second"), tracked("third"))
    fixtures.resolve(["second", "first", "third"], keys(), {})
    fixtures.finish("check", "web1/c1")
    assert log == ["second up", "first up", "third up", "third down", "first down", "second down"]


def test_finish_ends_only_its_own_scope_instance_and_the_next_use_starts_fresh():
    log = []

    @fixture
    def temp():
        log.append("up")
        yield len(log)
        log.append("down")

    fixtures = manager(temp)
    a = fixtures.resolve(["temp"], keys("web1", "c1"), {})["temp"]
    fixtures.resolve(["temp"], keys("web1", "c2"), {})
    fixtures.finish("check", "web1/c1")
    assert log == ["up", "up", "down"]
    b = fixtures.resolve(["temp"], keys("web1", "c1"), {})["temp"]
    assert b != a
    assert fixtures.finish("check", "unknown-key") == []


def test_finish_all_tears_down_narrowest_scope_first():
    log = []

    @fixture(scope="run")
    def wide():
        yield
        log.append("run")

    @fixture(scope="host")
    def middle():
        yield
        log.append("host")

    @fixture
    def narrow():
        yield
        log.append("check")

    fixtures = manager(wide, middle, narrow)
    fixtures.resolve(["wide", "middle", "narrow"], keys(), {})
    assert fixtures.finish_all() == []
    assert log == ["check", "host", "run"]
    assert fixtures.finish_all() == []  # nothing left, nothing runs twice
    assert log == ["check", "host", "run"]


def test_teardown_errors_are_reported_and_do_not_stop_other_teardowns():
    log = []

    @fixture
    def stable():
        yield
        log.append("stable down")

    @fixture
    def flaky():
        yield
        raise ConnectionError("socket already closed")

    @fixture
    def greedy():
        yield 1
        yield 2

    fixtures = manager(stable, flaky, greedy)
    fixtures.resolve(["stable", "flaky", "greedy"], keys(), {})
    errors = fixtures.finish("check", "web1/c1")
    assert errors == [
        "fixture 'greedy' yielded more than once",
        "teardown of fixture 'flaky' failed: ConnectionError('socket already closed')",
    ]
    assert log == ["stable down"]


def test_a_failing_setup_still_tears_down_what_was_set_up():
    log = []

    @fixture(scope="host")
    def tunnel():
        log.append("tunnel up")
        yield "tunnel"
        log.append("tunnel down")

    @fixture
    def broken(tunnel):
        raise RuntimeError("cannot log in")

    fixtures = manager(tunnel, broken)
    with pytest.raises(RuntimeError, match="cannot log in"):
        fixtures.resolve(["broken"], keys(), {})
    assert fixtures.finish_all() == []
    assert log == ["tunnel up", "tunnel down"]


def test_builtins_are_injected_and_can_be_requested_by_fixtures():
    @fixture(scope="host")
    def hostname(host):
        return f"name of {host}"

    @fixture
    def threshold(params, hostname):
        return (params["limit"], hostname)

    fixtures = manager(hostname, threshold)
    fixtures.validate(["threshold", "params", "run_info", "findings", "host"])
    values = fixtures.resolve(
        ["threshold", "host"], keys(), {"host": "HOST", "params": {"limit": 3}}
    )
    assert values == {"threshold": (3, "name of HOST"), "host": "HOST"}


def test_the_first_definition_of_a_name_wins():
    @fixture(name="db")
    def local_db():
        return "runbook's own"

    @fixture(name="db")
    def plugin_db():
        return "plugin's"

    fixtures = FixtureManager(
        [
            *fixtures_in({"local_db": local_db}, "runbook"),
            *fixtures_in({"plugin_db": plugin_db}, "plugin"),
        ]
    )
    assert fixtures.resolve(["db"], keys(), {}) == {"db": "runbook's own"}
    assert fixtures.definitions["db"].origin == "runbook"


def test_unknown_fixture_names_itself_and_what_is_available():
    @fixture
    def logs():
        return []

    fixtures = manager(logs)
    with pytest.raises(FixtureError) as info:
        fixtures.validate(["host", "postgress"])
    assert str(info.value) == (
        "unknown fixture 'postgress'; available: findings, host, logs, params, run_info"
    )


def test_unknown_dependency_names_the_fixture_that_requested_it():
    @fixture
    def report(http_client):
        return http_client

    with pytest.raises(
        FixtureError, match=r"unknown fixture 'http_client' \(requested by 'report'\)"
    ):
        manager(report).validate(["report"])


@pytest.mark.parametrize(
    ("outer", "inner", "allowed"),
    [
        ("check", "check", True),
        ("check", "host", True),
        ("check", "run", True),
        ("host", "host", True),
        ("host", "run", True),
        ("run", "run", True),
        ("host", "check", False),
        ("run", "check", False),
        ("run", "host", False),
    ],
)
def test_a_fixture_may_only_use_fixtures_of_the_same_or_a_wider_scope(outer, inner, allowed):
    @fixture(scope=inner)
    def dependency():
        return 1

    @fixture(scope=outer)
    def user(dependency):
        return dependency

    fixtures = manager(dependency, user)
    if allowed:
        fixtures.validate(["user"])
    else:
        with pytest.raises(FixtureError) as info:
            fixtures.validate(["user"])
        assert str(info.value) == (
            f"{outer}-scoped fixture 'user' cannot use {inner}-scoped fixture 'dependency'"
        )


@pytest.mark.parametrize(
    ("scope", "builtin", "allowed"),
    [
        ("run", "params", True),
        ("run", "run_info", True),
        ("run", "host", False),
        ("host", "host", True),
        ("host", "findings", False),
        ("check", "findings", True),
    ],
)
def test_builtin_fixtures_have_scopes_too(scope, builtin, allowed):
    namespace = {}
    exec(f"def user({builtin}):\n    return {builtin}\n", namespace)
    fixtures = manager(fixture(scope=scope)(namespace["user"]))
    if allowed:
        fixtures.validate(["user"])
    else:
        with pytest.raises(FixtureError, match=f"fixture '{builtin}'"):
            fixtures.validate(["user"])


def test_a_cycle_is_an_error_not_a_hang():
    @fixture
    def chicken(egg):
        return egg

    @fixture
    def egg(chicken):
        return chicken

    @fixture
    def ouroboros(ouroboros):
        return ouroboros

    fixtures = manager(chicken, egg, ouroboros)
    with pytest.raises(FixtureError, match="'chicken' depends on itself: chicken -> egg"):
        fixtures.validate(["chicken"])
    with pytest.raises(FixtureError, match="'ouroboros' depends on itself"):
        fixtures.validate(["ouroboros"])


def test_scope_must_be_known():
    with pytest.raises(ValueError, match="run, host, check"):
        fixture(scope="session")


def test_decorator_marks_without_wrapping():
    def plain():
        return 1

    assert fixture(plain) is plain
    assert fixture(scope="run")(plain) is plain
    assert plain() == 1


def test_argnames_are_the_required_parameters_only():
    def check(host, params, *args, limit=3, verbose, **kwargs):
        pass

    assert argnames(check) == ("host", "params", "verbose")


RUNBOOK = '''
    """Fixture lifecycle."""
    from runbook import check, fixture, hypothesis

    LOG = []
    h = hypothesis("h", "a hypothesis")


    @fixture(scope="run")
    def catalog():
        LOG.append("catalog up")
        yield {"runs": 0}
        LOG.append("catalog down")


    @fixture(scope="host")
    def connection(host, catalog):
        LOG.append(f"connection up to {host.name}")
        yield host.name
        LOG.append("connection down")


    @fixture
    def scratch(connection):
        LOG.append("scratch up")
        yield []
        LOG.append("scratch down")


    @fixture
    def leaky():
        yield
        raise OSError("could not remove the temporary table")


    @check(tests=h)
    def first(scratch, catalog):
        LOG.append("first runs")


    @check(tests=h)
    def second(scratch, connection, leaky):
        LOG.append(f"second runs on {connection}")
'''


def _run(tmp_path, monkeypatch, name, source):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNBOOK_PATH", raising=False)
    path = tmp_path / "runbooks" / f"{name}.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    config = load_config(start=tmp_path)
    collection = collect(config)
    runbook = collection.runbooks[name]
    run = Run(config, runbook, RunOptions(), collection.plugin_fixtures)
    return runbook, run.execute()


def test_a_run_sets_up_and_tears_down_fixtures_per_scope(tmp_path, monkeypatch):
    runbook, result = _run(tmp_path, monkeypatch, "lifecycle", RUNBOOK)
    assert [c.outcome for c in result.checks] == ["passed", "passed"]
    log = runbook.checks[0].func.__globals__["LOG"]
    assert log == [
        "catalog up",
        "connection up to local",
        "scratch up",
        "first runs",
        "scratch down",
        "scratch up",
        "second runs on local",
        "scratch down",
        "connection down",
        "catalog down",
    ]
    assert any(
        "teardown of fixture 'leaky' failed" in warning
        and "could not remove the temporary table" in warning
        for warning in result.warnings
    )
    assert "could not remove the temporary table" in str(result.to_dict()["warnings"])


def test_a_run_refuses_a_check_that_asks_for_an_unknown_fixture(tmp_path, monkeypatch):
    source = '''
        """Typo."""
        from runbook import check


        @check
        def fine(host):
            pass


        @check
        def typo(host, parms):
            pass
    '''
    with pytest.raises(CollectionError) as info:
        _run(tmp_path, monkeypatch, "typo", source)
    error = info.value
    assert error.path.endswith("typo.py")
    assert error.lineno in (10, 11)  # the decorator or the def of `typo`
    assert "typo: unknown fixture 'parms'" in error.message
    assert "params" in error.message
