-- Readers whose last batch failed, with the error and since when: written by the reader's own
-- process (the one consumer driver), read by every process that shows status, so that a relay
-- stuck in another process shows as `retrying` with its error on any query node.
CREATE TABLE IF NOT EXISTS reader_health (
    name TEXT PRIMARY KEY,
    last_error TEXT NOT NULL,
    failures BIGINT NOT NULL,
    failing_since_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
