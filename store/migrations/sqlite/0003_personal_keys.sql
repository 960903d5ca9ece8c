-- Data keys of the people whose personal data events carry (crypto-shredding): each person's
-- fields are encrypted with their own key, kept here, outside the event tables. Erasure deletes
-- the key and keeps the row (when, not what), so readers can tell erased data from a lost key.
CREATE TABLE personal_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    data_key BLOB,
    created_at_ms BIGINT NOT NULL,
    erased_at_ms BIGINT,
    UNIQUE (tenant, subject)
);
