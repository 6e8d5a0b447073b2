"""Fuzz the read-only guard's command parser under a memory and time cap.

bashlex, which parses the commands, looped without end and allocated without
bound on a few short strings. Each fuzz run happens in a subprocess whose
address space is capped (RLIMIT_AS) and which is killed after a timeout, so a
regression fails this test instead of exhausting the machine. Inputs come from
a seeded generator of shell metacharacters, keywords and command words, plus
mutations of the strings known to have broken the parser: every one must get
a verdict (allowed, or refused with a reason) quickly, and none may raise.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

#: Address space for the fuzzing process: Python, bashlex and the guard need ~100 MiB.
MEMORY_CAP = 1 << 30
#: The known parser bombs: each made bashlex allocate until MemoryError.
BOMBS = ["}@'@case${%\\`ip'", "}@'@case${%`ip'", "}'${'", "$'${ =$\"$'"]

FUZZ = r"""
import json, random, sys, time
import bashlex  # imported up front: its ~0.2 s import is not the parse's time
from runbook.safety import shell
from runbook.safety.guard import Refused, check_command

seed, count, bombs, precheck = json.loads(sys.argv[1])
if not precheck:  # prove the deadline alone bounds the parser
    shell.precheck = lambda command: None
    shell.PARSE_SECONDS = 0.3
TOKENS = (
    "; & | ( ) { } < > $ ` ' \" \\ # ! * ? [ ] ~ = % @ ^ , - : / "
    "case esac for in do done if then fi while select function coproc time [[ ]] "
    "$( ${ $(( << <<< >& 2>&1 && || |& ;; $' $\" ${x} ${x:-y} ${#x} $@ $1 "
    "cat ls ip awk sed xargs env timeout sh -c -I -i x y /tmp/f /dev/null"
).split() + [" ", "  "]
SIMPLE = [
    "cat /tmp/f", "ls -l /var/log", "awk '{print $1}'", 'echo "$x"', "grep -c x /tmp/f",
    "xargs -I{} cat /proc/{}/status", "sort -rn", "head -n 5", "ps aux", "env LANG=C ls",
    "timeout 5 cat /tmp/f", "awk '$1 > 5 { print $2 / 2 }'", "sed -n '/x/p'", "sed 's/a/b/g'",
    "kubectl get pods -n x", "curl -q -s http://a/", "sed -n '1p'",
    "cat \"/proc/$(pgrep -o sshd)/status\"",
]
OPERATORS = [" | ", " && ", " || ", "; ", " & ", " |& ", " 2>&1 | "]
rng = random.Random(seed)


def generated():
    words = [rng.choice(TOKENS) + rng.choice(("", "", " ")) for _ in range(rng.randint(1, 14))]
    return "".join(words)


def mutated():
    text = list(rng.choice(bombs))
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(text) + 1)
        if rng.random() < 0.5 and text:
            del text[min(at, len(text) - 1)]
        else:
            text.insert(at, rng.choice(TOKENS))
    return "".join(text)


def composed():
    text = rng.choice(SIMPLE)
    for _ in range(rng.randint(0, 3)):
        text += rng.choice(OPERATORS) + rng.choice(SIMPLE)
    if rng.random() < 0.3:
        text = rng.choice(("( {} )", "{{ {}; }}", "cat $({})", 'echo "$({})"')).format(text)
    if rng.random() < 0.5:
        at = rng.randrange(len(text) + 1)
        text = text[:at] + rng.choice(TOKENS) + text[at:]
    return text


makers = [generated, generated, mutated, composed, composed]
inputs = list(bombs) + [makers[i % len(makers)]() for i in range(count)]
verdicts = {"allowed": 0, "refused": 0}
errors, worst, slowest = [], 0.0, ""
for command in inputs:
    started = time.perf_counter()
    try:
        check_command(command, None)
        verdicts["allowed"] += 1
    except Refused:
        verdicts["refused"] += 1
    except BaseException as exc:  # anything else is a bug: report it, keep going
        errors.append([command, repr(exc)])
    elapsed = time.perf_counter() - started
    if elapsed > worst:
        worst, slowest = elapsed, command
print(json.dumps({"count": len(inputs), "verdicts": verdicts, "errors": errors[:10],
                  "worst": worst, "slowest": slowest}))
"""


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _fuzz(seed: int, count: int, *, precheck: bool = True) -> dict:
    process = subprocess.run(
        [sys.executable, "-c", FUZZ, json.dumps([seed, count, BOMBS, precheck])],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_cap_memory,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    return json.loads(process.stdout)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_generated_command_gets_a_verdict_quickly(seed):
    result = _fuzz(seed, 2500)
    assert result["count"] == 2500 + len(BOMBS)
    assert sum(result["verdicts"].values()) == result["count"], result["errors"]
    assert not result["errors"]
    # The pre-check keeps bashlex on grammar where it ends: nothing nears the deadline.
    assert result["worst"] < 0.5, (result["slowest"], result["worst"])
    assert result["verdicts"]["allowed"] > 0  # the generator reaches the allowlist too


def test_the_deadline_alone_stops_a_runaway_parse():
    """With the pre-check switched off, bashlex loops on the bombs: the deadline ends it."""
    result = _fuzz(3, 40, precheck=False)
    assert not result["errors"]
    assert sum(result["verdicts"].values()) == result["count"]
    assert result["worst"] < 1.5, (result["slowest"], result["worst"])
