#!/usr/bin/env bash
# Recovery from outages: a shop on PostgreSQL with Redis and the Kafka relay, under a load of
# stock receipts, loses each dependency in turn (PostgreSQL 5 s, Redis 5 s and back empty,
# the broker 30 s) and the bench prints, for each, the time from its return to the first
# acknowledged command and to a caught-up pipeline.
#
# PostgreSQL is the restartable cluster the test command provisions (port 5433, cluster
# "<version> outage"; run infra/scripts/test.sh once); Redis and tansu are this script's own.
#   cargo build --release -p shop --features kafka -p bench && bench/outages.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHOP=${SHOP:-target/release/shop}
BENCH=${BENCH:-target/release/bench}
PG_PORT=${PG_PORT:-5433}
CLUSTER=${CLUSTER:-"$(ls /etc/postgresql | sort -V | tail -n 1) outage"}
TANSU=${SHOP_TANSU_BIN:-${SHOP_CACHE_DIR:-$HOME/.cache/shop}/tansu/bin/tansu}

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
kafka_port=$(free_port)
mkdir -p "$work/tansu"

wait_port="until (exec 3<>/dev/tcp/127.0.0.1/\$port) 2>/dev/null; do sleep 0.05; done"
start_redis="redis-server --bind 127.0.0.1 --port $redis_port --save '' --appendonly no --daemonize yes \
--pidfile $work/redis.pid --logfile $work/redis.log && port=$redis_port && $wait_port"
stop_redis="kill -9 \$(cat $work/redis.pid) && rm -f $work/redis.pid"
start_broker="cd $work/tansu && { nohup $TANSU broker --listener-url tcp://127.0.0.1:$kafka_port \
--advertised-listener-url tcp://127.0.0.1:$kafka_port --storage-engine sqlite://tansu.db >>$work/tansu.log 2>&1 & \
echo \$! > $work/tansu.pid; } && port=$kafka_port && $wait_port"
stop_broker="kill -9 \$(cat $work/tansu.pid)"
start_postgres="pg_ctlcluster --skip-systemctl-redirect $CLUSTER start"
stop_postgres="pg_ctlcluster --skip-systemctl-redirect -m fast $CLUSTER stop"

cleanup() {
    bash -c "$stop_redis" 2>/dev/null || true
    bash -c "$stop_broker" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
bash -c "$start_redis"
bash -c "$start_broker"
pg_isready -h 127.0.0.1 -p "$PG_PORT" -q || bash -c "$start_postgres"

"$BENCH" --shop-bin "$SHOP" --admin-url "postgres://postgres:postgres@127.0.0.1:$PG_PORT/postgres" \
    --redis "redis://127.0.0.1:$redis_port" --kafka "127.0.0.1:$kafka_port" \
    --outage "postgres::5::$stop_postgres::$start_postgres" \
    --outage "redis::5::$stop_redis::$start_redis" \
    --outage "broker::30::$stop_broker::$start_broker"
