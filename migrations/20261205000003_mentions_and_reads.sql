-- Mentions and read markers: what each user has read of each channel, and who a message
-- mentions, for unread counts and unread mentions.

-- The users a message mentions (resolved when it is stored, and again when it is edited).
ALTER TABLE messages ADD COLUMN mentions uuid[] NOT NULL DEFAULT '{}';

-- Who is mentioned where: unread mentions per channel are counted from here. Refers to its
-- message by (channel_id, seq), like reactions: retention removes it with the message.
CREATE TABLE message_mentions (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq        bigint NOT NULL,
    PRIMARY KEY (user_id, channel_id, seq)
);
CREATE INDEX message_mentions_channel_seq ON message_mentions (channel_id, seq);

-- A user's read position in a channel: every seq up to read_seq is read. Only moves forward.
CREATE TABLE channel_reads (
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    read_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, channel_id)
);
