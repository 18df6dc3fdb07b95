-- The client address a user last signed in from: a ban keeps new guests from that address out
-- for a day (a banned user would otherwise be back at once as a guest). Only banned users'
-- addresses are looked up, so only those are indexed.
ALTER TABLE users ADD COLUMN last_address text;
CREATE INDEX users_banned_address ON users (last_address) WHERE banned_at IS NOT NULL;
