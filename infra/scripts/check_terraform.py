#!/usr/bin/env python3
"""Checks infra/terraform without Terraform (which cannot be installed on the development
machines; see infra/terraform/README.md), and its contract with the Kubernetes overlay
infra/k8s/overlays/aws:

  a. every .tf file parses (python-hcl2, or the bc-python-hcl2 fork that checkov installs under
     the same `hcl2` name: both shapes of its output are read);
  b. every variable has a type and a description, and no sensitive variable has a default;
     every output has a description; every checkov skip gives a reason;
  c. every ${name} placeholder of the overlay is an output of envs/production (so renaming an
     output breaks this check), the overlay overrides every value of infra/k8s/secret.yaml
     (no sample secret reaches production), lists every base manifest, and uses the namespace
     and service account that the application's IAM role trusts;
  d. every module call passes only variables the module declares, and every variable of the
     module without a default.

Exits 1 with one line per problem. With `--example-outputs FILE` it also writes, for every output
of envs/production, a made-up value in the shape of `terraform output -json`, for rendering the
overlay without Terraform (check_terraform.sh does)."""
import json
import pathlib
import re
import sys

import hcl2

ROOT = pathlib.Path(__file__).resolve().parents[2]
TF = ROOT / "infra" / "terraform"
ENV = TF / "envs" / "production"
K8S = ROOT / "infra" / "k8s"
OVERLAY = K8S / "overlays" / "aws"
# Arguments of a module block that are Terraform's, not the module's variables.
META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Example values (--example-outputs) of the outputs that are not strings, in the JSON type
# `terraform output -json` gives them, so that rendering the overlay exercises render.sh's
# quoting of numbers (a ConfigMap value must be a string). Every other output is a string.
EXAMPLE_VALUES = {"kafka_replication": ("number", 2)}

problems = []


def rel(path):
    return path.relative_to(ROOT).as_posix()


def unquote(value):
    """A scalar as both parsers give it: python-hcl2 keeps the quotes of strings (and labels),
    bc-python-hcl2 wraps every attribute value in a one-element list."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def attributes(body):
    """The attribute and nested-block names of a block body, without the parsers' own keys."""
    return {key for key in body if not key.startswith("__")}


def blocks(doc, kind):
    """(label, body) of every top-level block of a kind with one label (variable, output, module)."""
    for entry in doc.get(kind) or []:
        for label, body in entry.items():
            yield unquote(label), body


def parse(path):
    try:
        with open(path, encoding="utf-8") as f:
            return hcl2.load(f)
    except Exception as e:  # every parser error, whatever its class
        problems.append(f"{rel(path)}: does not parse: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
        return None


# --- a: parse everything ---------------------------------------------------------------------
tf_files = sorted(TF.rglob("*.tf"))
if not tf_files:
    problems.append(f"{rel(TF)}: no .tf files")
docs = {path: doc for path in tf_files if (doc := parse(path)) is not None}


def module_dir(path):
    """Everything a module (a directory) declares: its variables and outputs, by name."""
    variables, outputs = {}, {}
    for file in sorted(path.glob("*.tf")):
        doc = docs.get(file)
        if doc is None:
            continue
        for name, body in blocks(doc, "variable"):
            variables[name] = body
        for name, body in blocks(doc, "output"):
            outputs[name] = body
    return variables, outputs


# --- b: variables and outputs documented, skips explained --------------------------------------
for path, doc in docs.items():
    for name, body in blocks(doc, "variable"):
        keys = attributes(body)
        for needed in ("type", "description"):
            if needed not in keys:
                problems.append(f"{rel(path)}: variable {name} has no {needed}")
        if "description" in keys and not str(unquote(body["description"])).strip():
            problems.append(f"{rel(path)}: variable {name} has an empty description")
        if unquote(body.get("sensitive")) is True and "default" in keys:
            problems.append(f"{rel(path)}: variable {name} is sensitive but has a default (secrets never live in code)")
    for name, body in blocks(doc, "output"):
        if "description" not in attributes(body):
            problems.append(f"{rel(path)}: output {name} has no description")
for path in tf_files:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for skip in re.finditer(r"checkov:skip=([^\s:]+)(:?)(.*)", line):
            if not skip.group(2) or not skip.group(3).strip():
                problems.append(f"{rel(path)}:{number}: checkov skip of {skip.group(1)} without a reason")

# --- d: module calls match the modules' variables (and module.<name>.<output> exists) ----------
calls_by_dir = {}
for path, doc in docs.items():
    for name, body in blocks(doc, "module"):
        source = unquote(body.get("source"))
        if not isinstance(source, str) or not source.startswith(("./", "../")):
            problems.append(f"{rel(path)}: module {name}: source {source!r} is not a local module")
            continue
        target = (path.parent / source).resolve()
        if not target.is_dir() or not list(target.glob("*.tf")):
            problems.append(f"{rel(path)}: module {name}: {source} is not a module directory")
            continue
        calls_by_dir.setdefault(path.parent, {})[name] = target
        declared, _ = module_dir(target)
        given = attributes(body) - META_ARGUMENTS
        for unknown in sorted(given - set(declared)):
            problems.append(f"{rel(path)}: module {name} passes {unknown}, which {rel(target)} does not declare")
        for var, var_body in sorted(declared.items()):
            if "default" not in attributes(var_body) and var not in given:
                problems.append(f"{rel(path)}: module {name} does not pass {var}, which {rel(target)} requires")
for path in docs:
    calls = calls_by_dir.get(path.parent, {})
    for m in re.finditer(r"\bmodule\.([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)", path.read_text(encoding="utf-8")):
        module, output = m.groups()
        if module not in calls:
            problems.append(f"{rel(path)}: module.{module} is not called in {rel(path.parent)}")
        elif output not in module_dir(calls[module])[1]:
            problems.append(f"{rel(path)}: module.{module}.{output}: {rel(calls[module])} has no output {output}")

# --- c: the overlay and the outputs of envs/production agree ----------------------------------
env_variables, env_outputs = module_dir(ENV)
if not env_outputs:
    problems.append(f"{rel(ENV)}: no outputs")


def yaml_lines(path):
    """Lines of a YAML file without its comment lines (comments may mention ${name} freely)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if not line.lstrip().startswith("#")]


overlay_files = sorted(OVERLAY.glob("*.yaml"))
if not (OVERLAY / "kustomization.yaml").is_file():
    problems.append(f"{rel(OVERLAY)}: no kustomization.yaml")
placeholders = {}
for path in overlay_files:
    for line in yaml_lines(path):
        for m in PLACEHOLDER.finditer(line):
            placeholders.setdefault(m.group(1), rel(path))
if not placeholders:
    problems.append(f"{rel(OVERLAY)}: no ${{...}} placeholders: nothing is taken from Terraform")
for name, where in sorted(placeholders.items()):
    if name not in env_outputs:
        problems.append(f"{where}: ${{{name}}} is not an output of {rel(ENV)}")
for name in sorted(EXAMPLE_VALUES):
    if name not in env_outputs:
        problems.append(f"infra/scripts/check_terraform.py: EXAMPLE_VALUES names {name}, which is not an output of {rel(ENV)}")


def keys_under(path, section):
    """Keys of a top-level mapping (e.g. stringData) of a one-document YAML file."""
    keys, inside = [], False
    for line in yaml_lines(path):
        if re.match(rf"^{section}:\s*$", line):
            inside = True
        elif inside and (m := re.match(r"^  ([A-Za-z0-9_.-]+):", line)):
            keys.append(m.group(1))
        elif inside and line.strip() and not line.startswith(" "):
            inside = False
    return keys


base_secret_keys = keys_under(K8S / "secret.yaml", "stringData")
overlay_secret = OVERLAY / "secrets.yaml"
overlay_secret_keys = keys_under(overlay_secret, "stringData") if overlay_secret.is_file() else []
for key in base_secret_keys:
    if key not in overlay_secret_keys:
        problems.append(f"{rel(OVERLAY)}: secret value {key} of infra/k8s/secret.yaml is not overridden (its sample would reach production)")

kustomization = OVERLAY / "kustomization.yaml"
if kustomization.is_file():
    text = "\n".join(yaml_lines(kustomization))
    listed = set(re.findall(r"^\s*-\s*\.\./\.\./([^\s/]+\.yaml)\s*$", text, re.M))
    for manifest in sorted(K8S.glob("*.yaml")):
        if manifest.name != "kustomization.yaml" and manifest.name not in listed:
            problems.append(f"{rel(kustomization)}: base manifest {manifest.name} is not in resources")
    for name in sorted(listed):
        if not (K8S / name).is_file():
            problems.append(f"{rel(kustomization)}: resources lists ../../{name}, which does not exist")

    def default_of(var):
        body = env_variables.get(var)
        return None if body is None else unquote(body.get("default"))

    namespace = re.search(r"^namespace:\s*(\S+)\s*$", text, re.M)
    want_namespace = default_of("kubernetes_namespace")
    if namespace is None or namespace.group(1) != want_namespace:
        problems.append(f"{rel(kustomization)}: namespace should be {want_namespace!r}, the kubernetes_namespace the application role trusts")
    want_account = default_of("service_account_name")
    for value in re.findall(r"path: /spec/template/spec/serviceAccountName\s*\n\s*value:\s*(\S+)", text):
        if value != want_account:
            problems.append(f"{rel(kustomization)}: serviceAccountName {value} should be {want_account!r} (service_account_name)")
    account = OVERLAY / "service-account.yaml"
    if not account.is_file():
        problems.append(f"{rel(OVERLAY)}: no service-account.yaml")
    else:
        account_text = "\n".join(yaml_lines(account))
        name = re.search(r"^  name:\s*(\S+)\s*$", account_text, re.M)
        if name is None or name.group(1) != want_account:
            problems.append(f"{rel(account)}: the ServiceAccount should be named {want_account!r} (service_account_name)")
        if "eks.amazonaws.com/role-arn" not in account_text:
            problems.append(f"{rel(account)}: no eks.amazonaws.com/role-arn annotation")

if len(sys.argv) == 3 and sys.argv[1] == "--example-outputs":
    example = {}
    for name, body in env_outputs.items():
        kind, value = EXAMPLE_VALUES.get(name, ("string", f"example-{name}"))
        example[name] = {"sensitive": unquote(body.get("sensitive")) is True, "type": kind, "value": value}
    pathlib.Path(sys.argv[2]).write_text(json.dumps(example, indent=2) + "\n", encoding="utf-8")
elif len(sys.argv) > 1:
    sys.exit("usage: check_terraform.py [--example-outputs FILE]")

problems = list(dict.fromkeys(problems))
for p in problems:
    print(p)
print(f"terraform: {len(tf_files)} files, {len(placeholders)} overlay placeholders, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
