"""Collection: runbooks from local folders, configuration, runbookconf.py and the library."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runbook.collect import broken_runbook_names
from runbook.collect import collect
from runbook.collect import library_dir
from runbook.engine.runner import Run
from runbook.outcomes import CollectionError
from runbook.outcomes import UsageError
from runbook.pluginmanager import load_config
from runbook.records import RunOptions


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A project folder that is also the working directory, with no RUNBOOK_PATH."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNBOOK_PATH", raising=False)
    return tmp_path


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return path


def local(collection):
    """The runbooks that did not come from the built-in library."""
    return {name: rb for name, rb in collection.runbooks.items() if rb.source != "builtin"}


def test_identity_comes_from_the_file_stem_and_docstring(here):
    write(
        here / "runbooks" / "disk_full.py",
        '''
        """Disk is full.

        Symptoms: writes fail with ENOSPC,
        the app logs "No space left on device".
        """
        from runbook import check, hypothesis

        PARAMS = {"path": "/", "threshold": 90}
        TAGS = ["storage", "linux"]
        SEVERITY = "P2"

        full = hypothesis("filesystem-full", "The filesystem is almost full")


        @check(tests=full)
        def usage_below_threshold(host, params):
            """Compare usage with the threshold."""
        ''',
    )
    collection = collect(load_config(start=here))
    assert collection.errors == []
    runbook = collection.runbooks["disk-full"]
    assert runbook.name == "disk-full"
    assert runbook.title == "Disk is full"
    assert runbook.description == (
        'Symptoms: writes fail with ENOSPC,\nthe app logs "No space left on device".'
    )
    assert runbook.source == "runbooks/disk_full.py"
    assert runbook.path.resolve() == (here / "runbooks" / "disk_full.py").resolve()
    assert runbook.params == {"path": "/", "threshold": 90}
    assert runbook.tags == ("storage", "linux")
    assert runbook.severity == "P2"
    assert [h.id for h in runbook.hypotheses] == ["filesystem-full"]
    (item,) = runbook.checks
    assert (item.id, item.doc, item.argnames) == (
        "usage_below_threshold",
        "Compare usage with the threshold.",
        ("host", "params"),
    )


def test_a_runbook_without_docstring_or_constants_gets_defaults(here):
    write(
        here / "runbooks" / "bare.py",
        """
        from runbook import check


        @check
        def symptom(host):
            pass
        """,
    )
    runbook = collect(load_config(start=here)).runbooks["bare"]
    assert (runbook.title, runbook.description) == ("", "")
    assert (runbook.params, runbook.tags, runbook.severity) == ({}, (), None)


def test_checks_actions_and_hypotheses_keep_definition_order(here):
    write(
        here / "runbooks" / "ordered.py",
        '''
        """Order matters."""
        from runbook import action, check, hypothesis

        zeta = hypothesis("zeta", "declared first")
        alpha = hypothesis("alpha", "declared second")


        @check
        def zz_symptom(host):
            pass


        @check(tests=alpha)
        def mm_alpha(host):
            pass


        @check(tests=zeta)
        def aa_zeta(host):
            pass


        @action(mitigates=zeta)
        def yy_fix(host):
            pass


        @action(mitigates=alpha)
        def bb_fix(host):
            pass
        ''',
    )
    runbook = collect(load_config(start=here)).runbooks["ordered"]
    assert [c.id for c in runbook.checks] == ["zz_symptom", "mm_alpha", "aa_zeta"]
    assert [a.id for a in runbook.actions] == ["yy_fix", "bb_fix"]
    assert [h.id for h in runbook.hypotheses] == ["zeta", "alpha"]
    assert [c.lineno for c in runbook.checks] == sorted(c.lineno for c in runbook.checks)


def test_a_broken_runbook_is_reported_with_file_and_line_and_others_still_load(here):
    write(here / "runbooks" / "alpha.py", GOOD)
    write(
        here / "runbooks" / "broken.py",
        '''
        """Broken."""
        from runbook import check

        @check
        def oops(host)
            pass
        ''',
    )
    write(
        here / "runbooks" / "crashes.py",
        '''
        """Crashes at import."""
        from runbook import check

        LIMIT = int("ninety")
        ''',
    )
    write(here / "runbooks" / "zulu.py", GOOD)
    collection = collect(load_config(start=here))
    assert sorted(local(collection)) == ["alpha", "zulu"]
    errors = {Path(e.path).name: e for e in collection.errors}
    assert sorted(errors) == ["broken.py", "crashes.py"]
    assert errors["broken.py"].lineno == 5
    assert "SyntaxError" in errors["broken.py"].message
    assert str(errors["broken.py"]).startswith(f"{here / 'runbooks' / 'broken.py'}:5: ")
    assert errors["crashes.py"].lineno == 4
    assert "ValueError" in errors["crashes.py"].message
    assert sorted(broken_runbook_names(collection)) == ["broken", "crashes"]


GOOD = '''
    """A runbook that loads."""
    from runbook import check, hypothesis

    h = hypothesis("h", "a hypothesis")


    @check(tests=h)
    def probe(host):
        pass
'''


def test_a_runbook_reached_twice_through_a_symlinked_folder_loads_once(here):
    shared = here / "shared"
    write(shared / "probe.py", GOOD)
    write(
        shared / "runbookconf.py",
        """
        from runbook import fixture


        @fixture
        def team():
            return "sre"
        """,
    )
    (here / "runbooks").symlink_to(shared, target_is_directory=True)
    write(here / "runbook.toml", 'paths = ["shared", "runbooks"]\n')
    collection = collect(load_config(start=here))
    assert collection.errors == []
    assert list(local(collection)) == ["probe"]
    assert [rb.name for rb in collection.shadowed] == []
    assert [f.name for f in collection.runbooks["probe"].fixtures] == ["team"]


def test_a_local_runbook_shadows_the_builtin_one_of_the_same_name(here):
    write(
        here / "runbooks" / "high_cpu.py",
        '''
        """Our own high CPU runbook."""
        from runbook import check


        @check
        def cpu_is_high(host):
            pass
        ''',
    )
    assert (library_dir() / "high_cpu.py").is_file(), "the built-in library has no high-cpu"
    collection = collect(load_config(start=here))
    winner = collection.runbooks["high-cpu"]
    assert winner.title == "Our own high CPU runbook"
    assert winner.source == "runbooks/high_cpu.py"
    assert [(rb.name, rb.source) for rb in collection.shadowed] == [("high-cpu", "builtin")]


def test_closer_sources_shadow_farther_ones(here, monkeypatch):
    def runbook(folder, title):
        write(
            here / folder / "triage.py",
            f'''
            """{title}."""
            from runbook import check


            @check
            def probe(host):
                pass
            ''',
        )

    runbook("from_env", "From RUNBOOK_PATH")
    runbook("runbooks", "From the working directory")
    runbook("configured", "From the configuration")
    monkeypatch.setenv("RUNBOOK_PATH", str(here / "from_env"))
    write(here / "runbook.toml", 'paths = ["configured"]\n')
    collection = collect(load_config(start=here))
    assert collection.runbooks["triage"].title == "From RUNBOOK_PATH"
    assert [rb.title for rb in collection.shadowed] == [
        "From the working directory",
        "From the configuration",
    ]


def test_runbookconf_fixtures_serve_their_own_folder_only(here):
    write(
        here / "runbooks" / "runbookconf.py",
        '''
        """Shared fixtures for our runbooks."""
        from runbook import fixture, hookimpl

        CONFIGURED = []


        @fixture(scope="host")
        def service_name(params):
            return f"{params.service}.service"


        @hookimpl
        def runbook_configure(config):
            CONFIGURED.append(config.rootdir)
        ''',
    )
    write(
        here / "runbooks" / "uses_conf.py",
        '''
        """Uses the folder's fixture."""
        from runbook import check, hypothesis

        PARAMS = {"service": "nginx"}
        h = hypothesis("h", "a hypothesis")


        @check(tests=h)
        def named(service_name):
            assert service_name == "nginx.service", service_name
        ''',
    )
    write(
        here / "elsewhere" / "outsider.py",
        '''
        """Lives in another folder."""
        from runbook import check


        @check
        def named(service_name):
            pass
        ''',
    )
    write(here / "runbook.toml", 'paths = ["elsewhere"]\n')
    config = load_config(start=here)
    collection = collect(config)
    assert collection.errors == []

    inside = collection.runbooks["uses-conf"]
    assert [f.name for f in inside.fixtures] == ["service_name"]
    assert [f.name for f in collection.runbooks["outsider"].fixtures] == []
    assert "service_name" not in [f.name for f in collection.plugin_fixtures]

    result = Run(config, inside, RunOptions(), collection.plugin_fixtures).execute()
    assert [(c.check, c.outcome, c.message) for c in result.checks] == [("named", "passed", "")]

    with pytest.raises(CollectionError, match="unknown fixture 'service_name'"):
        Run(config, collection.runbooks["outsider"], RunOptions(), collection.plugin_fixtures)

    conf = next(
        plugin
        for name, plugin in config.pluginmanager.list_name_plugin()
        if name.endswith("runbookconf.py")
    )
    assert conf.CONFIGURED == [here.resolve()]  # its hooks take part too


def test_duplicate_hypothesis_ids_are_a_collection_error(here):
    write(
        here / "runbooks" / "twice.py",
        '''
        """Two hypotheses, one id."""
        from runbook import check, hypothesis

        leak = hypothesis("leak", "A process leaks memory")
        cache = hypothesis("leak", "The page cache grew")


        @check(tests=leak)
        def rss_stable(host):
            pass


        @check(tests=cache)
        def cache_small(host):
            pass
        ''',
    )
    write(here / "runbooks" / "fine.py", GOOD)
    collection = collect(load_config(start=here))
    assert "twice" not in collection.runbooks
    assert "fine" in collection.runbooks
    (error,) = collection.errors
    assert Path(error.path).name == "twice.py"
    assert "hypothesis id 'leak' is declared twice" in error.message


@pytest.mark.parametrize(
    ("constant", "message"),
    [
        ('PARAMS = ["service"]', "PARAMS must be a dict with string keys"),
        ("PARAMS = {1: 2}", "PARAMS must be a dict with string keys"),
        ('TAGS = "linux"', "TAGS must be a list of strings"),
        ('SEVERITY = "high"', "SEVERITY must be one of P0, P1, P2, P3, P4, not 'high'"),
    ],
)
def test_malformed_module_constants_are_collection_errors(here, constant, message):
    write(here / "runbooks" / "malformed.py", textwrap.dedent(GOOD) + f"\n{constant}\n")
    collection = collect(load_config(start=here))
    assert "malformed" not in collection.runbooks
    (error,) = collection.errors
    assert message in error.message


def test_only_runbook_files_are_collected(here):
    for name in ("_private.py", "test_probe.py", "probe_test.py", ".hidden.py"):
        write(here / "runbooks" / name, GOOD)
    write(here / "runbooks" / "notes.txt", "not python")
    write(
        here / "runbooks" / "helpers.py",
        """
        def top(host):
            return host.run("ps aux")
        """,
    )
    write(here / "runbooks" / "real_one.py", GOOD)
    collection = collect(load_config(start=here))
    assert collection.errors == []
    assert list(local(collection)) == ["real-one"]


def test_paths_from_runbook_toml_are_relative_to_the_file(here):
    write(here / "ops" / "playbooks" / "from_toml.py", GOOD)
    write(here / "runbook.toml", 'paths = ["ops/playbooks"]\n')
    (here / "deep" / "er").mkdir(parents=True)
    config = load_config(start=here / "deep" / "er")  # found by walking up
    assert config.inifile == here / "runbook.toml"
    assert config.rootdir == here
    assert "from-toml" in collect(config).runbooks


def test_paths_from_pyproject_tool_runbook(here):
    write(here / "team" / "from_pyproject.py", GOOD)
    write(
        here / "pyproject.toml",
        """
        [project]
        name = "ops"

        [tool.runbook]
        paths = ["team"]
        """,
    )
    config = load_config(start=here)
    assert config.inifile == here / "pyproject.toml"
    assert "from-pyproject" in collect(config).runbooks


def test_a_pyproject_without_tool_runbook_is_passed_over(here):
    write(here / "runbook.toml", 'paths = ["outer"]\n')
    write(here / "outer" / "outer_one.py", GOOD)
    write(here / "inner" / "pyproject.toml", '[project]\nname = "app"\n')
    config = load_config(start=here / "inner")
    assert config.inifile == here / "runbook.toml"
    assert "outer-one" in collect(config).runbooks


def test_runbook_toml_wins_over_pyproject_in_the_same_folder(here):
    write(here / "a" / "from_a.py", GOOD)
    write(here / "b" / "from_b.py", GOOD)
    write(here / "runbook.toml", 'paths = ["a"]\n')
    write(here / "pyproject.toml", '[tool.runbook]\npaths = ["b"]\n')
    collection = collect(load_config(start=here))
    assert "from-a" in collection.runbooks
    assert "from-b" not in collection.runbooks


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("paths = [", "invalid configuration"),
        ("paths = 3", "'paths' must be a list of strings"),
        ('plugins = ["missing_module_xyz"]', "cannot load plugin 'missing_module_xyz'"),
    ],
)
def test_bad_configuration_is_a_usage_error(here, text, message):
    write(here / "runbook.toml", text + "\n")
    with pytest.raises(UsageError, match=message):
        collect(load_config(start=here))


def test_a_misspelled_hook_in_a_runbook_folder_fails_collection(here):
    write(
        here / "runbooks" / "runbookconf.py",
        """
        from runbook import hookimpl


        @hookimpl
        def runbook_check_finishd(result):
            pass
        """,
    )
    with pytest.raises(UsageError, match="runbook_check_finishd"):
        collect(load_config(start=here))


def test_secrets_must_name_known_parameters(project):
    from runbook.collect import collect
    from runbook.pluginmanager import load_config

    project.runbook(
        "declares",
        '''
        """Declares."""
        from runbook import check

        PARAMS = {"webhook": ""}
        SECRETS = ["webhook", "missing"]

        @check
        def c(host):
            pass
        ''',
    )
    collection = collect(load_config())
    assert "declares" not in collection.runbooks
    assert any("SECRETS names unknown parameters: ['missing']" in str(e) for e in collection.errors)
