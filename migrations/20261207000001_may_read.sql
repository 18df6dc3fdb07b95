-- Who may read a channel's content: the one answer that every query showing it asks (history,
-- sync, files and thumbnails, quotes, mentions, unread counts, read positions). A public
-- channel is read by every user who is not banned; a private one (with a password, or a
-- direct-message channel) by its members who are not banned. A removed member is no longer a
-- member; a user whose account is gone reads nothing.
--
-- Each call is two primary-key probes and, for a private channel, one on channel_members;
-- callers ask it for a handful of rows (a file's messages, a user's read positions, the names
-- a message mentions), never over a channel's messages.
CREATE FUNCTION may_read(channel uuid, reader uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (
        SELECT 1 FROM channels c JOIN users u ON u.id = reader
        WHERE c.id = channel AND u.banned_at IS NULL
          AND ((c.kind = 'channel' AND c.password_hash IS NULL)
               OR EXISTS (SELECT 1 FROM channel_members m
                          WHERE m.channel_id = c.id AND m.user_id = reader)))
$$;
