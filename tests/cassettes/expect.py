"""Add what a recorded run found to expected.json: python3 expect.py NAME RESULT.json"""

import json
import sys
from pathlib import Path

EXPECTED = Path(__file__).resolve().parent / "expected.json"


def main(name: str, result: str) -> None:
    data = json.loads(Path(result).read_text())
    table = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    table[name] = {
        "statuses": {h["id"]: h["status"] for h in data["hypotheses"]},
        "outcomes": {c["id"]: c["outcome"] for c in data["checks"]},
    }
    EXPECTED.write_text(json.dumps(dict(sorted(table.items())), indent=2) + "\n")
    print(name, table[name]["statuses"])


if __name__ == "__main__":
    main(*sys.argv[1:])
