"""Rules for commands driven by a verb: systemctl, kubectl, docker and ip.

Only read-only verbs pass. Global options may come before the verb, so each
command's options are described exactly: an unknown option is refused, as it
could take the next word as its value and hide the real verb.
"""

from __future__ import annotations

from collections.abc import Sequence

from runbook.safety.options import Syntax
from runbook.safety.options import long_option
from runbook.safety.options import split_options
from runbook.safety.shellwords import Refused
from runbook.safety.shellwords import Word

SYSTEMCTL_VERBS = frozenset(
    {
        "status",
        "show",
        "is-active",
        "is-enabled",
        "is-failed",
        "cat",
        "list-units",
        "list-unit-files",
        "list-timers",
        "list-sockets",
        "list-dependencies",
        "list-jobs",
    }
)
KUBECTL_VERBS = frozenset({"get", "describe", "logs", "top", "explain", "version"})
DOCKER_VERBS = frozenset({"ps", "logs", "inspect", "stats", "top", "version", "info", "images"})
#: ``ip OBJECT VERB`` verbs that only read. ip also accepts abbreviations, but they are
#: ambiguous (``ip l s`` is ``ip link set``), so only these exact words pass.
IP_VERBS = frozenset({"show", "list", "lst", "get", "help"})

_SYSTEMCTL = Syntax(
    "systemctl",
    flags="arlqifTh",
    values="tpPHMnosC",
    long_flags=frozenset(
        "--system --user --global --failed --all --recursive --reverse --after --before "
        "--with-dependencies --full --value --show-types --ignore-inhibitors --dry-run "
        "--quiet --no-warn --no-block --wait --no-wall --no-reload --no-legend --no-pager "
        "--no-ask-password --firmware-setup --read-only --mkdir --marked --force --runtime "
        "--plain --now --show-transaction --help --version".split()
    ),
    long_values=frozenset(
        "--type --property --host --machine --lines --output --state --signal --kill-whom "
        "--kill-value --root --image --image-policy --job-mode --what --timestamp "
        "--preset-mode --check-inhibitors --when --message --boot-loader-entry "
        "--boot-loader-menu --reboot-argument --capsule --drop-in --legend".split()
    ),
)
#: kubectl's global flags, which may come before the verb.
_KUBECTL = Syntax(
    "kubectl",
    flags="h",
    values="nsv",
    long_flags=frozenset(
        "--insecure-skip-tls-verify --match-server-version --warnings-as-errors "
        "--disable-compression --help --alsologtostderr --logtostderr --one-output "
        "--skip-headers --skip-log-headers --add-dir-header".split()
    ),
    long_values=frozenset(
        "--namespace --server --v --as --as-group --as-uid --cache-dir "
        "--certificate-authority --client-certificate --client-key --cluster --context "
        "--kubeconfig --password --request-timeout --tls-server-name --token --user "
        "--username --vmodule --log-flush-frequency --stderrthreshold".split()
    ),
    permute=False,
)
#: kubectl options refused wherever they appear (global flags may follow the verb too).
_KUBECTL_REFUSED = {
    **dict.fromkeys(("--log-file", "--log-dir", "--profile", "--profile-output"), "writes files"),
    "--cache-dir": "writes its discovery cache to that directory",
    "--kubeconfig": (
        "reads a kubeconfig whose exec credential plugin runs a command; use the "
        "operator's configuration (KUBECONFIG as the runner was started)"
    ),
    "--kustomize": "builds a kustomization, which can fetch and run programs",
}
_DOCKER = Syntax(
    "docker",
    flags="Dvh",
    values="Hcl",
    long_flags=frozenset({"--debug", "--tls", "--tlsverify", "--version", "--help"}),
    long_values=frozenset(
        "--host --context --config --log-level --tlscacert --tlscert --tlskey".split()
    ),
    permute=False,
)


def literal(word: Word, what: str) -> str:
    """Return the text of ``word``, refusing an expansion where its value matters."""
    if not word.is_literal:
        raise Refused(f"{what} {word.text!r} is only known after {word.expansion}")
    return word.text


def check_systemctl(args: Sequence[Word]) -> None:
    """Allow the systemctl verbs that only read (status, show, cat, is-*, list-*)."""
    options, operands = split_options(_SYSTEMCTL, args)
    for option in options:
        if option.flag in ("-H", "--host"):
            raise Refused(f"systemctl {option.flag} runs ssh to reach another host")
        if option.flag == "--image":
            raise Refused("systemctl --image mounts a disk image")
    if not operands:
        return  # list-units
    verb = literal(operands[0], "the systemctl verb")
    if verb not in SYSTEMCTL_VERBS and not verb.startswith(("list-", "is-")):
        raise Refused(f"systemctl {verb} changes state; only status/show/list-* read")


def check_kubectl(args: Sequence[Word]) -> None:
    """Allow the kubectl verbs that only read, after any global flags."""
    for word in args:
        text = word.text
        if text == "-k" or (text.startswith("-k") and not text.startswith("--")):
            raise Refused(f"kubectl {text} {_KUBECTL_REFUSED['--kustomize']}")
        if text.startswith("--"):
            for name, why in _KUBECTL_REFUSED.items():
                if long_option(text, name):
                    raise Refused(f"kubectl {name} {why}")
    _, operands = split_options(_KUBECTL, args)
    verb = literal(operands[0], "the kubectl verb") if operands else ""
    if verb not in KUBECTL_VERBS:
        raise Refused(f"kubectl {verb or '(no verb)'} is not read-only")


def check_docker(args: Sequence[Word]) -> None:
    """Allow the docker verbs that only read, after any global options."""
    options, operands = split_options(_DOCKER, args)
    for option in options:
        if option.flag == "--config":
            raise Refused(
                "docker --config reads a configuration that can name plugins and hooks to run"
            )
        if option.flag in ("-H", "--host") and option.value is not None:
            host = literal(option.value, "the docker host")
            if not host.startswith(("unix://", "tcp://", "fd://")):
                raise Refused(f"docker -H {host} runs ssh (or another transport command)")
    verb = literal(operands[0], "the docker verb") if operands else ""
    if verb not in DOCKER_VERBS:
        raise Refused(f"docker {verb or '(no verb)'} is not read-only")


def check_ip(args: Sequence[Word]) -> None:
    """Allow ``ip [OPTIONS] OBJECT [show|list|get ...]``; refuse -batch and other verbs."""
    index = 0
    while index < len(args) and args[index].text.startswith("-"):
        option = literal(args[index], "the ip option")
        option = option[1:] if option.startswith("--") else option
        index += 1
        if "-batch".startswith(option) or (len(option) > 2 and "-force".startswith(option)):
            raise Refused("ip -batch runs the commands of a file")
        if option in ("-n", "-netns", "-f", "-family", "-l", "-loops", "-rc", "-rcvbuf"):
            index += 1
    if index + 1 >= len(args):
        return  # `ip` or `ip OBJECT`: help, or the object's listing
    what = literal(args[index], "the ip object")
    verb = literal(args[index + 1], "the ip verb")
    if verb not in IP_VERBS:
        raise Refused(
            f"ip {what} {verb} is not read-only: only {', '.join(sorted(IP_VERBS))} read "
            "(spelled out in full)"
        )
