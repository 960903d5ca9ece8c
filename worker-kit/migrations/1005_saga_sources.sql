-- The order saga fed by a consumer group (SHOP_EVENT_SOURCE=kafka): the topic and partition
-- that last brought each order, so each member sweeps the deadlines of the orders it holds.
-- NULL for orders the saga read from the log.
ALTER TABLE order_sagas ADD COLUMN source_topic TEXT;
ALTER TABLE order_sagas ADD COLUMN source_partition BIGINT;
