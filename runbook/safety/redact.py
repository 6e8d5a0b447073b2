"""Hide secrets in text before it reaches reports, JSON, the terminal, audit logs and cassettes.

A ``Redactor`` hides two kinds of secret and replaces each with ``***``:

* known values (parameters that are secret by name or by declaration) in every encoding a
  command output is likely to show: raw, URL-encoded, JSON-escaped and base64;
* well-known shapes whatever the parameters: private key blocks, ``Authorization``,
  ``Bearer`` and ``Basic`` credentials, cloud and SaaS tokens, JWTs, passwords in URLs,
  password hashes and ``password=...`` style settings.

Only the secret itself is replaced; the text around it stays, so evidence still reads.
Detection works on spans of the original text, so overlapping finds merge into one marker.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any
from typing import ClassVar
from typing import TypeVar
from typing import cast
from urllib.parse import quote
from urllib.parse import quote_plus

from runbook.params import is_secret_name

_T = TypeVar("_T")

#: Known values shorter than this are ignored: hiding every "abc" would shred the output.
MIN_SECRET_LENGTH = 4
#: Shorter base64 fragments of a value embedded in a longer blob could hide innocent text.
_MIN_BASE64_FRAGMENT = 6

# Setting names whose value is a secret. The name must *end* with one of these words, so
# `password_changed_at`, `token_expiry` and `tokenizer` are left alone; any prefix is fine
# (`PGPASSWORD`, `db.password`, `aws_secret_access_key`, `SessionToken`).
_KEY_WORDS = (
    r"(?:password|passwd|passphrase|secret|token|api[_-]?key"
    r"|(?:access|private|secret|signing|encryption)[_-]?key)"
)
_QUOTE = r"(?:\\?[\"'])?"
# A line end, raw or JSON-escaped.
_EOL = r"(?:\r?\n|(?:\\r)?\\n)"
# Quoted values keep their quotes; unquoted ones end at whitespace or a delimiter.
_SETTING_VALUE = (
    r"(?:\\\"(?P<secret>[^\"\\\r\n]*)\\\""
    r"|\"(?P<secret2>(?:\\.|[^\"\\\r\n])*)\""
    r"|'(?P<secret3>[^'\r\n]*)'"
    r"|(?P<secret4>[^\s\"'&,;<>\\]+))"
)
# Values that show how a setting is configured without being a secret.
_PLACEHOLDER = re.compile(r"(?i)(?:null|none|nil|true|false|~|\**|\$\{[^}]*\})")


def _is_real_value(value: str) -> bool:
    return _PLACEHOLDER.fullmatch(value) is None


def _is_basic_credentials(value: str) -> bool:
    """Tell ``Basic dXNlcjpwYXNz`` (base64 of ``user:pass``) from prose ("basic usage")."""
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


@dataclasses.dataclass(frozen=True, slots=True)
class _Shape:
    """A secret shape: ``pattern`` finds it, its ``secret*`` groups (or match) are hidden.

    The pattern only runs where one of the lowercase ``triggers`` occurs, and then only on
    the lines around it unless the shape is ``multiline``: a plain substring search is far
    cheaper than a regex over megabytes of output that rarely hold a secret.
    """

    name: str
    pattern: re.Pattern[str]
    triggers: tuple[str, ...]
    accept: Callable[[str], bool] | None = None
    multiline: bool = False

    def spans(self, text: str, lowered: str | None) -> Iterator[tuple[int, int]]:
        """Yield the spans of ``text`` to hide; ``lowered`` is ``text.lower()`` if as long."""
        groups = [name for name in self.pattern.groupindex if name.startswith("secret")]
        for start, end in self._windows(text, lowered):
            for match in self.pattern.finditer(text, start, end):
                for low, high in [match.span(group) for group in groups] or [match.span()]:
                    if low < high and (self.accept is None or self.accept(text[low:high])):
                        yield low, high

    def _windows(self, text: str, lowered: str | None) -> list[tuple[int, int]]:
        if lowered is None:
            return [(0, len(text))]
        windows: list[tuple[int, int]] = []
        for trigger in self.triggers:
            hit = lowered.find(trigger)
            if hit != -1 and self.multiline:
                return [(0, len(text))]
            while hit != -1:
                end = text.find("\n", hit)
                end = len(text) if end == -1 else end
                windows.append((text.rfind("\n", 0, hit) + 1, end))
                hit = lowered.find(trigger, end)
        return _merge(windows)


_SHAPES = (
    _Shape(
        "private key block",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            # The body: base64, headers and line ends, never another BEGIN (which keeps
            # a run of unterminated blocks linear).
            r"(?:(?:[A-Za-z0-9+/=\s:,.\\]|-(?!----BEGIN)){0,65536}?"
            r"-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
            # No END line (output cut short): take the base64 and header lines that follow,
            # and the blank line between headers and body.
            r"|(?:" + _EOL + r"[ \t]*(?:[A-Za-z0-9+/=]+[ \t]*(?=[\r\n\\\"']|\Z)"
            r"|(?:Proc-Type|DEK-Info|Comment):[^\r\n\\]*(?:" + _EOL + "(?=" + _EOL + "))?))*)"
        ),
        ("private key",),
        multiline=True,
    ),
    _Shape(
        "authorization header",
        re.compile(
            r"(?i)(?<![\w-])(?:proxy-)?authorization"
            + _QUOTE
            + r"[ \t]*[:=][ \t]*"
            + _QUOTE
            + r"(?:[a-z][\w.-]*[ \t]+)?(?P<secret>[^\s\"'\\,;]+)"
        ),
        ("authorization",),
    ),
    _Shape(
        "bearer token",
        re.compile(r"(?i)\bbearer[ \t]+(?P<secret>(?=[\w.~+/-]*\d)[\w.~+/-]{8,}=*)"),
        ("bearer",),
    ),
    _Shape(
        "basic credentials",
        re.compile(r"(?i)\bbasic[ \t]+(?P<secret>[A-Za-z0-9+/]{4,}={0,2})(?![\w+/=])"),
        ("basic",),
        _is_basic_credentials,
    ),
    _Shape(
        "aws access key id",
        re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Z0-9])"),
        ("akia", "asia", "abia", "acca"),
    ),
    _Shape(
        "github token",
        re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_\w{22,})(?!\w)"),
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    _Shape("gitlab token", re.compile(r"(?<![\w-])glpat-[\w-]{20,}"), ("glpat-",)),
    _Shape("slack token", re.compile(r"(?<![\w-])xox[baprs]-[A-Za-z0-9-]{10,}"), ("xox",)),
    _Shape(
        "slack webhook",
        re.compile(r"hooks\.slack\.com/services/(?P<secret>[A-Za-z0-9_/-]+)"),
        ("hooks.slack.com",),
    ),
    _Shape("stripe key", re.compile(r"(?<!\w)[rs]k_live_[A-Za-z0-9]{20,}"), ("k_live_",)),
    _Shape("google api key", re.compile(r"(?<![\w-])AIza[\w-]{35}(?![\w-])"), ("aiza",)),
    _Shape("jwt", re.compile(r"(?<![\w-])eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*"), ("eyj",)),
    _Shape(
        "password hash",
        re.compile(r"(?<![\w$])\$(?:1|2[abxy]|5|6|7|y|gy|apr1)\$[./A-Za-z0-9$=]{16,}"),
        ("$1$", "$2a$", "$2b$", "$2x$", "$2y$", "$5$", "$6$", "$7$", "$y$", "$gy$", "$apr1$"),
    ),
    _Shape(
        # The greedy password backs off to the last "@" so "p@ss" in a password still hides.
        "password in url",
        re.compile(r"://[^\s:/?#@\"'<>]*:(?P<secret>[^\s/?#\"'<>]*)@"),
        ("://",),
    ),
    _Shape(
        "secret setting",
        re.compile(r"(?i)" + _KEY_WORDS + _QUOTE + r"[ \t]*(?::=|=>|==?|:)[ \t]*" + _SETTING_VALUE),
        ("pass", "secret", "token", "key"),
        _is_real_value,
    ),
    _Shape(
        "secret option",
        re.compile(
            r"(?i)(?<![\w-])--?[\w-]*(?:password|passwd|token|secret|api-?key)"
            r"[ \t]+(?P<secret>[^\s-]\S*)"
        ),
        ("pass", "secret", "token", "key"),
        _is_real_value,
    ),
)


#: Any trigger of any shape: text without one cannot hold a shape, whatever its length.
_ANY_TRIGGER = re.compile("|".join(re.escape(t) for shape in _SHAPES for t in shape.triggers))


def _base64_forms(value: str) -> Iterator[str]:
    """Yield the base64 text of ``value``, alone and embedded in a longer encoded blob.

    Inside a blob (``Basic`` credentials of ``user:pass``, a docker ``auth``) the value may
    start at any of three byte offsets; only the characters made of its bits alone are
    stable, so those are yielded for each offset.
    """
    raw = value.encode()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        yield whole
        yield whole.rstrip("=")
        for offset in range(3):
            encoded = encode(b"\0" * offset + raw).decode()
            start = -(-offset * 8 // 6)
            end = (offset + len(raw)) * 8 // 6
            if end - start >= _MIN_BASE64_FRAGMENT:
                yield encoded[start:end]


def _forms(value: str) -> set[str]:
    """Return every way a command output is likely to spell ``value``."""
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    for url in (quote(value), quote(value, safe=""), quote_plus(value)):
        forms.add(url)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda match: match.group().lower(), url))
    forms.update(_base64_forms(value))
    return {form for form in forms if form}


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple | set | frozenset):
        return [item for item in value if isinstance(item, str)]
    return []


class Redactor:
    """Replace known secret values and well-known secret shapes with a marker.

    Known values that are empty or shorter than ``MIN_SECRET_LENGTH`` (4) characters are
    ignored: hiding every "abc" or "1" in an output would destroy the evidence.
    """

    MARK: ClassVar[str] = "***"

    __slots__ = ("_forms",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if len(secret) >= MIN_SECRET_LENGTH:
                forms.update(_forms(secret))
        # Hits are merged as spans, so overlapping secrets both vanish whatever the order;
        # longest first only keeps the search order stable.
        self._forms = tuple(sorted(forms, key=lambda form: (-len(form), form)))

    @classmethod
    def from_params(cls, params: Mapping[str, Any], declared: Iterable[str] = ()) -> Redactor:
        """Collect the values of parameters whose names look secret or are ``declared``.

        Only strings count (a list or tuple contributes its strings): a number in a
        parameter such as ``token_ttl`` is not a secret, and hiding it would hide numbers.
        """
        names = set(declared)
        secrets: list[str] = []
        for name, value in params.items():
            if name in names or is_secret_name(name):
                secrets.extend(_strings(value))
        return cls(secrets)

    def __repr__(self) -> str:
        # Never show the values: a repr ends up in tracebacks and logs.
        return f"<Redactor with {len(self._forms)} known forms>"

    def text(self, value: str) -> str:
        """Return ``value`` with every secret replaced by ``MARK``."""
        if len(value) < MIN_SECRET_LENGTH:
            return value  # shorter than any known value, and than any shape
        spans: list[tuple[int, int]] = []
        for form in self._forms:
            start = value.find(form)
            while start != -1:
                spans.append((start, start + len(form)))
                start = value.find(form, start + 1)
        lowered = value.lower()
        # Some characters lowercase to two, and then offsets in `lowered` are no use.
        folded = lowered if len(lowered) == len(value) else None
        if folded is None or _ANY_TRIGGER.search(folded):
            for shape in _SHAPES:
                spans.extend(shape.spans(value, folded))
        if not spans:
            return value
        pieces: list[str] = []
        position = 0
        for start, end in _merge(spans):
            pieces.append(value[position:start])
            pieces.append(self.MARK)
            position = end
        pieces.append(value[position:])
        return "".join(pieces)

    def value(self, data: Any) -> Any:
        """Redact strings inside ``data``, keeping its shape.

        Strings, and the items of lists, tuples (named tuples stay named) and dicts (string
        keys too) are redacted recursively; anything else is returned as is. Two keys that
        redact to the same text collapse into one.
        """
        return self._walk(data, records=False)

    def record(self, item: _T) -> _T:
        """Return ``item`` with the strings in its dataclass fields redacted, like ``value``.

        Fields declared with ``metadata=runbook.steps.NOT_SECRET`` (identifiers,
        outcomes, numbers) are left alone.

        Records nested in fields or containers are redacted too; a record holding no
        secret comes back as the same object.
        """
        return cast(_T, self._walk(item, records=True))

    def _walk(self, data: Any, *, records: bool) -> Any:
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {
                self._walk(key, records=records): self._walk(item, records=records)
                for key, item in data.items()
            }
        if isinstance(data, list):
            return [self._walk(item, records=records) for item in data]
        if isinstance(data, tuple):
            items = [self._walk(item, records=records) for item in data]
            return type(data)(*items) if hasattr(data, "_fields") else tuple(items)
        if records and dataclasses.is_dataclass(data) and not isinstance(data, type):
            changes = {}
            for field in dataclasses.fields(data):
                if field.init and field.metadata.get("redact", True):
                    old = getattr(data, field.name)
                    new = self._walk(old, records=True)
                    if new != old:
                        changes[field.name] = new
            return dataclasses.replace(data, **changes) if changes else data
        return data
