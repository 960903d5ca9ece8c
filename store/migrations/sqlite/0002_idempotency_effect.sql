-- An Idempotency-Key's claim token (a takeover gets a new one) and the effect of its request,
-- written in the same transaction as the request's events: a retry after a crash between
-- commit and answer finds the effect instead of running the command again.
ALTER TABLE idempotency_keys ADD COLUMN claim TEXT;
ALTER TABLE idempotency_keys ADD COLUMN effect TEXT;
