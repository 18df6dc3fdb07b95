-- Bans, last seen, and direct messages.

-- A banned user's sessions are refused and their login too; `last_seen_at` is when their last
-- socket closed.
ALTER TABLE users
    ADD COLUMN banned_at    timestamptz,
    ADD COLUMN last_seen_at timestamptz,
    -- Sessions issued before this (unix seconds) are refused: a ban ends every session for
    -- good, also once it is lifted.
    ADD COLUMN sessions_after bigint NOT NULL DEFAULT 0;

-- A ban ends the user's live sockets on every instance, as a removal does: every instance
-- listens on `banter_user_removed`.
CREATE FUNCTION banter_user_banned() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('banter_user_removed', NEW.id::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER users_banned AFTER UPDATE OF banned_at ON users
    FOR EACH ROW WHEN (OLD.banned_at IS NULL AND NEW.banned_at IS NOT NULL)
    EXECUTE FUNCTION banter_user_banned();

-- A direct-message channel: private, with exactly its two members, named `dm-<hash of the
-- pair>` (one per pair); never listed among the channels.
ALTER TABLE channels ADD COLUMN kind text NOT NULL DEFAULT 'channel'
    CONSTRAINT channels_kind CHECK (kind IN ('channel', 'dm'));
