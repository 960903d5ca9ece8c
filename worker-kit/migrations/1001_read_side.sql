-- Every durable table of the read side: checkpoints, dead letters and Kafka offsets of the
-- workers, the read models, the order saga, the notifier and the webhooks. Earlier versions
-- created these tables at run time with the same definitions, so each statement adopts a
-- table that is already there. One SQL text for both backends: the columns are TEXT and
-- BIGINT only, so the read side's queries are the same on both.

CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name TEXT PRIMARY KEY,
    tx BIGINT NOT NULL,
    position BIGINT NOT NULL,
    events BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

-- Offsets of an external source (Kafka) a projection has applied, stored with its read model.
CREATE TABLE IF NOT EXISTS projection_offsets (
    projection TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (projection, topic, partition_id)
);

-- Events a projection could not apply, and the later events of the same aggregate held back
-- behind them so that its order is kept.
CREATE TABLE IF NOT EXISTS projection_dead_letters (
    id TEXT PRIMARY KEY,
    projection TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    tx BIGINT NOT NULL,
    position BIGINT NOT NULL,
    error TEXT NOT NULL,
    parked_at_ms BIGINT NOT NULL
);

-- Read models. A rebuild (`shop replay`) copies each table's definition into a shadow, fills
-- it and swaps it in: these statements are the only definition.
CREATE TABLE IF NOT EXISTS rm_products (
    tenant TEXT NOT NULL,
    product_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    price_amount BIGINT NOT NULL,
    price_currency TEXT NOT NULL,
    attributes TEXT NOT NULL,
    published BIGINT NOT NULL,
    featured BIGINT NOT NULL,
    discontinued BIGINT NOT NULL,
    created_position BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, product_id)
);
CREATE INDEX IF NOT EXISTS ix_products_category ON rm_products (tenant, category);
CREATE INDEX IF NOT EXISTS ix_products_name ON rm_products (tenant, name_key, product_id);
CREATE INDEX IF NOT EXISTS ix_products_price ON rm_products (tenant, price_amount, product_id);

CREATE TABLE IF NOT EXISTS rm_stock (
    tenant TEXT NOT NULL,
    sku TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    available BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, sku)
);

CREATE TABLE IF NOT EXISTS rm_users (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    name TEXT NOT NULL,
    roles TEXT NOT NULL,
    active BIGINT NOT NULL,
    registered_at TEXT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id)
);

CREATE TABLE IF NOT EXISTS rm_orders (
    tenant TEXT NOT NULL,
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    status TEXT NOT NULL,
    cancel_reason TEXT,
    currency TEXT NOT NULL,
    subtotal BIGINT NOT NULL,
    tax BIGINT NOT NULL,
    shipping BIGINT NOT NULL,
    total BIGINT NOT NULL,
    refunded BIGINT NOT NULL,
    payment_method TEXT NOT NULL,
    payment_status TEXT,
    payment_amount BIGINT,
    payment_refunded BIGINT NOT NULL,
    invoice_number BIGINT,
    invoiced_at_ms BIGINT,
    carrier TEXT,
    tracking_number TEXT,
    shipping_address TEXT NOT NULL,
    lines TEXT NOT NULL,
    placed_at_ms BIGINT NOT NULL,
    placed_day TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (tenant, order_id)
);
CREATE INDEX IF NOT EXISTS ix_orders_customer ON rm_orders (tenant, customer, placed_at_ms, order_id);
CREATE INDEX IF NOT EXISTS ix_orders_status ON rm_orders (tenant, status);
CREATE INDEX IF NOT EXISTS ix_orders_placed ON rm_orders (tenant, placed_at_ms, order_id);

CREATE TABLE IF NOT EXISTS rm_orders_lines (
    tenant TEXT NOT NULL,
    order_id TEXT NOT NULL,
    line_no BIGINT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_amount BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE IF NOT EXISTS rm_orders_timeline (
    tenant TEXT NOT NULL,
    order_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    source TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, position)
);

CREATE TABLE IF NOT EXISTS rm_orders_pending (
    tenant TEXT NOT NULL,
    order_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    tx BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    event_version TEXT NOT NULL,
    payload TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (order_id, position)
);

-- The order saga: where each order stands and when it needs a look again.
CREATE TABLE IF NOT EXISTS order_sagas (
    order_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    step TEXT NOT NULL,
    due_at_ms BIGINT,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS order_sagas_due ON order_sagas (due_at_ms);

-- The notifier: one row per (event, channel, recipient, template), claimed before it is sent.
CREATE TABLE IF NOT EXISTS notifier_deliveries (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    template TEXT NOT NULL,
    event_position BIGINT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    next_attempt_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS notifier_deliveries_due ON notifier_deliveries (status, next_attempt_ms);

-- Users who said no to marketing mail, as the notifier has read it from the log.
CREATE TABLE IF NOT EXISTS notifier_preferences (
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    marketing_opt_out BIGINT NOT NULL,
    PRIMARY KEY (tenant, user_id)
);

CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    url TEXT NOT NULL,
    event_types TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deleted BIGINT NOT NULL
);
