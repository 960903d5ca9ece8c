-- The log position of each stock row's last event, so the live socket (`GET /api/v1/ws`,
-- topic `admin.low_stock`) can hand out what changed after a client's `since`. One SQL text
-- for both backends; rows written before it read 0 until `shop replay stock`.

ALTER TABLE rm_stock ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS ix_stock_position ON rm_stock (tenant, position);
CREATE INDEX IF NOT EXISTS ix_orders_timeline_position ON rm_orders_timeline (tenant, position);
