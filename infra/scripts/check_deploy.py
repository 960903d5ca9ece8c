#!/usr/bin/env python3
"""Checks the deployment files that cannot run here (no Docker engine): the compose file parses
and is wired as the README says, and the Dockerfile keeps its promises. Kubernetes manifests are
validated separately, against the real schemas, by kubernetes-validate (see test.sh).

Exits 1 with one line per problem."""
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

for p in problems:
    print(p)
print(f"deployment files: {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
