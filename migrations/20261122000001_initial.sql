-- The banter schema: users, channels, private-channel membership, and messages.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL,
    email         text,
    -- NULL for guests, who sign in once and never with a password.
    password_hash text,
    is_guest      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Usernames and emails are unique case-insensitively.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower ON users (lower(email)) WHERE email IS NOT NULL;

CREATE TABLE channels (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    description   text NOT NULL DEFAULT '',
    -- A password makes the channel private.
    password_hash text,
    created_by    uuid REFERENCES users (id) ON DELETE SET NULL,
    -- The seq of the newest message; bumped in the same transaction as each insert, so seqs
    -- are gap-free and follow commit order.
    last_seq      bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Members of private channels (a right password, or being the creator, makes a member).
CREATE TABLE channel_members (
    channel_id uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id)
);

CREATE TABLE messages (
    id                uuid PRIMARY KEY,            -- UUIDv7, time-ordered
    channel_id        uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq               bigint NOT NULL,
    sender_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    sender_name       text NOT NULL,
    text              text NOT NULL,
    client_message_id uuid NOT NULL,
    file_url          text,
    file_name         text,
    file_type         text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Serves history and sync by (channel_id, seq) and guarantees one message per seq.
    CONSTRAINT messages_channel_seq UNIQUE (channel_id, seq),
    -- Makes sending idempotent: a retried client_message_id is never stored twice.
    CONSTRAINT messages_sender_client_id UNIQUE (sender_id, client_message_id)
);
