"""The documentation's examples are executed, so that the docs say what the code does.

Conventions for ``docs/*.md`` (also described in docs/index.md, "About the examples"):

- Each page is one scratch project (a fresh working directory). Its fenced blocks are
  processed in order, top to bottom.
- A ```python or ```toml block whose first line is ``# file: PATH`` (or a ```jinja
  block starting with ``{# file: PATH #}``) is written to ``PATH`` in that project.
  Every ```python block is compiled, every ```toml and ```json block parsed.
- A ```console block is a terminal session: each ``$ `` line is a command, the lines
  under it are its expected output. Commands starting with ``runbook`` (optionally
  after ``VAR=value`` assignments) are run as ``python -m runbook ...`` in the project;
  other commands (``pip install``...) are shown only. A trailing ``# exit N`` (or
  ``# exit 0 or 1`` when the result depends on the machine) gives the expected exit
  status; without it the status must be 0. Expected output lines must appear in order
  in the real output (stdout and stderr together); ``...`` inside a line matches
  anything, and output may have more lines than the page shows.
- Every runbook written under ``runbooks/`` must then lint clean (``runbook lint NAME``
  exits 0), unless the page itself shows ``runbook lint NAME`` with its findings.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from runbook.cli.main import cli
from runbook.outcomes import ExitCode

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<lang>[\w+-]*)\s*$")
_FILE = re.compile(r"^(?:#|\{#)\s*file:\s*(?P<path>[^\s#]+)\s*(?:#\})?\s*$")
_EXIT = re.compile(r"#\s*exit\s+(?P<codes>\d+(?:\s*(?:or|,)\s*\d+)*)\s*$")
_SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "&"}


@dataclasses.dataclass(frozen=True)
class Block:
    """A fenced code block of a docs page."""

    page: Path
    lineno: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"docs/{self.page.name}:{self.lineno}"

    @property
    def file(self) -> str | None:
        """The project path from a ``# file: PATH`` first line, if any."""
        first = self.text.split("\n", 1)[0]
        match = _FILE.match(first)
        return match["path"] if match else None


@dataclasses.dataclass(frozen=True)
class Command:
    """One ``$ runbook ...`` line of a console block, with what it should do."""

    where: str
    line: str
    argv: list[str]
    env: dict[str, str]
    codes: frozenset[int]
    output: list[str]


def blocks(page: Path) -> list[Block]:
    """Return the fenced code blocks of a Markdown page, in order."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, start, body = opening["fence"], index + 1, []
        index += 1
        while index < len(lines) and not (
            lines[index].startswith(fence[0] * len(fence)) and not lines[index].strip(fence[0])
        ):
            body.append(lines[index])
            index += 1
        found.append(Block(page, start, opening["lang"], "\n".join(body) + "\n"))
        index += 1
    return found


def commands(block: Block) -> list[Command]:
    """Split a console block into the commands to run (only ``runbook ...``)."""
    parsed: list[Command] = []
    current: Command | None = None
    for offset, line in enumerate(block.text.splitlines(), start=1):
        if not line.startswith("$ "):
            if current is not None:
                current.output.append(line)
            continue
        current = None
        text = line[2:]
        exit_match = _EXIT.search(text)
        codes = {0}
        if exit_match:
            codes = {int(code) for code in re.findall(r"\d+", exit_match["codes"])}
        words = shlex.split(text, comments=True)
        env = {}
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        if not words or words[0] != "runbook":
            continue  # shown, not run (pip install, cd, ...)
        where = f"{block.where}+{offset}"
        assert not _SHELL_OPERATORS & set(words), f"{where}: shell syntax is not run: {line}"
        current = Command(where, line, words[1:], env, frozenset(codes), [])
        parsed.append(current)
    return parsed


def _word(word: str) -> str:
    return "-+" if set(word) == {"-"} and len(word) > 1 else re.escape(word)


def _pattern(expected: str) -> re.Pattern[str]:
    # Column widths depend on the data: a run of spaces matches any other run, and a
    # table's dashed rule matches a rule of any width.
    parts = [r"\s+".join(map(_word, part.split())) for part in expected.split("...")]
    return re.compile(r"\s*" + ".*".join(parts) + r"\s*")


def assert_output(command: Command, actual: str) -> None:
    """Check that the shown lines occur in order in the real output."""
    lines = actual.splitlines()
    position = 0
    for expected in command.output:
        if expected.strip() in ("", "..."):
            continue  # a line of only `...` stands for any lines, even none
        pattern = _pattern(expected)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        assert position < len(lines), (
            f"{command.where}: `{command.line}` did not print {expected.strip()!r} "
            f"(in this order). Real output:\n{actual}"
        )
        position += 1


def run_command(command: Command, project: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("RUNBOOK_PATH", "RUNBOOK_OPERATOR")
    }
    env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "100"})
    env.update(command.env)
    done = subprocess.run(
        [sys.executable, "-m", "runbook", *command.argv],
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert done.returncode in command.codes, (
        f"{command.where}: `{command.line}` exited {done.returncode}, the page says "
        f"{' or '.join(map(str, sorted(command.codes)))}. Output:\n{done.stdout}"
    )
    assert_output(command, done.stdout)


def _linted_by_page(page_blocks: list[Block]) -> set[str]:
    names: set[str] = set()
    for block in page_blocks:
        if block.lang == "console":
            for command in commands(block):
                if command.argv[:1] == ["lint"]:
                    names.update(command.argv[1:])
    return names


def test_docs_exist():
    names = {page.name for page in PAGES}
    expected = {
        "index.md",
        "getting-started.md",
        "writing-runbooks.md",
        "fixtures.md",
        "cli.md",
        "plugins.md",
        "safety.md",
    }
    assert expected <= names


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_page_examples(page: Path, tmp_path: Path):
    """Write the page's files, run its commands, and lint the runbooks it wrote."""
    page_blocks = blocks(page)
    runbooks: list[str] = []
    for block in page_blocks:
        if block.lang == "python":
            compile(block.text, block.where, "exec")
        elif block.lang == "toml":
            try:
                tomllib.loads(block.text)
            except tomllib.TOMLDecodeError as exc:
                pytest.fail(f"{block.where}: invalid TOML: {exc}")
        elif block.lang == "json":
            try:
                json.loads(block.text)
            except ValueError as exc:
                pytest.fail(f"{block.where}: invalid JSON: {exc}")
        if block.file is not None and block.lang in ("python", "toml", "jinja", "ini", "yaml"):
            target = tmp_path / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text, encoding="utf-8")
            relative = Path(block.file)
            if (
                relative.parent == Path("runbooks")
                and relative.suffix == ".py"
                and not relative.name.startswith(("_", "test_"))
                and relative.name != "runbookconf.py"
            ):
                runbooks.append(relative.stem.replace("_", "-"))
        if block.lang == "console":
            for command in commands(block):
                run_command(command, tmp_path)
    to_lint = [name for name in dict.fromkeys(runbooks) if name not in _linted_by_page(page_blocks)]
    if to_lint:
        lint = Command(
            f"docs/{page.name}", "runbook lint ...", ["lint", *to_lint], {}, frozenset({0}), []
        )
        run_command(lint, tmp_path)


def test_every_hook_is_documented_with_its_signature():
    hookspec = importlib.import_module("runbook.hookspecs")  # `runbook.hookspecs` is the marker
    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    for name in hookspec.hook_names():
        assert name in text, f"hook {name} is missing from docs/plugins.md"
        arguments = ", ".join(inspect.signature(getattr(hookspec, name)).parameters)
        assert f"{name}({arguments})" in text, (
            f"docs/plugins.md does not show the signature {name}({arguments})"
        )


def _cli_commands() -> list[tuple[str, click.Command]]:
    assert isinstance(cli, click.Group)
    return [("runbook", cli), *((f"runbook {n}", c) for n, c in sorted(cli.commands.items()))]


def test_every_command_and_option_is_documented():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name, command in _cli_commands():
        if name != "runbook":
            heading = re.search(rf"^## {name}$", text, re.MULTILINE)
            assert heading, f"docs/cli.md has no section '## {name}'"
        for param in command.params:
            if isinstance(param, click.Option):
                for option in (*param.opts, *param.secondary_opts):
                    assert f"`{option}" in text, f"docs/cli.md misses {option} of `{name}`"


def test_every_exit_code_is_in_the_table():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| *{int(code)} *\|", text, re.MULTILINE), f"exit code {code}"


def test_relative_links_resolve():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"docs/{page.name}: broken link {target}"


SHAPE_RUNBOOK = '''
"""Shape."""
from runbook import action, check, evidence, hypothesis

h = hypothesis("h", "A hypothesis")


@check(tests=h)
def c(host):
    evidence("e", host.run(["true"]))
    assert False, "ruled in"


@action(mitigates=h)
def a(host):
    pass
'''


def test_json_example_has_the_real_shape(tmp_path: Path):
    """The JSON result shown in docs/cli.md has the keys a real result has."""
    shown = next(
        json.loads(block.text) for block in blocks(DOCS / "cli.md") if block.lang == "json"
    )
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "shape.py").write_text(SHAPE_RUNBOOK, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "runbook", "run", "shape", "--json", "-", "--report", "r.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )
    real = json.loads(done.stdout)
    assert shown.keys() == real.keys()
    for key in ("runbook", "hosts", "hypotheses", "checks", "commands"):
        first_shown = shown[key][0] if isinstance(shown[key], list) else shown[key]
        first_real = real[key][0] if isinstance(real[key], list) else real[key]
        assert first_shown.keys() == first_real.keys(), key


def test_safety_page_lists_the_real_allowlist():
    """Every allowlisted command and read-only verb of the guard is named in safety.md."""
    from runbook.safety import guard

    text = (DOCS / "safety.md").read_text(encoding="utf-8")
    for name in sorted(guard.READ_ONLY_COMMANDS):
        assert f"`{name}`" in text, f"docs/safety.md does not list the allowed command {name}"
    for verbs in (guard.SYSTEMCTL_VERBS, guard.KUBECTL_VERBS, guard.DOCKER_VERBS):
        for verb in sorted(verbs):
            assert f"`{verb}`" in text, f"docs/safety.md does not list the verb {verb}"
    for flag in guard.FIND_ACTIONS:
        assert f"`{flag}`" in text, f"docs/safety.md does not list find {flag}"
