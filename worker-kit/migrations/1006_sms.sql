-- Order news by SMS (issue 17). One SQL text for both backends. The users view shows the
-- phone number and the opt-in on `GET /users/me`; the notifier keeps its own copy, read from
-- the log in its order, like the marketing choice. Users changed before these columns show no
-- phone until `shop replay users` reads the log again.

ALTER TABLE rm_users ADD COLUMN phone TEXT;
ALTER TABLE rm_users ADD COLUMN sms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE notifier_preferences ADD COLUMN phone TEXT;
ALTER TABLE notifier_preferences ADD COLUMN sms BIGINT NOT NULL DEFAULT 0;
