#!/usr/bin/env python3
"""Checks the deployment files that cannot run here (no Docker engine): the compose file parses
and is wired as the README says, the Dockerfile keeps its promises, and the monitoring of compose
holds together (Prometheus scrapes every shop role and loads its rules, Grafana gets its data
source and dashboards, every dashboard parses and queries shop metrics). Kubernetes manifests are
validated separately, against the real schemas, by kubernetes-validate (see test.sh).

Exits 1 with one line per problem."""
import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = {"migrate": "migrate", "command-api": "command-api", "query-api": "query-api", "projections": "project",
         "relay": "relay", "saga": "saga", "notifier": "notify"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
problems = []

compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
services = compose.get("services") or {}
for infra, image in [("postgres", "postgres:"), ("kafka", "apache/kafka:"), ("redis", "redis:")]:
    if not str(services.get(infra, {}).get("image", "")).startswith(image):
        problems.append(f"compose: service {infra} should run the official {image} image")
kafka_env = services.get("kafka", {}).get("environment", {})
if "controller" not in str(kafka_env.get("KAFKA_PROCESS_ROLES", "")):
    problems.append("compose: kafka should run in KRaft mode (KAFKA_PROCESS_ROLES with controller)")
for name, spec in services.items():
    for dep, how in (spec.get("depends_on") or {}).items():
        if dep not in services:
            problems.append(f"compose: {name} depends on unknown service {dep}")
        elif how.get("condition") not in CONDITIONS:
            problems.append(f"compose: {name} -> {dep}: bad condition {how.get('condition')}")
        elif how["condition"] == "service_healthy" and "healthcheck" not in services[dep] and "build" not in services[dep]:
            problems.append(f"compose: {name} waits for {dep} to be healthy, but {dep} has no healthcheck")
    disabled = (spec.get("healthcheck") or {}).get("disable")
    if name != "migrate" and disabled:
        problems.append(f"compose: {name} runs for good but has its healthcheck disabled")
    if "build" not in spec and "healthcheck" not in spec:
        problems.append(f"compose: {name} has no healthcheck")
for name, command in ROLES.items():
    spec = services.get(name)
    if spec is None:
        problems.append(f"compose: no service for role {name}")
        continue
    if spec.get("command") != [command]:
        problems.append(f"compose: {name} should run `shop {command}`")
    if name != "migrate":
        after = (spec.get("depends_on") or {}).get("migrate", {}).get("condition")
        if after != "service_completed_successfully":
            problems.append(f"compose: {name} should start after the migration completed")
readme = (ROOT / "README.md").read_text()
for name, spec in services.items():
    for port in spec.get("ports") or []:
        parts = str(port).split(":")
        # `127.0.0.1:5432:5432` publishes on loopback only; the host port is the middle part.
        if len(parts) == 3 and parts[0] != "127.0.0.1":
            problems.append(f"compose: {name} publishes on {parts[0]}; servers bind 127.0.0.1 only")
        host = parts[-2]
        if not re.search(rf"localhost:{host}\b|\b{host}\b.*{name}|{name}.*\b{host}\b", readme):
            problems.append(f"compose: port {host} of {name} is not documented in README.md")

dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
for what, pattern in [("a cargo-chef dependency layer", r"cargo chef cook"), ("a non-root USER", r"^USER (?!root)\S+"),
                      ("a HEALTHCHECK", r"^HEALTHCHECK "), ("a slim runtime base", r"^FROM \S+-slim"),
                      ("the role as the command", r'^ENTRYPOINT \["shop"\]')]:
    if not re.search(pattern, dockerfile, re.M):
        problems.append(f"Dockerfile: missing {what}")

for name in ("postgres", "redis", "mailpit"):
    for port in (services.get(name) or {}).get("ports") or []:
        if not str(port).startswith("127.0.0.1:"):
            problems.append(f"compose: {name} publishes {port} beyond 127.0.0.1")
if "${SHOP_JWT_SECRET:?" not in (ROOT / "docker-compose.yml").read_text():
    problems.append("compose: SHOP_JWT_SECRET must be required (${SHOP_JWT_SECRET:?...}), never defaulted")

# Monitoring: Prometheus and Grafana run on pinned images, publish on loopback only and mount
# (read-only) files that exist in the repository.
SHOP_ROLES = [name for name in ROLES if name != "migrate"]


def bind_mounts(spec):
    """(source relative to the repository, target, read-only) of each bind mount of a service."""
    out = []
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                out.append((str(volume.get("source", "")), str(volume.get("target", "")), bool(volume.get("read_only"))))
            continue
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0].startswith((".", "/")):
            out.append((parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
    return out


def in_repo(source):
    """The repository-relative POSIX path of a bind source, or None when it lies outside."""
    try:
        return (ROOT / source).resolve().relative_to(ROOT.resolve()).as_posix()
    except ValueError:
        return None


def environment(spec):
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(str(item).partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


mounted = {}  # service -> {repository path: container path}
for name, image in [("prometheus", "prom/prometheus:"), ("grafana", "grafana/grafana:")]:
    spec = services.get(name)
    if spec is None:
        problems.append(f"compose: no {name} service")
        continue
    tag = str(spec.get("image", ""))
    if not tag.startswith(image) or tag.split(":", 1)[1] in ("", "latest"):
        problems.append(f"compose: {name} should run {image}<pinned version>, not {tag or 'no image'}")
    ports = spec.get("ports") or []
    if not ports:
        problems.append(f"compose: {name} publishes no port")
    for port in ports:
        if not str(port).startswith("127.0.0.1:") or len(str(port).split(":")) != 3:
            problems.append(f"compose: {name} publishes {port}; it should listen on 127.0.0.1 only")
    if not ((spec.get("healthcheck") or {}).get("test")):
        problems.append(f"compose: {name} has no healthcheck test")
    mounted[name] = {}
    for source, target, read_only in bind_mounts(spec):
        path = in_repo(source)
        if path is None or not (ROOT / path).exists():
            problems.append(f"compose: {name} mounts {source}, which is not in the repository")
            continue
        if not read_only:
            problems.append(f"compose: {name} should mount {source} read-only (:ro)")
        mounted[name][path] = target

prometheus_spec = services.get("prometheus") or {}
prometheus_mounts = mounted.get("prometheus", {})
for name in SHOP_ROLES:
    if name in services and name not in (prometheus_spec.get("depends_on") or {}):
        problems.append(f"compose: prometheus should depend on {name}")
prometheus_file = ROOT / "infra" / "prometheus" / "prometheus.yml"
if not prometheus_file.exists():
    problems.append("prometheus: infra/prometheus/prometheus.yml is missing")
    prometheus = {}
else:
    prometheus = yaml.safe_load(prometheus_file.read_text()) or {}
    if prometheus_mounts.get("infra/prometheus/prometheus.yml") != "/etc/prometheus/prometheus.yml":
        problems.append("compose: prometheus should mount infra/prometheus/prometheus.yml at /etc/prometheus/prometheus.yml")
rule_files = prometheus.get("rule_files") or []
if prometheus and not rule_files:
    problems.append("prometheus: no rule_files (the alerts of infra/prometheus/alerts.yml)")
for rule_file in rule_files:
    if rule_file not in prometheus_mounts.values():
        problems.append(f"prometheus: rule file {rule_file} is not mounted into the prometheus service")
if rule_files and "infra/prometheus/alerts.yml" not in prometheus_mounts:
    problems.append("compose: prometheus should mount infra/prometheus/alerts.yml")
jobs = {}
for job in prometheus.get("scrape_configs") or []:
    targets = {target for static in job.get("static_configs") or [] for target in static.get("targets") or []}
    jobs[job.get("job_name")] = (job.get("metrics_path", "/metrics"), targets)
    for target in targets:
        if str(target).rsplit(":", 1)[0] not in services:
            problems.append(f"prometheus: job {job.get('job_name')} scrapes {target}, not a compose service")
for name in SHOP_ROLES:
    if name not in services:
        continue
    path, targets = jobs.get(name, (None, set()))
    if f"{name}:8080" not in targets or path != "/metrics":
        problems.append(f"prometheus: no job {name} scraping {name}:8080/metrics")

grafana_spec = services.get("grafana") or {}
grafana_mounts = mounted.get("grafana", {})
grafana_env = environment(grafana_spec)
if grafana_spec:
    if not grafana_env.get("GF_SECURITY_ADMIN_PASSWORD", "").startswith("${GRAFANA_ADMIN_PASSWORD:?"):
        problems.append("compose: grafana's admin password must be required (${GRAFANA_ADMIN_PASSWORD:?...}), never defaulted")
    if grafana_env.get("GF_AUTH_ANONYMOUS_ENABLED", "false").lower() != "false":
        problems.append("compose: grafana should keep anonymous access off")
    if grafana_mounts.get("infra/grafana/provisioning") != "/etc/grafana/provisioning":
        problems.append("compose: grafana should mount infra/grafana/provisioning at /etc/grafana/provisioning")
provisioning = ROOT / "infra" / "grafana" / "provisioning"
datasource_uids = set()
for path in sorted((provisioning / "datasources").glob("*.y*ml")):
    for source in (yaml.safe_load(path.read_text()) or {}).get("datasources") or []:
        datasource_uids.add(source.get("uid"))
        host = re.sub(r"^\w+://", "", str(source.get("url", ""))).split("/")[0].rsplit(":", 1)[0]
        if host not in services:
            problems.append(f"grafana: data source {source.get('name')} points at {source.get('url')}, not a compose service")
if not datasource_uids - {None}:
    problems.append("grafana: no data source with a uid in infra/grafana/provisioning/datasources")
dashboard_paths = set()
for path in sorted((provisioning / "dashboards").glob("*.y*ml")):
    for provider in (yaml.safe_load(path.read_text()) or {}).get("providers") or []:
        folder = (provider.get("options") or {}).get("path")
        dashboard_paths.add(folder)
        if grafana_spec and folder not in grafana_mounts.values():
            problems.append(f"grafana: dashboard provider {provider.get('name')} loads {folder}, which nothing mounts")
if grafana_spec and grafana_mounts.get("infra/grafana/dashboards") not in dashboard_paths:
    problems.append("compose: grafana should mount infra/grafana/dashboards where a dashboard provider loads them")

# Dashboards: each parses, has its own uid, and every panel queries something through the
# provisioned data source (or the dashboard's `datasource` variable) with shop metrics only.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
                "bool", "inf", "nan"}


def metric_names(expr):
    """Metric names an expression selects (functions, keywords, labels and durations left out)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    expr = re.sub(r"\[[^\]]*\]|\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", expr):
        if not expr[match.end():].lstrip().startswith("(") and match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def variable_metrics(query):
    label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
    if label_values:
        return metric_names(label_values.group(1))
    if re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", query):
        return set()
    inner = re.fullmatch(r"\s*query_result\((.*)\)\s*", query)
    return metric_names(inner.group(1) if inner else query)


def panels(items):
    for panel in items or []:
        yield panel
        yield from panels(panel.get("panels"))


def datasource_refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


uids = {}
dashboards = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))
if not dashboards:
    problems.append("grafana: no dashboards in infra/grafana/dashboards")
for path in dashboards:
    where = f"dashboard {path.name}"
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        problems.append(f"{where}: not JSON ({error})")
        continue
    uid = dashboard.get("uid")
    if not uid:
        problems.append(f"{where}: no uid")
    elif uid in uids:
        problems.append(f"{where}: uid {uid} is also the uid of {uids[uid]}")
    else:
        uids[uid] = path.name
    variables = (dashboard.get("templating") or {}).get("list") or []
    allowed = set(datasource_uids)
    for variable in variables:
        if variable.get("type") == "datasource":
            if variable.get("query") != "prometheus":
                problems.append(f"{where}: data source variable {variable.get('name')} should list prometheus sources")
            allowed |= {f"${variable.get('name')}", f"${{{variable.get('name')}}}"}
    for ref in datasource_refs(dashboard):
        uid_ref = ref.get("uid") if isinstance(ref, dict) else ref
        if uid_ref not in allowed:
            problems.append(f"{where}: data source {uid_ref!r} is neither a provisioned uid nor a data source variable")
    exprs = []
    for variable in variables:
        if variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if not str(query or "").strip():
                problems.append(f"{where}: variable {variable.get('name')} has no query")
            else:
                exprs.append((f"variable {variable.get('name')}", variable_metrics(str(query))))
    for panel in panels(dashboard.get("panels")):
        if panel.get("type") in ("row", "text"):
            continue
        title = panel.get("title") or panel.get("id")
        if not panel.get("targets"):
            problems.append(f"{where}: panel {title!r} has no targets")
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{where}: panel {title!r} has a target without an expr")
            else:
                exprs.append((f"panel {title!r}", metric_names(expr)))
    for what, names in exprs:
        for name in sorted(names):
            if name != "up" and not name.startswith("shop_"):
                problems.append(f"{where}: {what} queries {name}, which the shop does not export")

for p in problems:
    print(p)
print(f"deployment files: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
