-- The confusable skeleton of each username (Unicode TS #39, lowercased): `aIice` (capital i)
-- cannot be registered next to `alice`. Filled by the application; rows from before this
-- column are filled at start-up.
ALTER TABLE users ADD COLUMN username_key text;
CREATE UNIQUE INDEX users_username_key ON users (username_key) WHERE username_key IS NOT NULL;
