-- Whether each user takes marketing mail, for the account page (`GET /users/me`). One SQL text
-- for both backends; users registered before this column take it by default, as the User
-- aggregate does, until `shop replay users` reads their choices from the log.

ALTER TABLE rm_users ADD COLUMN marketing_emails BIGINT NOT NULL DEFAULT 1;
