"""Argument rules for allowlisted commands that can also change things.

Each rule receives the words after the command name and raises ``Refused``
when a verb, option or operand would write, change state or run another
command. Words reaching a rule are literal, or paths under a literal
directory (the guard refuses other expansions first); a rule still requires a
literal word wherever the word's value decides what the command does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from collections.abc import Sequence

from runbook.options import Syntax
from runbook.options import long_option
from runbook.options import split_options
from runbook.script_rules import check_awk
from runbook.script_rules import check_sed
from runbook.shellwords import Refused
from runbook.shellwords import Word
from runbook.verb_rules import check_docker
from runbook.verb_rules import check_ip
from runbook.verb_rules import check_kubectl
from runbook.verb_rules import check_systemctl
from runbook.verb_rules import literal

FIND_ACTIONS = (
    "-delete",
    "-exec",
    "-execdir",
    "-ok",
    "-okdir",
    "-fprint",
    "-fprint0",
    "-fls",
    "-fprintf",
)

Rule = Callable[[Sequence[Word]], None]

_SYSCTL = Syntax(
    "sysctl",
    flags="aAXbeNnqdhVoxw",
    values="r",
    optional="pf",
    long_flags=frozenset(
        "--all --binary --ignore --names --values --quiet --deprecated --help --version "
        "--write --system".split()
    ),
    long_values=frozenset({"--pattern"}),
    long_optional=frozenset({"--load"}),
)
_DATE = Syntax(
    "date",
    flags="uR",
    values="dfrs",
    optional="I",
    long_flags=frozenset(
        "--debug --resolution --rfc-email --utc --universal --help --version".split()
    ),
    long_values=frozenset({"--date", "--file", "--rfc-3339", "--reference", "--set"}),
    long_optional=frozenset({"--iso-8601"}),
)
_HOSTNAME = Syntax(
    "hostname",
    flags="aAbdfiIsyvVh",
    values="F",
    long_flags=frozenset(
        "--alias --all-fqdns --boot --domain --fqdn --long --ip-address --all-ip-addresses "
        "--short --yp --nis --verbose --version --help".split()
    ),
    long_values=frozenset({"--file"}),
)
_DMESG = Syntax(
    "dmesg",
    flags="CcDdEeHJkPprStTuwWxh",
    values="FflnsK",
    optional="L",
    long_flags=frozenset(
        "--clear --read-clear --console-off --console-on --show-delta --reltime --human "
        "--json --kernel --nopager --force-prefix --raw --syslog --notime --ctime "
        "--userspace --follow --follow-new --decode --noescape --help --version".split()
    ),
    long_values=frozenset(
        "--file --facility --level --console-level --buffer-size --kmsg-file "
        "--time-format --since --until".split()
    ),
    long_optional=frozenset({"--color"}),
)
_DMESG_WRITES = frozenset(
    "-C -c -D -E -n --clear --read-clear --console-off --console-on --console-level".split()
)
_JOURNALCTL_WRITES = (
    "--vacuum-size",
    "--vacuum-time",
    "--vacuum-files",
    "--rotate",
    "--flush",
    "--sync",
    "--relinquish-var",
    "--smart-relinquish-var",
    "--setup-keys",
    "--update-catalog",
    "--cursor-file",
)
# Deny-list rules below do not know every option: an unknown one is taken as a flag,
# so that the words after it are still examined.
_SS = Syntax("ss", values="fADFN", strict=False)
_SORT = Syntax(
    "sort",
    values="kotST",
    long_values=frozenset(
        "--key --output --field-separator --buffer-size --temporary-directory --parallel "
        "--files0-from --random-source --batch-size --sort --compress-program".split()
    ),
    strict=False,
)
_UNIQ = Syntax(
    "uniq",
    values="fsw",
    long_values=frozenset({"--skip-fields", "--skip-chars", "--check-chars"}),
    long_optional=frozenset({"--all-repeated", "--group"}),
    strict=False,
)
_FILE = Syntax("file", values="eFfmP", strict=False)


def _find(args: Sequence[Word]) -> None:
    for word in args:
        if word.is_literal and word.text in FIND_ACTIONS:
            raise Refused(f"find {word.text} changes files or runs commands")


def _sysctl(args: Sequence[Word]) -> None:
    options, operands = split_options(_SYSCTL, args)
    flags = {option.flag for option in options}
    writes = {"-w", "-p", "-f", "--write", "--load", "--system"} & flags
    if writes or any("=" in literal(word, "the sysctl key") for word in operands):
        raise Refused("sysctl with -w/-p/--system or KEY=VALUE changes kernel settings")


def _date(args: Sequence[Word]) -> None:
    options, operands = split_options(_DATE, args)
    if any(option.flag in ("-s", "--set") for option in options):
        raise Refused("date -s sets the clock")
    for word in operands:
        if not literal(word, "the date operand").startswith("+"):
            raise Refused("date MMDDhhmm[[CC]YY][.ss] sets the clock; only +FORMAT reads it")


def _hostname(args: Sequence[Word]) -> None:
    options, operands = split_options(_HOSTNAME, args)
    if operands or {"-b", "-F", "--boot", "--file"} & {option.flag for option in options}:
        raise Refused("hostname NAME sets the host name")


def _dmesg(args: Sequence[Word]) -> None:
    options, _ = split_options(_DMESG, args)
    for option in options:
        if option.flag in _DMESG_WRITES:
            raise Refused(f"dmesg {option.flag} clears the kernel log or changes console logging")


def _journalctl(args: Sequence[Word]) -> None:
    for word in args:
        if word.text.startswith("--") and long_option(word.text, *_JOURNALCTL_WRITES):
            raise Refused("journalctl --vacuum/--rotate/--flush changes the journal")


def _ss(args: Sequence[Word]) -> None:
    options, _ = split_options(_SS, args)
    for option in options:
        if option.flag == "-K" or long_option(option.flag, "--kill"):
            raise Refused("ss -K closes sockets")
        if option.flag == "-D" or long_option(option.flag, "--diag"):
            raise Refused("ss -D writes a dump file")


def _sort(args: Sequence[Word]) -> None:
    options, _ = split_options(_SORT, args)
    for option in options:
        if option.flag == "-o" or long_option(option.flag, "--output"):
            raise Refused("sort -o writes its output to a file")
        if long_option(option.flag, "--compress-program"):
            raise Refused("sort --compress-program runs a program")


def _uniq(args: Sequence[Word]) -> None:
    _, operands = split_options(_UNIQ, args)
    for word in operands:
        literal(word, "the uniq operand")
    if len(operands) > 1:
        raise Refused("uniq INPUT OUTPUT writes to OUTPUT; give it one input at most")


def _sar(args: Sequence[Word]) -> None:
    for word in args:
        if word.text.startswith("-") and not word.text.startswith("--") and "o" in word.text:
            raise Refused("sar -o writes a data file")


def _file(args: Sequence[Word]) -> None:
    options, _ = split_options(_FILE, args)
    if any(option.flag == "-C" or long_option(option.flag, "--compile") for option in options):
        raise Refused("file -C writes a compiled magic file")


def _pidstat(args: Sequence[Word]) -> None:
    for word in args:
        if word.text.startswith("-") and not word.text.startswith("--") and "e" in word.text:
            raise Refused("pidstat -e runs a program")


def _test(args: Sequence[Word]) -> None:
    # bash's test -v (and -R) evaluate an array subscript, which can run a command.
    if any(word.text in ("-v", "-R") for word in args):
        raise Refused("test -v evaluates array subscripts, which can run commands")


def _printf(args: Sequence[Word]) -> None:
    if args and args[0].text.startswith("-v"):
        raise Refused("printf -v assigns a shell variable")


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


def _curl(args: Sequence[Word]) -> None:
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


def _openssl(args: Sequence[Word]) -> None:
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


#: The rule of each allowlisted command whose arguments can make it write.
RULES: dict[str, Rule] = {
    "[": _test,
    "awk": check_awk,
    "curl": _curl,
    "date": _date,
    "dmesg": _dmesg,
    "docker": check_docker,
    "file": _file,
    "find": _find,
    "hostname": _hostname,
    "ip": check_ip,
    "journalctl": _journalctl,
    "kubectl": check_kubectl,
    "openssl": _openssl,
    "pidstat": _pidstat,
    "printf": _printf,
    "sar": _sar,
    "sed": check_sed,
    "sort": _sort,
    "ss": _ss,
    "sysctl": _sysctl,
    "systemctl": check_systemctl,
    "test": _test,
    "uniq": _uniq,
}
