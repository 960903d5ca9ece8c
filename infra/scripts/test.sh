#!/usr/bin/env bash
# The whole test suite. Starts PostgreSQL, Redis and a Kafka-protocol broker (tansu) on
# 127.0.0.1 when they are not running, installing them first on a fresh Debian machine
# (apt-get; tansu from crates.io into ~/.cache/shop), then runs every test of the workspace. Tests that need a server fail loudly under CI=true when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
        return
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        log "installing PostgreSQL"
        apt_install postgresql postgresql-client
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
        pg_createcluster "$version" main >/dev/null
    fi
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 60); do
        pg_isready -h 127.0.0.1 -p 5432 -q && break
        sleep 0.5
    done
    pg_isready -h 127.0.0.1 -p 5432 -q || { log "PostgreSQL did not start"; exit 1; }
    # A fresh cluster asks TCP clients for a password: give the superuser one the tests know.
    su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        return
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        log "installing Redis"
        apt_install redis-server
    fi
    log "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/shop-test.log
    for _ in $(seq 1 40); do
        redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break
        sleep 0.25
    done
    redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "Redis did not start"; exit 1; }
}

# rdkafka builds librdkafka from source (Debian's is too old to link against), with OpenSSL.
ensure_build_deps() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || missing+=(libcurl4-openssl-dev)
    dpkg -s zlib1g-dev >/dev/null 2>&1 || missing+=(zlib1g-dev)
    # librdkafka's TLS and SASL/SCRAM (MSK) link against OpenSSL.
    dpkg -s libssl-dev >/dev/null 2>&1 || missing+=(libssl-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing build dependencies: ${missing[*]}"
        apt_install "${missing[@]}"
    fi
}

# A Kafka-protocol broker: tansu (crates.io), built once into a cache and started with durable
# SQLite storage (its in-memory storage loses messages when a consumer resumes mid-batch).
ensure_kafka() {
    if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
        return
    fi
    local cache="${SHOP_CACHE_DIR:-$HOME/.cache/shop}"
    local tansu="$cache/tansu/bin/tansu"
    if [ ! -x "$tansu" ]; then
        log "installing tansu into $cache (once; takes minutes)"
        cargo install --locked tansu --features libsql --root "$cache/tansu"
    fi
    mkdir -p "$cache/tansu-data"
    log "starting tansu on 127.0.0.1:9092"
    (cd "$cache/tansu-data" && nohup "$tansu" broker --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine sqlite://tansu.db >tansu.log 2>&1 &)
    for _ in $(seq 1 60); do
        (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && return
        sleep 0.5
    done
    log "tansu did not start"
    exit 1
}

# Python tools from PyPI in virtualenvs of the cache: kubernetes-validate (the manifests
# against the Kubernetes schemas), PyYAML (the compose file and the alert rules), schemathesis
# (the HTTP API against its OpenAPI document), python-hcl2 (the Terraform files), and
# confluent-kafka with jsonschema (the example consumer in examples/daily-sales); checkov in
# one of its own (its fork of the HCL parser installs into the same `hcl2` package).
ensure_python_tools() {
    local cache="${SHOP_CACHE_DIR:-$HOME/.cache/shop}"
    VENV="$cache/venv"
    CHECKOV_VENV="$cache/venv-checkov"
    python_venv "$VENV" kubernetes-validate==1.37.0 pyyaml==6.0.4 schemathesis==4.32.5 python-hcl2==8.1.4 \
        confluent-kafka==2.16.1 jsonschema==4.26.0
    # The example consumers' Python (examples/daily-sales).
    export SHOP_EXAMPLES_PYTHON="$VENV/bin/python"
    python_venv "$CHECKOV_VENV" checkov==3.3.30
}

# A virtualenv at $1 holding exactly the pinned packages $2…; made or completed once.
python_venv() {
    local venv=$1
    shift
    if ! "$venv/bin/python" - "$@" 2>/dev/null <<'PY'
import importlib.metadata as m, sys
sys.exit(0 if all(m.version(p.split("==")[0]) == p.split("==")[1] for p in sys.argv[1:]) else 1)
PY
    then
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            log "installing python3-venv"
            apt_install python3-venv python3-pip
            python3 -m venv "$venv"
        fi
        log "installing $* into $venv"
        "$venv/bin/pip" install -q "$@"
    fi
}

# The AsyncAPI initiative's parser (npm, pinned by infra/scripts/asyncapi/package-lock.json),
# installed once into the cache: it checks the topic contract, worker-kit/contract/asyncapi.json.
ensure_asyncapi_parser() {
    local cache="${SHOP_CACHE_DIR:-$HOME/.cache/shop}" dir
    dir="$cache/asyncapi-$(sha256sum infra/scripts/asyncapi/package-lock.json | cut -c1-12)"
    ASYNCAPI_MODULES="$dir/node_modules"
    if [ ! -f "$dir/installed" ]; then
        log "installing @asyncapi/parser from npm into $dir"
        rm -rf "$dir"
        mkdir -p "$dir"
        cp infra/scripts/asyncapi/package.json infra/scripts/asyncapi/package-lock.json "$dir/"
        (cd "$dir" && npm ci --silent --no-audit --no-fund >/dev/null) || { log "cannot install @asyncapi/parser"; exit 1; }
        touch "$dir/installed"
    fi
}

# promtool, from Debian's prometheus package: the alert rules and their unit tests.
ensure_promtool() {
    if ! command -v promtool >/dev/null 2>&1; then
        log "installing prometheus (for promtool)"
        apt_install prometheus
    fi
}

# Deployment files: every Kubernetes manifest against the real schemas, the compose file's
# wiring and the Dockerfile (no Docker engine runs here to try them).
check_deployment_files() {
    log "validating infra/k8s and docker-compose.yml"
    "$VENV/bin/kubernetes-validate" --kubernetes-version 1.37.0 --strict --quiet infra/k8s/*.yaml
    "$VENV/bin/python" infra/scripts/check_deploy.py
    log "checking the alert rules and their tests (promtool)"
    PYTHON="$VENV/bin/python" infra/scripts/check_alerts.sh
    log "checking the topic contract (worker-kit/contract/asyncapi.json) with @asyncapi/parser"
    NODE_PATH="$ASYNCAPI_MODULES" node infra/scripts/asyncapi/check.cjs worker-kit/contract/asyncapi.json
    log "checking infra/terraform (python-hcl2, checkov) and the aws overlay"
    PYTHON="$VENV/bin/python" CHECKOV="$CHECKOV_VENV/bin/checkov" KUBERNETES_VALIDATE="$VENV/bin/kubernetes-validate" \
        infra/scripts/check_terraform.sh
}

# The Swagger UI files in shop/assets/swagger-ui are swagger-ui-dist from npm, unchanged.
check_vendored_assets() {
    local version=5.17.14 dir
    dir=$(mktemp -d)
    if ! (cd "$dir" && npm pack --silent "swagger-ui-dist@$version" >/dev/null 2>&1 && tar xzf "swagger-ui-dist-$version.tgz"); then
        log "cannot fetch swagger-ui-dist@$version from npm"
        rm -rf "$dir"
        return 1
    fi
    for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
        cmp -s "$dir/package/$f" "shop/assets/swagger-ui/$f" || { log "shop/assets/swagger-ui/$f differs from swagger-ui-dist@$version"; rm -rf "$dir"; return 1; }
    done
    rm -rf "$dir"
    log "vendored swagger-ui-dist@$version matches npm"
}

# The pages are Preact with htm, vendored from npm (htm's standalone build, which carries
# Preact): shop/assets/web/vendor holds that file and both licences, unchanged.
check_vendored_web() {
    local dir ok=0
    dir=$(mktemp -d)
    if ! (cd "$dir" && npm pack --silent htm@3.1.1 preact@10.28.2 >/dev/null 2>&1 \
        && mkdir htm preact && tar xzf htm-3.1.1.tgz -C htm && tar xzf preact-10.28.2.tgz -C preact); then
        log "cannot fetch htm@3.1.1 and preact@10.28.2 from npm"
        rm -rf "$dir"
        return 1
    fi
    cmp -s "$dir/htm/package/preact/standalone.module.js" shop/assets/web/vendor/preact-htm.module.js || ok=1
    cmp -s "$dir/htm/package/LICENSE" shop/assets/web/vendor/LICENSE-htm || ok=1
    cmp -s "$dir/preact/package/LICENSE" shop/assets/web/vendor/LICENSE-preact || ok=1
    rm -rf "$dir"
    [ "$ok" -eq 0 ] || { log "shop/assets/web/vendor differs from htm@3.1.1 / preact@10.28.2"; return 1; }
    log "vendored htm@3.1.1 (with Preact) matches npm"
}

# The browser tests: Debian's chromium and chromedriver, and axe-core from npm (injected into
# each page for the accessibility checks).
ensure_browser() {
    local missing=()
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    local cache="${SHOP_CACHE_DIR:-$HOME/.cache/shop}" version=4.14.1 dir
    local axe="$cache/axe-core-$version/axe.min.js"
    if [ ! -f "$axe" ]; then
        log "fetching axe-core@$version from npm"
        dir=$(mktemp -d)
        (cd "$dir" && npm pack --silent "axe-core@$version" >/dev/null && tar xzf "axe-core-$version.tgz") \
            || { log "cannot fetch axe-core@$version"; rm -rf "$dir"; exit 1; }
        mkdir -p "$cache/axe-core-$version"
        cp "$dir/package/axe.min.js" "$axe"
        rm -rf "$dir"
    fi
    export SHOP_AXE_JS="$axe"
    SHOP_CHROMIUM="$(command -v chromium)"
    SHOP_CHROMEDRIVER="$(command -v chromedriver)"
    export SHOP_CHROMIUM SHOP_CHROMEDRIVER
}

# A second PostgreSQL cluster (port 5433) of the tests' own: the outage tests stop and start it
# under load, which they cannot do to the shared one on 5432.
ensure_outage_postgres() {
    local version port=5433
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    if ! pg_lsclusters -h | awk '{ print $2 }' | grep -qx outage; then
        log "creating the PostgreSQL cluster 'outage' on port $port"
        pg_createcluster -p "$port" "$version" outage >/dev/null
    fi
    if ! pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null; then
        pg_ctlcluster --skip-systemctl-redirect "$version" outage start
        for _ in $(seq 1 60); do
            pg_isready -h 127.0.0.1 -p "$port" -q && break
            sleep 0.5
        done
        pg_isready -h 127.0.0.1 -p "$port" -q || { log "PostgreSQL 'outage' did not start"; exit 1; }
    fi
    su postgres -c "psql -q -p $port -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    export SHOP_TEST_PG_OUTAGE_URL="postgres://postgres:postgres@127.0.0.1:$port/postgres"
    export SHOP_TEST_PG_OUTAGE_CLUSTER="$version outage"
}

check_vendored_assets
check_vendored_web
ensure_postgres
ensure_outage_postgres
ensure_redis
ensure_build_deps
ensure_kafka
ensure_python_tools
ensure_promtool
ensure_asyncapi_parser
ensure_browser
check_deployment_files

export SHOP_TEST_PG_URL="${SHOP_TEST_PG_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
export SHOP_TEST_REDIS_URL="${SHOP_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
export SHOP_TANSU_BIN="${SHOP_TANSU_BIN:-${SHOP_CACHE_DIR:-$HOME/.cache/shop}/tansu/bin/tansu}"

# Databases left behind by earlier (killed) runs.
drop_test_databases() {
    PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -d postgres -Atqc \
        "SELECT datname FROM pg_database WHERE datname LIKE 'shop_test_%'" 2>/dev/null |
        while read -r db; do
            PGPASSWORD=postgres dropdb -h 127.0.0.1 -U postgres --if-exists "$db" 2>/dev/null || true
        done
}
drop_test_databases

# A from-scratch build needs a few GiB; say so up front rather than fail deep inside rustc.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
free_kib=$(df -Pk "$target_dir" | awk 'NR == 2 { print $4 }')
log "free disk for $target_dir: $((free_kib / 1024)) MiB"
if [ "$free_kib" -lt $((3 * 1024 * 1024)) ]; then
    log "warning: under 3 GiB free; a from-scratch build may run out of space"
fi
# Incremental state only pays off when editing; a one-shot run keeps the target dir smaller.
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi

log "checking the formatting (rustfmt.toml)"
cargo fmt --all --check

log "running the test suite"
output=$(mktemp)
trap 'rm -f "$output"' EXIT
set +e
cargo test --workspace --all-features --locked --no-fail-fast "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
# The API against its own OpenAPI document, on the binary the tests just built.
log "running schemathesis against the embedded server"
ST="$VENV/bin/st" infra/scripts/schemathesis.sh
schemathesis=$?
[ "$schemathesis" -eq 0 ] || status=1
set -e
drop_test_databases
# One closing line over every test binary and doc-test run.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$output"
if [ "$schemathesis" -eq 0 ]; then echo "schemathesis: passed"; else echo "schemathesis: FAILED"; fi
exit "$status"
