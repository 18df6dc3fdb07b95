-- Conversations: edits, deletes (tombstones), reactions and replies, with a per-channel change
-- cursor so that a client that was offline converges.
--
-- Every change to a stored message (an edit, a delete, a reaction added or removed) takes the
-- channel's next change number (`channels.last_change`, raised under the channel row's lock
-- in the change's transaction, so numbers follow commit order with no gap) and writes it to the
-- message's `change_seq`. `messages.sync` returns the messages whose `change_seq` is above the
-- client's cursor: the current state of each, once, however often it changed.
--
-- Reactions refer to their message by (channel_id, seq): retention removes a channel's
-- messages as a prefix of seqs, and removes their reactions by the same bound.

ALTER TABLE channels ADD COLUMN last_change bigint NOT NULL DEFAULT 0;

ALTER TABLE messages
    ADD COLUMN edited_at  timestamptz,
    -- A deleted message keeps its row and seq (no hole) without text or file: a tombstone.
    ADD COLUMN deleted_at timestamptz,
    -- The channel's change number of the message's last change; NULL while never changed.
    ADD COLUMN change_seq bigint,
    -- The message this one answers (same channel).
    ADD COLUMN reply_to   uuid,
    ADD COLUMN reply_seq  bigint;

-- Changes since a cursor, per channel (only changed messages are in it).
CREATE INDEX messages_channel_change ON messages (channel_id, change_seq)
    WHERE change_seq IS NOT NULL;

CREATE TABLE message_reactions (
    channel_id uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    emoji      text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- One reaction per user per emoji per message.
    PRIMARY KEY (channel_id, seq, emoji, user_id)
);

-- What moderators did: readable by administrators.
CREATE TABLE moderation_log (
    id              uuid PRIMARY KEY,          -- UUIDv7, time-ordered
    at              timestamptz NOT NULL DEFAULT now(),
    actor_id        uuid REFERENCES users (id) ON DELETE SET NULL,
    actor_name      text NOT NULL,
    action          text NOT NULL,
    channel_id      uuid REFERENCES channels (id) ON DELETE SET NULL,
    channel_name    text,
    target_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    target_username text,
    message_id      uuid,
    message_seq     bigint,
    reason          text
);
