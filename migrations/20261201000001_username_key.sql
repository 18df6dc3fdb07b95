-- The confusable skeleton of each username (Unicode TS #39, lowercased): `aIice` (capital i)
-- cannot be registered next to `alice`. Filled by the application; rows from before this
-- column are filled at start-up, found through the partial index (so that a start does not scan
-- every user). A row whose skeleton an earlier user holds keeps NULL.
ALTER TABLE users ADD COLUMN username_key text;
CREATE UNIQUE INDEX users_username_key ON users (username_key) WHERE username_key IS NOT NULL;
CREATE INDEX users_username_key_missing ON users (created_at) WHERE username_key IS NULL;
