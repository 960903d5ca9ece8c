#!/usr/bin/env bash
# Checks the Prometheus rules in infra/prometheus/:
#   1. `promtool check rules` on alerts.yml (syntax, PromQL, templates);
#   2. `promtool test rules` on infra/prometheus/tests/*.yml (the unit tests);
#   3. every alert has a severity label, summary and description annotations, a `for:`
#      duration, and a runbook_url whose anchor is a heading of docs/operations.md;
#   4. every alert has at least one test case where it fires and one where it stays quiet.
# promtool is $PROMTOOL (default `promtool`; Debian: apt-get install prometheus). The third and
# fourth checks need Python 3 with PyYAML: $PYTHON, else ~/.cache/shop/venv/bin/python, else
# python3. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

PROMTOOL=${PROMTOOL:-promtool}
RULES=infra/prometheus/alerts.yml
TESTS=(infra/prometheus/tests/*.yml)
RUNBOOK=docs/operations.md
RUNBOOK_BASE=https://github.com/shop/shop/blob/main/docs/operations.md

log() { printf '==> %s\n' "$*" >&2; }

if ! command -v "$PROMTOOL" >/dev/null 2>&1; then
    log "promtool not found (set PROMTOOL, or apt-get install prometheus)"
    exit 1
fi
if [ ! -e "${TESTS[0]}" ]; then
    log "no rule tests in infra/prometheus/tests/"
    exit 1
fi

status=0
log "promtool check rules $RULES"
"$PROMTOOL" check rules "$RULES" || status=1
log "promtool test rules ${TESTS[*]}"
"$PROMTOOL" test rules "${TESTS[@]}" || status=1

python=""
for candidate in "${PYTHON:-}" "$HOME/.cache/shop/venv/bin/python" python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' 2>/dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    log "no Python with PyYAML found (set PYTHON)"
    exit 1
fi

log "alerts: labels, annotations, runbook anchors in $RUNBOOK, firing and quiet tests"
"$python" - "$RULES" "$RUNBOOK" "$RUNBOOK_BASE" "${TESTS[@]}" <<'PY' || status=1
import re
import sys

import yaml

rules_path, runbook_path, base, *test_paths = sys.argv[1:]
problems = []


def github_anchor(heading):
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"`|\*\*|__", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link counts by its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


anchors = set()
seen = {}
in_fence = False
with open(runbook_path, encoding="utf-8") as f:
    for line in f:
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            anchor = github_anchor(m.group(1))
            n = seen.get(anchor, 0)
            seen[anchor] = n + 1
            anchors.add(anchor if n == 0 else f"{anchor}-{n}")

with open(rules_path, encoding="utf-8") as f:
    groups = (yaml.safe_load(f) or {}).get("groups") or []
alerts = [r for g in groups for r in (g.get("rules") or []) if "alert" in r]
if not alerts:
    problems.append(f"{rules_path}: no alerts")

names = [a["alert"] for a in alerts]
for name in sorted({n for n in names if names.count(n) > 1}):
    problems.append(f"alert {name} is defined more than once")

for a in alerts:
    name = a["alert"]
    labels = a.get("labels") or {}
    annotations = a.get("annotations") or {}
    if not labels.get("severity"):
        problems.append(f"{name}: no severity label")
    for key in ("summary", "description", "runbook_url"):
        if not annotations.get(key):
            problems.append(f"{name}: no {key} annotation")
    if not a.get("for"):
        problems.append(f"{name}: no for: duration")
    url = annotations.get("runbook_url") or ""
    if url:
        page, _, anchor = url.partition("#")
        if page != base:
            problems.append(f"{name}: runbook_url {url} does not start with {base}#")
        elif not anchor:
            problems.append(f"{name}: runbook_url {url} has no #anchor")
        elif anchor not in anchors:
            problems.append(f"{name}: runbook_url anchor #{anchor} is not a heading of {runbook_path}")

firing, quiet = set(), set()
for path in test_paths:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    for test in doc.get("tests") or []:
        for case in test.get("alert_rule_test") or []:
            (firing if case.get("exp_alerts") else quiet).add(case.get("alertname"))
for name in names:
    if name not in firing:
        problems.append(f"{name}: no test case where it fires (alert_rule_test with exp_alerts)")
    if name not in quiet:
        problems.append(f"{name}: no test case where it stays quiet (alert_rule_test with empty exp_alerts)")
for name in sorted((firing | quiet) - set(names)):
    problems.append(f"tests name alert {name}, which {rules_path} does not define")

for p in problems:
    print(f"FAILED: {p}", file=sys.stderr)
if problems:
    sys.exit(1)
print(f"  SUCCESS: {len(alerts)} alerts, each with a runbook section and firing and quiet tests")
PY

if [ "$status" -ne 0 ]; then
    log "alert checks failed"
fi
exit "$status"
