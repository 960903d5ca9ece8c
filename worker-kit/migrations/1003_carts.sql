-- Carts, discount codes and sellers' settings: their read models (admins' lists, the sales
-- analytics, invoices) and the order saga's cart deadlines (expiry, reminder). One SQL text
-- for both backends.

CREATE TABLE IF NOT EXISTS rm_carts (
    tenant TEXT NOT NULL,
    cart_id TEXT NOT NULL,
    customer TEXT,
    status TEXT NOT NULL,
    currency TEXT,
    discount_code TEXT,
    discount BIGINT NOT NULL,
    order_id TEXT,
    reminded BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_day TEXT NOT NULL,
    touched_at_ms BIGINT NOT NULL,
    closed_at_ms BIGINT,
    closed_day TEXT,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, cart_id)
);
CREATE INDEX IF NOT EXISTS ix_carts_customer ON rm_carts (tenant, customer, created_at_ms);
CREATE INDEX IF NOT EXISTS ix_carts_created ON rm_carts (tenant, created_day);
CREATE INDEX IF NOT EXISTS ix_carts_closed ON rm_carts (tenant, closed_day, status);

CREATE TABLE IF NOT EXISTS rm_carts_lines (
    tenant TEXT NOT NULL,
    cart_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    unit_amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    orderable BIGINT NOT NULL,
    PRIMARY KEY (tenant, cart_id, sku)
);

CREATE TABLE IF NOT EXISTS rm_promotions (
    tenant TEXT NOT NULL,
    code TEXT NOT NULL,
    kind TEXT NOT NULL,
    percentage_bp BIGINT,
    amount BIGINT,
    currency TEXT,
    min_subtotal BIGINT,
    min_currency TEXT,
    starts_at TEXT,
    ends_at TEXT,
    usage_limit BIGINT,
    per_customer_limit BIGINT,
    active BIGINT NOT NULL,
    uses BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (tenant, code)
);

-- Every redemption, with its day; `released` once its order was cancelled.
CREATE TABLE IF NOT EXISTS rm_promotions_redemptions (
    tenant TEXT NOT NULL,
    code TEXT NOT NULL,
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    discount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    day TEXT NOT NULL,
    released BIGINT NOT NULL,
    PRIMARY KEY (tenant, code, order_id)
);
CREATE INDEX IF NOT EXISTS ix_redemptions_day ON rm_promotions_redemptions (tenant, day);

-- The order saga's deadlines for open carts: when each expires and, for customers' carts,
-- when its reminder is due (NULL: none).
CREATE TABLE IF NOT EXISTS cart_deadlines (
    cart_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    expire_at_ms BIGINT NOT NULL,
    remind_at_ms BIGINT,
    due_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cart_deadlines_due ON cart_deadlines (due_at_ms);

-- Each tenant's own settings (the seller on invoices, tax and shipping terms).
CREATE TABLE IF NOT EXISTS rm_settings (
    tenant TEXT PRIMARY KEY,
    legal_name TEXT NOT NULL,
    address TEXT NOT NULL,
    vat_id TEXT,
    currency TEXT NOT NULL,
    tax_rate_bp BIGINT NOT NULL,
    shipping_amount BIGINT NOT NULL,
    free_shipping_threshold BIGINT,
    version BIGINT NOT NULL
);

-- Orders record the discount code they were placed with and the tax rate applied.
ALTER TABLE rm_orders ADD COLUMN discount_code TEXT;
ALTER TABLE rm_orders ADD COLUMN discount BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rm_orders ADD COLUMN tax_rate_bp BIGINT;
