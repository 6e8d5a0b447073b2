"""Secret redaction: known values in every encoding, well-known shapes, and what stays."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import time
from typing import NamedTuple
from urllib.parse import quote
from urllib.parse import quote_plus

import pytest

from runbook.params import Params
from runbook.safety.redact import Redactor

# Characters that every encoding below changes: space, quote, slash, plus, ampersand, é.
SECRET = 'Tr0ub4dor&3 "x"/y+zé'


def b64(value: str, *, urlsafe: bool = False, padded: bool = True) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    text = encode(value.encode()).decode()
    return text if padded else text.rstrip("=")


ENCODINGS = {
    "raw": SECRET,
    "quote": quote(SECRET),
    "quote-safe-none": quote(SECRET, safe=""),
    "quote-plus": quote_plus(SECRET),
    "quote-lowercase-hex": re.sub("%..", lambda m: m.group().lower(), quote(SECRET, safe="")),
    "json": json.dumps(SECRET)[1:-1],
    "json-unicode": json.dumps(SECRET, ensure_ascii=False)[1:-1],
    "base64": b64(SECRET),
    "base64-unpadded": b64(SECRET, padded=False),
    "base64-urlsafe": b64(SECRET, urlsafe=True),
    "base64-urlsafe-unpadded": b64(SECRET, urlsafe=True, padded=False),
}

# Realistic outputs with no secret-looking key next to the value, so only the known value
# can give it away. `{s}` is where the (encoded) secret lands.
CONTEXTS = {
    "env dump": "HOME=/root\nLANG=C.UTF-8\nAPP_BOOT_ARGS={s}\nPATH=/usr/local/bin:/usr/bin\n",
    "curl -v": (
        "*   Trying 10.0.0.7:443...\n"
        "> GET /v1/search?q={s}&page=2 HTTP/1.1\n"
        "> Host: api.internal\n"
        "> User-Agent: curl/8.5.0\n"
        "< HTTP/1.1 200 OK\n"
        "< content-type: application/json\n"
    ),
    "config file": "[database]\nhost = db.internal\nport = 5432\nconnect_opts = {s}\n",
    "psql dsn": "psql 'host=db.internal port=5432 dbname=app application_name={s}'\n",
    "docker inspect": (
        '[{"Id": "4f2a9c0e11", "Config": {"Env": ["LANG=C.UTF-8", "BOOT={s}"], '
        '"Image": "registry.internal/app:1.4.2"}, "State": {"Status": "running"}}]'
    ),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("context", CONTEXTS)
def test_a_known_secret_is_hidden_in_every_encoding(context, encoding):
    template = CONTEXTS[context]
    text = template.replace("{s}", ENCODINGS[encoding])
    assert Redactor().text(text) == text  # nothing but the known value gives it away
    assert Redactor([SECRET]).text(text) == template.replace("{s}", "***")


@pytest.mark.parametrize("user", ["a", "ab", "abc", "deploy"])
def test_a_known_secret_inside_a_base64_blob_is_hidden(user):
    # docker's config.json keeps base64("user:password"): the password starts at any offset.
    blob = b64(f"{user}:{SECRET}")
    text = f'{{"auths": {{"registry.internal": {{"auth": "{blob}"}}}}}}'
    redacted = Redactor([SECRET]).text(text)
    assert blob not in redacted
    assert redacted.startswith('{"auths": {"registry.internal": {"auth": "')
    assert "***" in redacted
    # What is left of the blob beside the marker is at most the user and a few bits.
    left = redacted.split('"auth": "')[1].split('"')[0].replace("***", "")
    assert len(left) <= len(b64(f"{user}:")) + 4


def test_overlapping_secrets_both_vanish():
    redactor = Redactor(["abcdef12", "ef12ghij"])
    assert redactor.text("id=xx abcdef12ghij yy") == "id=xx *** yy"


def test_every_occurrence_is_hidden():
    assert Redactor(["s3cr3t-v4lue"]).text("s3cr3t-v4lue s3cr3t-v4lues3cr3t-v4lue") == "*** ***"


@pytest.mark.parametrize("secret", ["", "a", "abc"])
def test_short_known_values_are_ignored(secret):
    text = "abc a cab"
    assert Redactor([secret]).text(text) == text


PEM_BODY = (
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\nMzEfYyjiWA4R4/M2bS1G=="
)

SHAPES = [
    # Private key blocks: the whole block goes, whatever the key type.
    *(
        (
            f"$ cat id\n-----BEGIN {kind}PRIVATE KEY-----\n{PEM_BODY}\n"
            f"-----END {kind}PRIVATE KEY-----\n$ next",
            "$ cat id\n***\n$ next",
        )
        for kind in ("", "RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ")
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        "DEK-Info: AES-128-CBC,3F17F5316E2BAC89\n\n" + PEM_BODY + "\n"
        "-----END RSA PRIVATE KEY-----",
        "***",
    ),
    (
        '{"pem": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADAN\\n'
        '-----END PRIVATE KEY-----\\n", "client_email": "ci@example.iam"}',
        '{"pem": "***\\n", "client_email": "ci@example.iam"}',
    ),
    (  # a secret-named setting hides its whole value, escaped newline and all
        '{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n"}',
        '{"private_key": "***"}',
    ),
    (  # cut short by `head`: the base64 lines still go, the next command stays
        "-----BEGIN OPENSSH PRIVATE KEY-----\n" + PEM_BODY + "\n$ uptime",
        "***\n$ uptime",
    ),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----",
        "***",
    ),
    # Authorization headers and bare Bearer/Basic credentials.
    ("> Authorization: Bearer abc.def-123", "> Authorization: Bearer ***"),
    ("> authorization: bearer abc.def-123", "> authorization: bearer ***"),
    ("Proxy-Authorization: Basic Zm9vOmJhcg==", "Proxy-Authorization: Basic ***"),
    (
        '"Authorization": "token 0123abcd", "Accept": "*/*"',
        '"Authorization": "token ***", "Accept": "*/*"',
    ),
    ("Authorization: s3cr3tv4lue", "Authorization: ***"),
    (
        "curl -H 'Authorization: Bearer x9y8z7w6' https://a",
        "curl -H 'Authorization: Bearer ***' https://a",
    ),
    ("sent Bearer 7f3a9c2e1b0d token", "sent Bearer *** token"),
    ("auth=Basic dXNlcjpwYXNz ok", "auth=Basic *** ok"),
    # Cloud and SaaS tokens.
    ("key id AKIAIOSFODNN7EXAMPLE in use", "key id *** in use"),
    ("ASIAY34FZKBOKMUTVV7A", "***"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = ***",
    ),
    ('"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG"', '"SecretAccessKey": "***"'),
    ("AWS_SESSION_TOKEN=FwoGZXIvYXdzEJr//////////wEaDM", "AWS_SESSION_TOKEN=***"),
    ("remote: ghp_16C7e42F292c6912E7710c838347Ae178B4a used", "remote: *** used"),
    ("gho_16C7e42F292c6912E7710c838347Ae178B4a", "***"),
    ("ghs_16C7e42F292c6912E7710c838347Ae178B4a", "***"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "***"),
    ("glpat-xxxxxxxxxxxxxxxxxxxx1", "***"),
    ("SLACK=xoxb-2631234567-1234567890123-AbCdEfGhIjKlMnOpQrStUv", "SLACK=***"),
    ("xoxp-2631234567-1234567890", "***"),
    (
        "POST https://hooks.slack.com/services/T0001/B0001/XXXXXXXXXXXXXXXX 200",
        "POST https://hooks.slack.com/services/*** 200",
    ),
    ("maps key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY done", "maps key *** done"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "***"),
    (
        "cookie: session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U; Path=/",
        "cookie: session=***; Path=/",
    ),
    (
        "root:$6$rounds=5000$saltsalt$Kx0lK3b0Jx0.qd6Zk6r1:19700:0:99999:7:::",
        "root:***:19700:0:99999:7:::",
    ),
    ("admin:$apr1$abcdefgh$0123456789abcdefghijkl", "admin:***"),
    # Passwords in URLs: scheme, user and host stay.
    ("postgres://app:hunter2@db.internal:5432/app", "postgres://app:***@db.internal:5432/app"),
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    (
        "mongodb+srv://ops:p@ss:w0rd@cluster0.mongodb.net/",
        "mongodb+srv://ops:***@cluster0.mongodb.net/",
    ),
    (
        '"url": "https://bob:xyz%40123@git.internal/x.git"',
        '"url": "https://bob:***@git.internal/x.git"',
    ),
    # Settings: only the value goes.
    ("password=hunter2", "password=***"),
    ("PGPASSWORD=hunter2 psql -h db", "PGPASSWORD=*** psql -h db"),
    ("passwd: hunter2", "passwd: ***"),
    ("secret=abc123&next=/home", "secret=***&next=/home"),
    ("GET /cb?code=1&access_token=abc123&state=x", "GET /cb?code=1&access_token=***&state=x"),
    ("api_key: 9f8e7d6c", "api_key: ***"),
    ("x-api-key: 9f8e7d6c", "x-api-key: ***"),
    ("spring.datasource.password=hunter2", "spring.datasource.password=***"),
    ("DB_PASSWORD='two words'", "DB_PASSWORD='***'"),
    (
        '{"user": "app", "password": "hun\\"ter2", "port": 5432}',
        '{"user": "app", "password": "***", "port": 5432}',
    ),
    ('"{\\"password\\": \\"hunter2\\"}"', '"{\\"password\\": \\"***\\"}"'),
    ("host=db port=5432 password=hunter2 dbname=app", "host=db port=5432 password=*** dbname=app"),
    ('secret_key => "abc123"', 'secret_key => "***"'),
    ('token := "abc123"', 'token := "***"'),
    ('  client_secret: "s3cr3t"', '  client_secret: "***"'),
    # Command-line options, as `ps` shows them.
    ("mysqld --password hunter2 --user app", "mysqld --password *** --user app"),
    ("vault login -token s.abc123", "vault login -token ***"),
]


@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_a_secret_shape_is_hidden_whatever_the_params(text, expected):
    assert Redactor().text(text) == expected


NOT_SECRETS = [
    "keyboard layout: us",
    "tokenizer output: 42 tokens",
    "max_tokens=4096",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "request 123e4567-e89b-12d3-a456-426614174000 done",
    "image sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    # A setting whose name only *starts* with a secret word describes the secret.
    "password_changed_at: 2024-01-01",
    "token_expiry: 3600",
    "secret_name: db-credentials",
    "password_file: /run/secrets/db",
    "--token-file /etc/token",
    # Nothing to hide, or a placeholder that says how the secret is configured.
    "password: ",
    "password:\nuser: app",
    'password: ""',
    "password: null",
    "password: ${DB_PASSWORD}",
    "password: ********",
    "Secret: true",
    "password=***",
    "      DB_PASSWORD:  <set to the key 'password' in secret 'db-creds'>  Optional: false",
    "    SecretName:  db-creds",
    "secret:\n  secretName: db-creds",
    '{"key": "cache:user:42", "public_key": "ssh-ed25519 AAAAC3Nz", "token_count": 5}',
    # Prose and log lines that mention secrets without containing one.
    "Failed password for invalid user admin from 10.0.0.5 port 22 ssh2",
    "a Bearer token is required",
    "basic usage: runbook run NAME",
    "Basic auth is disabled",
    "PWD=/home/app\nOLDPWD=/",
    # URLs without a password, and public key material.
    "https://example.com:8443/path?page=2",
    "ssh://git@github.com/org/repo.git",
    "http://[::1]:8080/health",
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@bastion",
    # Look-alikes that are too short or cut.
    "AKIA1234",
    "ghp_short",
    "eyJhbGciOiJIUzI1NiJ9",
    "costs $5 or $6 today",
    "Asia/Tokyo",
]


@pytest.mark.parametrize("text", NOT_SECRETS)
def test_ordinary_text_is_left_alone(text):
    assert Redactor(["hunter2-long"]).text(text) == text


def test_text_whose_lowercase_is_longer_is_still_redacted():
    # "İ" lowercases to two characters, so the search falls back to scanning everything.
    assert Redactor().text("İstanbul password=hunter2 ok") == "İstanbul password=*** ok"


def test_from_params_collects_secret_and_declared_string_values():
    params = Params(
        {
            "db_password": "hunter2hunter2",
            "service": "nginx",
            "api_token": "",
            "token_ttl": 3600,
            "signing_keys": ["alpha-key-1", 7],
            "extra": "declared-value",
        }
    )
    redactor = Redactor.from_params(params, declared=["extra"])
    text = "nginx hunter2hunter2 3600 alpha-key-1 declared-value 7"
    assert redactor.text(text) == "nginx *** 3600 *** *** 7"


def test_from_params_without_secrets_still_hides_shapes():
    redactor = Redactor.from_params({"service": "nginx"})
    assert redactor.text("nginx AKIAIOSFODNN7EXAMPLE") == "nginx ***"


class Pair(NamedTuple):
    name: str
    value: str


def test_value_redacts_inside_nested_data_and_keeps_its_shape():
    redactor = Redactor(["hunter2hunter2"])
    data = {
        "stdout": "pw is hunter2hunter2",
        "hunter2hunter2": ["x", ("hunter2hunter2", 3), {"n": 1.5, "none": None}],
        "pair": Pair("db", "hunter2hunter2"),
        "flag": True,
        "raw": b"hunter2hunter2",
        7: "password=abc",
    }
    assert redactor.value(data) == {
        "stdout": "pw is ***",
        "***": ["x", ("***", 3), {"n": 1.5, "none": None}],
        "pair": Pair("db", "***"),
        "flag": True,
        "raw": b"hunter2hunter2",  # only text is redacted
        7: "password=***",
    }
    assert isinstance(redactor.value(data)["pair"], Pair)
    assert redactor.value("hunter2hunter2") == "***"
    assert redactor.value(42) == 42


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    command: str
    exit_status: int


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    check: str
    message: str
    commands: tuple[Command, ...]


def test_record_redacts_dataclass_fields_and_nested_records():
    redactor = Redactor(["hunter2hunter2"])
    result = Result(
        "db_up",
        "login with hunter2hunter2 failed",
        (Command("psql postgres://app:pw12345@db/app", 2), Command("uptime", 0)),
    )
    redacted = redactor.record(result)
    assert redacted == Result(
        "db_up",
        "login with *** failed",
        (Command("psql postgres://app:***@db/app", 2), Command("uptime", 0)),
    )
    assert redacted.commands[1] is result.commands[1]  # nothing to hide: not copied
    clean = Result("up", "ok", ())
    assert redactor.record(clean) is clean


def test_repr_does_not_show_the_secrets():
    assert "hunter2hunter2" not in repr(Redactor(["hunter2hunter2"]))


def test_the_marker_matches_params_redacted():
    assert Redactor.MARK == Params({"password": "x"}).redacted()["password"] == "***"


def test_a_few_megabytes_of_mixed_output_stay_fast():
    block = (
        '10.0.0.1 - - [01/May/2024:12:00:01 +0000] "GET /api/items?page=2 HTTP/1.1" 200 512\n'
        "HOME=/root\nPGPASSWORD=hunter2hunter2\n"
        "DATABASE_URL=postgres://app:pg_pass_1234@db.internal:5432/app\n"
        "> Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\n"
        '{"Config": {"Env": ["BOOT=' + quote(SECRET) + '", "LANG=C.UTF-8"]}}\n'
        "Mem:  16Gi  3.2Gi  9.1Gi  120Mi  3.9Gi  12Gi\n"
        "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((sshd,pid=812,fd=3))\n"
        "keyboard tokenizer passes secretly through Asia $5\n" * 20
    )
    text = block * (5_000_000 // len(block) + 1)
    redactor = Redactor([SECRET, "hunter2hunter2"])
    started = time.perf_counter()
    redacted = redactor.text(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"{elapsed:.1f}s for {len(text) / 1e6:.1f} MB"
    for leaked in ("hunter2hunter2", "pg_pass_1234", "eyJzdWIiOiIxIn0", quote(SECRET)):
        assert leaked not in redacted
    assert redacted.count("Mem:  16Gi") == text.count("Mem:  16Gi")
