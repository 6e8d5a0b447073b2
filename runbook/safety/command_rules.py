"""Argument rules for allowlisted commands that can also change things.

Each rule receives the words after the command name and raises ``Refused``
when a verb, option or operand would write, change state or run another
command. Words reaching a rule are literal, or paths under a literal
directory (the guard refuses other expansions first); a rule still requires a
literal word wherever the word's value decides what the command does.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

from runbook.safety.net_rules import check_curl
from runbook.safety.net_rules import check_openssl
from runbook.safety.options import Syntax
from runbook.safety.options import long_option
from runbook.safety.options import split_options
from runbook.safety.script_rules import check_awk
from runbook.safety.script_rules import check_sed
from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word
from runbook.safety.verb_rules import check_docker
from runbook.safety.verb_rules import check_ip
from runbook.safety.verb_rules import check_kubectl
from runbook.safety.verb_rules import check_systemctl
from runbook.safety.verb_rules import literal

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
#: The resource letters of bash's and dash's ulimit, with -H and -S (hard, soft).
_ULIMIT_LETTERS = frozenset("abcdefiklmnpqrstuvwxyHPRST")


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
        if word.text.startswith("--") and long_option(word.text, "--image"):
            raise Refused("journalctl --image mounts a disk image")


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


def _ulimit(args: Sequence[Word]) -> None:
    # `ulimit -n` prints a limit; any other word (`ulimit -n 10`, `ulimit 10`) sets one.
    for word in args:
        text = literal(word, "the ulimit argument")
        if not (text.startswith("-") and len(text) > 1 and set(text[1:]) <= _ULIMIT_LETTERS):
            raise Refused(f"ulimit {text} sets a limit; only options (ulimit -n, -a) read them")


def _printf(args: Sequence[Word]) -> None:
    if args and args[0].text.startswith("-v"):
        raise Refused("printf -v assigns a shell variable")


#: The rule of each allowlisted command whose arguments can make it write.
RULES: dict[str, Rule] = {
    "[": _test,
    "awk": check_awk,
    "curl": check_curl,
    "date": _date,
    "dmesg": _dmesg,
    "docker": check_docker,
    "file": _file,
    "find": _find,
    "hostname": _hostname,
    "ip": check_ip,
    "journalctl": _journalctl,
    "kubectl": check_kubectl,
    "openssl": check_openssl,
    "pidstat": _pidstat,
    "printf": _printf,
    "sar": _sar,
    "sed": check_sed,
    "sort": _sort,
    "ss": _ss,
    "sysctl": _sysctl,
    "systemctl": check_systemctl,
    "test": _test,
    "ulimit": _ulimit,
    "uniq": _uniq,
}
