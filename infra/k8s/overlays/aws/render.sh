#!/usr/bin/env bash
# Prints the aws overlay with every ${name} placeholder replaced by the Terraform output of that
# name, for `kubectl apply -f -`:
#
#   infra/k8s/overlays/aws/render.sh | kubectl apply -f -
#
# The outputs come from `terraform output -json` in infra/terraform/envs/production (TF_DIR to
# change it), or from a file holding that JSON (TF_OUTPUT_JSON=path). The result holds the
# secrets: pipe it, never write it to disk. Fails when a placeholder names no output. Needs
# kubectl and python3 (PYTHON to name another).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tf_dir=${TF_DIR:-$here/../../../terraform/envs/production}
outputs=$(mktemp)
trap 'rm -f "$outputs"' EXIT
chmod 600 "$outputs"
if [ -n "${TF_OUTPUT_JSON:-}" ]; then
    cat "$TF_OUTPUT_JSON" >"$outputs"
else
    terraform -chdir="$tf_dir" output -json >"$outputs"
fi
kubectl kustomize --load-restrictor LoadRestrictionsNone "$here" | "${PYTHON:-python3}" -c '
import json, re, sys
outputs = json.load(open(sys.argv[1]))
problems = []
def fill(m):
    name = m.group(3)
    if name not in outputs:
        problems.append("no Terraform output for ${%s}" % name)
        return m.group(0)
    v = outputs[name]["value"]
    # A JSON string is a valid double-quoted YAML scalar, whatever the value holds.
    return m.group(1) + json.dumps(v if isinstance(v, str) else json.dumps(v))
# Each placeholder is the whole value of a "key: ${name}" line (kustomize drops the quotes).
line_re = re.compile(r"""^(\s*(?:- )?[^\s:#][^:#]*: )(["\x27]?)\$\{([A-Za-z_][A-Za-z0-9_]*)\}\2[ \t]*$""", re.M)
text = sys.stdin.read()
problems += ["placeholder not alone in its value: " + line.strip() for line in text.splitlines()
             if re.search(r"\$\{[A-Za-z_]", line) and not line_re.match(line)]
text = line_re.sub(fill, text)
if problems:
    sys.exit("\n".join(problems))
sys.stdout.write(text)
' "$outputs"
