#!/usr/bin/env bash
# Security scan of infra/ with checkov (Bicep framework), in its own virtualenv.
#
#   tools/checkov.sh            # scan; exit 1 on any failed check, parse error or bare skip
#
# Why more than `checkov -d infra`:
# - checkov exits 0 when it cannot parse a .bicep file (the file is silently not scanned, and
#   its pycep-parser is older than the one tests/infra use), so the JSON summary's
#   parsing_errors must be 0;
# - every `// checkov:skip=ID: reason` must carry a reason.
# The venv (.venv-checkov) is rebuilt when tools/requirements-checkov.txt changes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="${CHECKOV_VENV:-$root/.venv-checkov}"
reqs="$root/tools/requirements-checkov.txt"
python="${PYTHON:-python3}"

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/checkov" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "checkov.sh: creating $venv from tools/requirements-checkov.txt" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
  echo "$want" > "$stamp"
fi

report="$(mktemp -d)"
trap 'rm -rf "$report"' EXIT

# --skip-download: no calls to the Prisma Cloud API (offline CI, no API key).
# Exit code is ignored here: the summary below decides.
"$venv/bin/checkov" --framework bicep -d infra --skip-download --compact \
  --output cli --output json --output-file-path "console,$report/results.json" >&2 || true

"$venv/bin/python" - "$report/results.json" <<'PY'
import json
import pathlib
import sys

report_path = sys.argv[1]
data = json.loads(pathlib.Path(report_path).read_text())
reports = data if isinstance(data, list) else [data]
bicep = [r for r in reports if r.get("check_type") == "bicep"]
problems = []
if not bicep:
    problems.append("checkov produced no bicep report")
summary = bicep[0]["summary"] if bicep else {}
results = bicep[0]["results"] if bicep else {}

if summary.get("failed", 0):
    problems.append(f"{summary['failed']} failed check(s)")
if summary.get("parsing_errors", 0):
    problems.append(f"{summary['parsing_errors']} .bicep file(s) checkov could not parse")

if not summary.get("resource_count", 0):
    problems.append("checkov found no resources in infra/")

for c in results.get("skipped_checks", []):
    reason = (c.get("check_result") or {}).get("suppress_comment", "").strip()
    if len(reason) < 20 or reason == "No comment provided":
        problems.append(f"skip of {c['check_id']} on {c['resource']} has no real justification")

print(
    f"checkov bicep: passed={summary.get('passed', 0)} failed={summary.get('failed', 0)} "
    f"skipped={summary.get('skipped', 0)} parsing_errors={summary.get('parsing_errors', 0)} "
    f"resources={summary.get('resource_count', 0)}"
)
if problems:
    for p in problems:
        print(f"checkov.sh: FAIL: {p}", file=sys.stderr)
    sys.exit(1)
PY
