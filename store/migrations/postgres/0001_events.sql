-- The event log. The first seven columns are postgres-es's own, so its repository can read
-- this table; the rest take defaults on insert.
CREATE TABLE IF NOT EXISTS events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence > 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    -- Order of the global log; handed out before commit, so readers also use transaction_id.
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction: a reader never passes the oldest transaction still running.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX IF NOT EXISTS events_global_position ON events (global_position);
CREATE INDEX IF NOT EXISTS events_log_order ON events (transaction_id, global_position);

CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    last_position  bigint NOT NULL,
    payload        jsonb  NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- A retried POST with the same Idempotency-Key gets the first answer back.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    request_hash  text        NOT NULL,
    status        integer,
    response_body text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
