#!/usr/bin/env bash
# Checks infra/terraform without Terraform (it cannot be installed on the development machines):
#   1. infra/scripts/check_terraform.py: every file parses (python-hcl2), variables typed and
#      described, module calls match the modules, the aws overlay's placeholders are outputs;
#   2. checkov: the security checks of the resources; any failed check (or file checkov cannot
#      parse) fails. A check skipped in the code carries `#checkov:skip=ID:reason` next to it;
#   3. when kubectl is here: the aws overlay renders (render.sh, made-up values for the
#      Terraform outputs) and, with KUBERNETES_VALIDATE (a kubernetes-validate command), the
#      result validates against the Kubernetes schemas.
# PYTHON (default python3) needs python-hcl2; CHECKOV (default checkov) is the checkov command.
# The two can come from separate virtualenvs (see infra/terraform/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
CHECKOV=${CHECKOV:-checkov}
log() { printf '==> %s\n' "$*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "checking infra/terraform and its outputs against infra/k8s/overlays/aws"
"$PYTHON" infra/scripts/check_terraform.py --example-outputs "$work/outputs.json"

log "running checkov on infra/terraform"
out="$work/checkov.txt"
set +e
# --skip-download: no call to the Prisma Cloud API (there is no internet here; the checks and
# the inline skips work without it).
"$CHECKOV" -d infra/terraform --framework terraform --quiet --compact --skip-download 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    log "checkov failed (exit $status)"
    exit 1
fi
if ! grep -q '^Passed checks: [1-9]' "$out"; then
    log "checkov checked nothing"
    exit 1
fi
if grep -q 'Parsing errors: [1-9]' "$out"; then
    log "checkov could not parse some files"
    exit 1
fi

if command -v kubectl >/dev/null 2>&1; then
    log "rendering infra/k8s/overlays/aws"
    TF_OUTPUT_JSON="$work/outputs.json" PYTHON="$PYTHON" infra/k8s/overlays/aws/render.sh >"$work/aws.yaml"
    if [ -n "${KUBERNETES_VALIDATE:-}" ]; then
        "$KUBERNETES_VALIDATE" --kubernetes-version 1.37.0 --strict --quiet "$work/aws.yaml"
    fi
else
    log "kubectl not found: the aws overlay is not rendered"
fi
log "terraform checks passed"
