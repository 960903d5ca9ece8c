-- Web push subscriptions (`POST /users/me/push-subscriptions`): one row per browser or
-- device of a user, at most 10 per user. One SQL text for both backends.

CREATE TABLE IF NOT EXISTS push_subscriptions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_push_subscriptions_user ON push_subscriptions (tenant, user_id);
