-- Each delivery names the user it went to (when it went to one), so erasing a user scrubs
-- their deliveries' recipient and text. One SQL text for both backends.

ALTER TABLE notifier_deliveries ADD COLUMN user_id TEXT;
CREATE INDEX IF NOT EXISTS ix_notifier_deliveries_user ON notifier_deliveries (tenant, user_id);
