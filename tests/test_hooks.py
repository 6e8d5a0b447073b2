"""The plugin API: every hook specification is called, with what it promises."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import runbook
from runbook.hookspecs import hook_names

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = '''
    """A plugin that implements every hook and logs the calls."""
    import json
    from pathlib import Path

    from runbook import hookimpl

    LOG = Path(__file__).parent.parent / "hooks.log"


    def log(name, **data):
        with LOG.open("a") as stream:
            stream.write(json.dumps({"hook": name, **data}) + "\\n")


    class EchoBackend:
        """A transport for `echo://NAME`: runs commands locally, under another name."""

        def __init__(self, name):
            from runbook.hosts.local import LocalBackend

            self._local = LocalBackend()
            self.name = name
            self.uri = f"echo://{name}"

        def execute(self, command, timeout, on_cancel):
            return self._local.execute(command, timeout, on_cancel)

        def close(self):
            log("backend_closed", host=self.name)


    @hookimpl
    def runbook_addoption(parser):
        log("runbook_addoption")
        parser.addoption("--page", metavar="TEAM", help="Page TEAM when something is ruled in.")


    @hookimpl
    def runbook_configure(config):
        log("runbook_configure", rootdir=str(config.rootdir), page=config.get("page"))


    @hookimpl
    def runbook_collect(config):
        log("runbook_collect")
        return [Path(__file__).parent.parent / "more"]


    @hookimpl
    def runbook_make_host(spec, config):
        if spec.startswith("echo://"):
            return EchoBackend(spec.removeprefix("echo://"))
        return None


    @hookimpl
    def runbook_command_policy(command, mode, step):
        log("runbook_command_policy", command=command, mode=mode, step=step.id)
        if command.startswith("uptime"):
            return "refuse: no uptime for you"
        if command.startswith("mkdir"):
            return "allow"
        return None


    @hookimpl
    def runbook_run_started(run):
        log("runbook_run_started", runbook=run.runbook.name, checks=[c.id for c in run.checks])


    @hookimpl
    def runbook_check_started(check, host):
        log("runbook_check_started", check=check.id, host=host)


    @hookimpl
    def runbook_check_finished(result):
        log("runbook_check_finished", check=result.check, outcome=result.outcome)


    @hookimpl
    def runbook_command_finished(record):
        log("runbook_command_finished", command=record.command, blocked=record.blocked)


    @hookimpl
    def runbook_action_started(action, host):
        log("runbook_action_started", action=action.id, host=host)


    @hookimpl
    def runbook_action_finished(result):
        log("runbook_action_finished", action=result.action, status=result.status)


    @hookimpl
    def runbook_host_finished(result):
        log("runbook_host_finished", host=result.name, status=result.status)


    @hookimpl
    def runbook_report_sections(result):
        return [("Paging", f"paged the {result.runbook['name']} owners")]


    @hookimpl
    def runbook_suggest_severity(result):
        log("runbook_suggest_severity", runbook=result.runbook["name"])
        return "P3"


    @hookimpl
    def runbook_status_update(update):
        log("runbook_status_update", incident=update.incident, status=update.status)
        return []


    @hookimpl
    def runbook_run_finished(result):
        log("runbook_run_finished", exit_code=result.exit_code, report=result.report)


    @hookimpl
    def runbook_unconfigure(config):
        log("runbook_unconfigure")
'''

RUNBOOK = '''
    """Hooked."""
    from runbook import action, check, hypothesis

    h = hypothesis("h", "H")

    @check(tests=h)
    def allowed_by_plugin(host, scratch):
        host.run("mkdir -p %s", scratch)

    @check(tests=h)
    def refused_by_plugin(host):
        host.run("uptime")

    @check(tests=h)
    def finds_it(host):
        assert False, "found it"

    @action(mitigates=h)
    def fix(host):
        pass
'''

SCRATCH = """
    from runbook import fixture

    @fixture(scope="run")
    def scratch():
        return "{path}"
"""


def read_log(project) -> list[dict]:
    return [json.loads(line) for line in (project.root / "hooks.log").read_text().splitlines()]


def test_every_hook_is_called_as_documented(project):
    project.write("tools/hooks_plugin.py", PLUGIN)
    project.write("runbook.toml", 'plugins = ["tools/hooks_plugin.py"]\n')
    project.write("more/hooked.py", RUNBOOK)
    made = project.root / "made-by-check"
    project.write("more/runbookconf.py", SCRATCH.format(path=made))
    result, data = project.run_json(
        "hooked",
        "-H",
        "echo://web1",
        "--execute",
        "--yes",
        "--incident",
        "INC-HOOKS",
        "--page",
        "db-team",
    )
    assert result.exit_code == 1, result.output
    calls = read_log(project)
    names = [call["hook"] for call in calls]
    assert names[:3] == ["runbook_addoption", "runbook_configure", "runbook_collect"]
    assert calls[1]["page"] == "db-team"  # the plugin's own option reached it
    assert names[-1] == "runbook_unconfigure"
    assert {
        "hook": "runbook_run_started",
        "runbook": "hooked",
        "checks": ["allowed_by_plugin", "refused_by_plugin", "finds_it"],
    } in calls
    assert names.count("runbook_check_started") == 3
    assert {
        "hook": "runbook_check_finished",
        "check": "allowed_by_plugin",
        "outcome": "passed",
    } in calls
    assert {
        "hook": "runbook_check_finished",
        "check": "refused_by_plugin",
        "outcome": "blocked",
    } in calls
    assert {"hook": "runbook_action_started", "action": "fix", "host": "web1"} in calls
    assert {"hook": "runbook_action_finished", "action": "fix", "status": "executed"} in calls
    assert names.index("runbook_action_started") < names.index("runbook_action_finished")
    commands = [call for call in calls if call["hook"] == "runbook_command_finished"]
    assert commands[:2] == [
        {"hook": "runbook_command_finished", "command": f"mkdir -p {made}", "blocked": False},
        {"hook": "runbook_command_finished", "command": "uptime", "blocked": True},
    ]
    assert {"hook": "backend_closed", "host": "web1"} in calls
    assert {"hook": "runbook_host_finished", "host": "web1", "status": "ok"} in calls
    assert names.index("runbook_host_finished") > names.index("runbook_action_finished")
    finished = next(call for call in calls if call["hook"] == "runbook_run_finished")
    assert finished["exit_code"] == 1
    assert {"hook": "runbook_suggest_severity", "runbook": "hooked"} in calls
    assert (data["severity"], data["severity_source"]) == ("P3", "runbook")
    updates = [call["status"] for call in calls if call["hook"] == "runbook_status_update"]
    assert updates == ["investigating", "identified", "monitoring"]
    assert all(c["incident"] == "INC-HOOKS" for c in calls if c.get("incident"))
    # The plugin's "allow" let a check run mkdir; its refusal blocked uptime.
    assert (project.root / "made-by-check").is_dir()
    refused = next(c for c in data["checks"] if c["id"] == "refused_by_plugin")
    assert "no uptime for you" in refused["message"]
    assert data["hosts"] == [{"name": "web1", "uri": "echo://web1", "status": "ok", "error": None}]
    report = (project.root / "hooked.md").read_text()
    assert "## Paging\n\npaged the hooked owners" in report
    assert {"title": "Paging", "body": "paged the hooked owners"} in data["sections"]
    called = {name for name in names if name.startswith("runbook_")} | {"runbook_make_host"}
    called.add("runbook_report_sections")  # proven by the report section above
    assert called == set(hook_names())


def test_hookspecs_are_documented_and_typed():
    specs = importlib.import_module("runbook.hookspecs")  # the attribute is the marker
    for name in hook_names():
        spec = getattr(specs, name)
        assert spec.__doc__ and len(spec.__doc__.strip()) > 30, name
        assert "return" in spec.__annotations__, name


#: What the Host helpers return and the parsers behind them: plain data, shared with the
#: plugins that build on them (``runbook.plugins.network`` reuses the ``ss`` and /proc
#: parsers), so plugins may import them too.
HELPER_RECORDS = ("runbook.hosts.system", "runbook.hosts.filesystems", "runbook.hosts.sockets")


def test_plugins_and_library_import_only_the_public_api():
    allowed = set(runbook.__all__)
    for path in [*ROOT.joinpath("plugins").glob("*.py"), *ROOT.joinpath("runbooks").glob("*.py")]:
        tree = ast.parse(path.read_text())
        type_checking = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
        ]
        guarded = {id(n) for block in type_checking for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in guarded:
                continue
            if isinstance(node, ast.ImportFrom) and node.module in HELPER_RECORDS:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runbook"):
                assert node.module == "runbook", f"{path.name}: imports from {node.module}"
                names = {alias.name for alias in node.names}
                assert names <= allowed, f"{path.name}: {names - allowed} not public"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("runbook."), f"{path.name}: {alias.name}"


def test_the_helper_records_plugins_may_import_are_plain_data():
    for module in HELPER_RECORDS:
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("runbook"), f"{module}: {node.module}"
            if isinstance(node, ast.Import):
                assert not any(alias.name.startswith("runbook") for alias in node.names), module


def test_crashing_reporter_plugin_still_leaves_the_report(project):
    project.write(
        "tools/crash.py",
        """
        from runbook import hookimpl

        @hookimpl
        def runbook_check_finished(result):
            raise RuntimeError("notifier exploded")
        """,
    )
    project.write("runbook.toml", 'plugins = ["tools/crash.py"]\n')
    project.runbook(
        "calm",
        '''
        """Calm."""
        from runbook import check

        @check
        def fine(host):
            pass
        ''',
    )
    done = project.run("run", "calm", "--json", "calm.json", "--report", "calm.md")
    assert done.returncode == 3
    assert "internal error: RuntimeError: notifier exploded" in done.stderr
    assert "Traceback" not in done.stderr
    data = json.loads((project.root / "calm.json").read_text())
    assert data["exit_code"] == 3
    assert any("notifier exploded" in warning for warning in data["warnings"])
    assert "notifier exploded" in (project.root / "calm.md").read_text()


def test_entry_point_plugins_add_runbooks_and_fixtures(project):
    site = project.root / "site"
    project.write(
        "site/acme_runbooks.py",
        '''
        """Acme's disk runbook.

        Symptoms: the acme store is full.
        """
        from runbook import check, fixture, hypothesis

        full = hypothesis("acme-full", "The acme store is full")

        @fixture(scope="run")
        def acme_store():
            return "/var/lib/acme"

        @check(tests=full)
        def store_has_room(host, acme_store):
            assert acme_store == "/var/lib/acme"
        ''',
    )
    project.write(
        "site/acme_runbooks-1.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: acme-runbooks\nVersion: 1.0\n",
    )
    project.write(
        "site/acme_runbooks-1.0.dist-info/entry_points.txt",
        "[runbook]\nacme = acme_runbooks\n",
    )
    project.write("site/broken_plugin.py", "raise ImportError('missing dependency: libfoo')\n")
    project.write(
        "site/broken_plugin-1.0.dist-info/METADATA",
        "Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n",
    )
    project.write(
        "site/broken_plugin-1.0.dist-info/entry_points.txt", "[runbook]\nbroken = broken_plugin\n"
    )
    listed = project.run("list", env={"PYTHONPATH": str(site)})
    assert "acme-runbooks" in listed.stdout, listed.stdout + listed.stderr
    line = next(row for row in listed.stdout.splitlines() if row.startswith("acme-runbooks"))
    assert line.rstrip().endswith("plugin acme-runbooks")
    assert "missing dependency: libfoo" in listed.stderr
    assert "high-cpu" in listed.stdout  # the others still load
    done = project.run(
        "run",
        "acme-runbooks",
        "--json",
        "-",
        "--report",
        "r.md",
        env={"PYTHONPATH": str(site)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["hypotheses"][0]["status"] == "ruled_out"
