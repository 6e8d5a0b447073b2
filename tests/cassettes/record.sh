#!/usr/bin/env bash
# Record the cassettes of the built-in runbooks from real runs on this machine.
#
# Run as root from the repository root: bash tests/cassettes/record.sh [NAME...]
# Each runbook runs against a real fault made here (a CPU hog, a process holding
# memory, a full tmpfs, an error spike in a log, a closed port) inside a new PID
# namespace, so that the recorded process lists hold only the fault and the run,
# never the rest of the machine. The statuses of each recorded run go to
# expected.json (expect.py); tests/test_library_replay.py replays every cassette
# against them.
set -euo pipefail
cd "$(dirname "$0")"
out=$(pwd)
scratch=$(mktemp -d /tmp/runbook-record-XXXXXX)
chmod 755 "$scratch"
trap 'umount "$scratch/full" 2>/dev/null || true; rm -rf "$scratch"' EXIT

record() {  # record NAME [run options...]: inside a fresh PID namespace
    local name=$1
    shift
    unshare --pid --fork --mount-proc bash -c "$FAULT
        sleep 1
        runbook run $name --record '$out/$name.yaml' --json '$scratch/$name.json' \
            --report '$scratch/$name.md' -q $* || true" >/dev/null
    python3 "$out/expect.py" "$name" "$scratch/$name.json"
}

wanted=" ${*:-high-cpu high-memory disk-full high-error-rate connection-exhaustion service-down database-slow} "

if [[ $wanted == *" high-cpu "* ]]; then
    FAULT='python3 -c "while True: pass" &' record high-cpu --param sample_seconds=2 --param process_cpu_percent=50
fi
if [[ $wanted == *" high-memory "* ]]; then
    FAULT='python3 -c "import time; b = bytearray(3 << 30); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(120)" &' \
        record high-memory --param sample_seconds=2
    # The kernel log is the whole machine's since boot: keep only its OOM lines.
    python3 - "$out/high-memory.yaml" <<'PY'
import dataclasses, re, sys
from pathlib import Path
from runbook.cassette import Cassette

path = Path(sys.argv[1])
cassette = Cassette.load(path)
oom = re.compile(r"oom|out of memory|killed process", re.I)
for tape in cassette.hosts.values():
    for index, item in enumerate(tape.interactions):
        if item.request == "dmesg":
            kept = "".join(line for line in item.stdout.splitlines(True) if oom.search(line))
            tape.interactions[index] = dataclasses.replace(item, stdout=kept)
path.write_text(cassette.dumps())
PY
fi
if [[ $wanted == *" disk-full "* ]]; then
    mkdir -p "$scratch/full"
    mount -t tmpfs -o size=16m,nr_inodes=2000 runbook-record "$scratch/full"
    head -c 15M /dev/zero > "$scratch/full/app.log"
    FAULT="" record disk-full --param "path=$scratch/full" --param huge_file_mb=4
    umount "$scratch/full"
fi
if [[ $wanted == *" high-error-rate "* ]]; then
    python3 - "$scratch/app.log" <<'PY'
import datetime as dt, sys
now = dt.datetime.now(dt.UTC)
lines = []
for minute in range(60, 0, -1):
    stamp = (now - dt.timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines.append(f"{stamp} INFO request served")
    if minute % 20 == 0:
        lines.append(f"{stamp} ERROR TimeoutError: upstream took too long")
for second in range(0, 180, 2):
    stamp = (now - dt.timedelta(seconds=180 - second)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines.append(f"{stamp} ERROR ConnectionError: Connection refused by payments:8443")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
    FAULT="" record high-error-rate --param "log_file=$scratch/app.log"
fi
if [[ $wanted == *" connection-exhaustion "* ]]; then
    FAULT="" record connection-exhaustion
fi
if [[ $wanted == *" service-down "* ]]; then
    FAULT="" record service-down --param process=runbook-demo-app --param port=1 \
        --param health_url=http://127.0.0.1:1/health
fi
if [[ $wanted == *" database-slow "* ]]; then
    # A private PostgreSQL with a long query and a lock wait (see record_database_slow.py).
    python3 record_database_slow.py
fi
