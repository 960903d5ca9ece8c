#!/usr/bin/env bash
# Rebuild throughput: writes 1,000,000 events straight into a fresh event store (100,000
# products created, repriced and published; 700,000 stock receipts over 10,000 SKUs), then
# times `shop replay --all` (the SQL read models and the search index) on PostgreSQL and on the
# embedded SQLite file.
#   cargo build --release -p shop && bench/rebuild.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SHOP=${SHOP:-target/release/shop}
PG=${PG:-postgres://postgres:postgres@127.0.0.1:5432}
export SHOP_JWT_SECRET=rebuild-bench-secret-rebuild-bench-secret
export SHOP_LOG=warn

product_id() { echo "printf('%08x-0000-7000-8000-%012x', $1, $1)"; }

events_sql() { # $1: sqlite|postgres
    local uuid json_obj
    if [ "$1" = postgres ]; then
        uuid="lpad(to_hex(n), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(n), 12, '0')"
        json_obj=jsonb_build_object
        series="generate_series"
    else
        uuid="printf('%08x-0000-7000-8000-%012x', n, n)"
        json_obj=json_object
    fi
    local rows_products="SELECT n FROM $( [ "$1" = postgres ] && echo "generate_series(1, 100000) AS g(n)" || echo "c100k" )"
    cat <<SQL
$( [ "$1" = sqlite ] && echo "WITH RECURSIVE c100k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c100k WHERE n < 100000)" )
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'product', 'default:' || $uuid, 1, 'created', '1',
       $json_obj('created', $json_obj('tenant', 'default', 'product_id', $uuid, 'sku', 'SKU-' || n, 'name', 'Product ' || n,
         'description', 'A product', 'category', 'bench/items', 'price', $json_obj('amount', 1000, 'currency', 'EUR'), 'attributes', $json_obj())), '{}'
FROM ($rows_products) p;
$( [ "$1" = sqlite ] && echo "WITH RECURSIVE c100k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c100k WHERE n < 100000)" )
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'product', 'default:' || $uuid, 2, 'price_changed', '1',
       $json_obj('price_changed', $json_obj('previous', $json_obj('amount', 1000, 'currency', 'EUR'), 'price', $json_obj('amount', 900, 'currency', 'EUR'))), '{}'
FROM ($rows_products) p;
$( [ "$1" = sqlite ] && echo "WITH RECURSIVE c100k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c100k WHERE n < 100000)" )
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'product', 'default:' || $uuid, 3, 'published', '1', '"published"', '{}'
FROM ($rows_products) p;
$( [ "$1" = sqlite ] && echo "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 10000), q(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM q WHERE n < 70)" )
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'stock', 'default:SKU-' || s.n, q.n, 'received', '1',
       $json_obj('received', $json_obj('tenant', 'default', 'sku', 'SKU-' || s.n, 'quantity', 1, 'on_hand', q.n, 'available', q.n)), '{}'
FROM $( [ "$1" = postgres ] && echo "generate_series(1, 10000) AS s(n), generate_series(1, 70) AS q(n)" || echo "s, q" )
ORDER BY q.n, s.n;
SQL
}

echo "== PostgreSQL"
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS shop_rebuild_bench" -c "CREATE DATABASE shop_rebuild_bench"
export DATABASE_URL="$PG/shop_rebuild_bench"
search_dir=$(mktemp -d)
export SHOP_SEARCH_DIR="$search_dir"
"$SHOP" migrate
events_sql postgres | psql "$DATABASE_URL" -q -v ON_ERROR_STOP=1
echo "events: $(psql "$DATABASE_URL" -Atc 'SELECT count(*) FROM events')"
"$SHOP" replay --all
psql "$PG/postgres" -qc "DROP DATABASE shop_rebuild_bench"
rm -rf "$search_dir"
unset DATABASE_URL SHOP_SEARCH_DIR

echo "== SQLite (embedded)"
dir=$(mktemp -d)
export SHOP_DATA_DIR="$dir"
"$SHOP" migrate
events_sql sqlite | sqlite3 "$dir/shop.db"
echo "events: $(sqlite3 "$dir/shop.db" 'SELECT count(*) FROM events')"
"$SHOP" replay --all
rm -rf "$dir"
