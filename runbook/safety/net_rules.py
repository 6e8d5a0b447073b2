"""Argument rules for the network clients checks may use: curl and openssl.

curl may only read over http(s) (GET or HEAD, nothing uploaded, nothing written to
disk); openssl may only print certificate fields. Like the other rules, each raises
``Refused`` with the reason and what to use instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from runbook.safety.options import Syntax
from runbook.safety.options import split_options
from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word
from runbook.safety.verb_rules import literal

#: URL schemes curl may fetch in a check; ``telnet://`` is allowed only as a connection test.
CURL_SCHEMES = ("http://", "https://")
#: Methods a check may send: both only read (RFC 9110 "safe" methods without a body).
CURL_METHODS = frozenset({"GET", "HEAD"})
#: Headers that ask a server to treat a GET as another method.
METHOD_OVERRIDE_HEADERS = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)
_CURL = Syntax(
    "curl",
    # O, J, G and d, F, K, c are refused below: they are known so that the reason shows.
    flags="qsSfLIivk46gOJG",
    values="mwHAXoDuTdFKc",
    long_flags=frozenset(
        "--disable --silent --show-error --fail --fail-with-body --location --head --include "
        "--verbose --insecure --ipv4 --ipv6 --globoff --compressed --http1.1 --http2 "
        "--no-progress-meter --cert-status --suppress-connect-headers "
        "--remote-name --remote-name-all --remote-header-name --get --create-dirs".split()
    ),
    long_values=frozenset(
        "--max-time --connect-timeout --write-out --header --user-agent --request --output "
        "--dump-header --user --resolve --connect-to --max-redirs --proto --proto-redir "
        "--cacert --capath --url --upload-file "
        "--data --data-ascii --data-binary --data-raw --data-urlencode --json --form "
        "--form-string --config --cookie-jar --output-dir --trace --trace-ascii --stderr "
        "--libcurl --etag-save --hsts --alt-svc".split()
    ),
)
_CURL_REFUSED = {
    **dict.fromkeys(
        "-d --data --data-ascii --data-binary --data-raw --data-urlencode --json".split(),
        "sends a request body (a POST)",
    ),
    **dict.fromkeys("-F --form --form-string".split(), "sends a form (a POST)"),
    **dict.fromkeys("-G --get".split(), "sends request data (-d) in the query string"),
    **dict.fromkeys(
        "-O -J --remote-name --remote-name-all --remote-header-name --output-dir "
        "--create-dirs".split(),
        "saves the response to a file",
    ),
    **dict.fromkeys("-K --config".split(), "reads options from a file the guard cannot see"),
    **dict.fromkeys("-c --cookie-jar".split(), "writes cookies to a file"),
    **dict.fromkeys(
        "--trace --trace-ascii --stderr --libcurl --etag-save --hsts --alt-svc".split(),
        "writes a file",
    ),
}
# --proto and --proto-redir lists that name only http and https: they can narrow what
# curl follows, never widen it to protocols (dict, gopher ...) that send commands.
_CURL_PROTOCOLS = re.compile(r"(?:[-+=]?https?|-all)(?:,(?:[-+=]?https?|-all))*")
_CURL_SINKS = frozenset({"-", "/dev/null"})
_OPENSSL_X509_FLAGS = frozenset(
    "noout text subject issuer serial dates startdate enddate fingerprint sha1 sha256 "
    "hash subject_hash issuer_hash email ocsp_uri ocspid purpose modulus pubkey".split()
)
_OPENSSL_X509_VALUES = frozenset("in inform nameopt certopt checkend ext".split())


def check_curl(args: Sequence[Word]) -> None:
    # curl skips ~/.curlrc only when the first argument is -q (or a group starting with
    # it, -qsS) or --disable.
    if not args or not (args[0].text.startswith("-q") or args[0].text == "--disable"):
        raise Refused(
            "curl reads ~/.curlrc, which may hold options that write (output, "
            "remote-name-all, data); start with -q to ignore it"
        )
    options, operands = split_options(_CURL, args)
    uploads = []
    for option in options:
        flag = option.flag
        if flag in _CURL_REFUSED:
            raise Refused(f"curl {flag} {_CURL_REFUSED[flag]}")
        value = "" if option.value is None else literal(option.value, f"the curl {flag} value")
        if flag in ("-X", "--request") and value not in CURL_METHODS:
            raise Refused(
                f"curl {flag} {value} sends a {value or 'custom'} request; only GET and HEAD read"
            )
        if flag in ("-o", "--output", "-D", "--dump-header") and value not in _CURL_SINKS:
            raise Refused(f"curl {flag} {value} writes to a file; only - and /dev/null are allowed")
        if flag in ("-w", "--write-out") and (value.startswith("@") or "%output{" in value):
            raise Refused(f"curl {flag} with @FILE or %output{{...}} reads or writes a file")
        if flag in ("-H", "--header"):
            _curl_header(value)
        if flag in ("--proto", "--proto-redir") and not _CURL_PROTOCOLS.fullmatch(value):
            raise Refused(f"curl {flag} {value} may enable protocols other than http and https")
        if flag in ("-T", "--upload-file"):
            uploads.append(value)
        if flag == "--url" and option.value is not None:
            operands.append(option.value)
    flags = {option.flag for option in options}
    if flags & {"-L", "--location"} and "--proto-redir" not in flags:
        # curl before 7.65.2 follows redirects to gopher:// or dict://, which send
        # commands to the redirect's target.
        raise Refused(
            "curl -L may follow a redirect to a protocol that sends commands (gopher://, "
            "dict://); add --proto-redir =http,https"
        )
    _curl_urls([literal(word, "the curl URL") for word in operands], uploads)


def _curl_header(value: str) -> None:
    if value.startswith("@"):
        raise Refused(f"curl -H {value} reads headers from a file the guard cannot see")
    name = re.split(r"[:;]", value, maxsplit=1)[0].strip().lower()
    if name in METHOD_OVERRIDE_HEADERS:
        raise Refused(f"curl -H '{name}: ...' asks the server to treat the GET as another method")


def _curl_urls(urls: Sequence[str], uploads: Sequence[str]) -> None:
    if any(url.lower().startswith("telnet://") for url in urls):
        # curl sends its standard input to a telnet server, and a pipe or < FILE could
        # feed it commands; with -T /dev/null it sends nothing: a connection test.
        if len(urls) != 1 or list(uploads) != ["/dev/null"]:
            raise Refused(
                "curl telnet:// sends its standard input to the server; it is allowed only "
                "as a connection test: one URL with -T /dev/null"
            )
        return
    if uploads:
        raise Refused(f"curl -T {uploads[0]} uploads a file (a PUT)")
    for url in urls:
        if not url.lower().startswith(CURL_SCHEMES):
            scheme, found, _ = url.partition("://")
            what = f"the scheme {scheme}://" if found else "a URL without a scheme"
            raise Refused(f"curl {url!r}: {what} is not allowed; only http:// and https://")


def check_openssl(args: Sequence[Word]) -> None:
    command = literal(args[0], "the openssl command") if args else ""
    if command == "version" and all(
        len(literal(word, "the openssl version option")) == 2 and word.text.startswith("-")
        for word in args[1:]
    ):
        return
    if command == "s_client":
        # s_client sends its standard input to the server: a pipe or < FILE the guard
        # allows elsewhere could feed commands to a TLS service.
        raise Refused(
            "openssl s_client sends its standard input to the server; read a server "
            "certificate with curl -q -v -k -I https://HOST/ (the http fixture's tls_expiry)"
        )
    if command != "x509":
        raise Refused(
            f"openssl {command or 'without a command'} is not allowed; only openssl x509 "
            "(to print certificate fields) and openssl version are"
        )
    words = iter(args[1:])
    for word in words:
        text = literal(word, "the openssl x509 argument")
        name, equals, _ = text.removeprefix("-").removeprefix("-").partition("=")
        if not text.startswith("-"):
            raise Refused(f"openssl x509 takes no operand ({text!r}); give the file with -in")
        if name in _OPENSSL_X509_FLAGS and not equals:
            continue
        if name in _OPENSSL_X509_VALUES:
            if not equals:
                next(words, None)
            continue
        raise Refused(
            f"openssl x509 -{name} is not allowed: only options that print certificate fields "
            "are (-noout, -in, -enddate, -subject ...); -out writes a file, -signkey, -CA "
            "and -req sign"
        )
