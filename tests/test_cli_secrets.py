"""Secrets never reach the terminal, the report, the JSON result or the audit log."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

TOKEN = "s3cr3t-Tok3n-4242"
DECLARED = "hunter2-webhook-path"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"

RUNBOOK = '''
    """Leaky."""
    import base64
    import json
    import urllib.parse

    from runbook import check, evidence, hypothesis

    PARAMS = {{"api_token": "", "webhook": "", "service": "web"}}
    SECRETS = ["webhook"]
    leak = hypothesis("leak", "Secrets leak into reports")

    @check(tests=leak)
    def echoes_secrets(host, params):
        token = params.api_token
        for form in (
            token,
            urllib.parse.quote(token),
            json.dumps({{"token": token}}),
            base64.b64encode(token.encode()).decode(),
            params.webhook,
        ):
            host.run("echo %s", form)
        result = host.run("echo %s", "Authorization: Bearer " + token)
        evidence("Command output", result)
        evidence("Records", [{{"name": "cfg", "value": "password=" + token}}])
        evidence("Cloud key", "aws key {aws}")
        assert False, f"token {{token}} was accepted by https://admin:{{token}}@api.example"

    @check(tests=leak)
    def crashes_with_secret(host, params):
        raise RuntimeError("cannot log in with " + params.webhook)
'''

FORMS = [
    TOKEN,
    urllib.parse.quote(TOKEN),
    json.dumps(TOKEN)[1:-1],
    base64.b64encode(TOKEN.encode()).decode(),
    DECLARED,
    AWS_KEY,
]


@pytest.mark.parametrize("verbosity", [[], ["-v", "-v"]])
def test_planted_secrets_are_redacted_everywhere(project, private_audit_log, verbosity):
    project.runbook("leaky", RUNBOOK.format(aws=AWS_KEY))
    result, data = project.run_json(
        "leaky", "--param", f"api_token={TOKEN}", "--param", f"webhook={DECLARED}", *verbosity
    )
    outputs = {
        "terminal": result.output,
        "report": (project.root / "leaky.md").read_text(),
        "json": (project.root / "leaky.json").read_text(),
        "audit log": private_audit_log.read_text(),
    }
    for where, text in outputs.items():
        for form in FORMS:
            assert form not in text, f"{form!r} leaked into the {where}"
        assert "***" in text, where
    assert data["params"]["api_token"] == "***"
    assert data["params"]["webhook"] == "***"
    assert data["params"]["service"] == "web"
    outcomes = [c["outcome"] for c in data["checks"]]
    assert outcomes == ["failed", "error"]  # the checks themselves saw the real values
    assert len(data["commands"]) == 6
