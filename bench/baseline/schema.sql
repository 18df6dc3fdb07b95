-- Schema of the baseline server. It lives in its own database (banter_baseline by default),
-- never in banter's. Applied at every start; every statement is idempotent.

CREATE TABLE IF NOT EXISTS users (
    id         uuid PRIMARY KEY,
    username   text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS channels (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    -- The seq of the newest message, bumped in the same statement as each insert.
    last_seq    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS messages (
    id                uuid PRIMARY KEY,
    channel_id        uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    seq               bigint NOT NULL,
    sender_id         uuid REFERENCES users (id) ON DELETE SET NULL,
    sender_name       text NOT NULL,
    text              text NOT NULL,
    client_message_id uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Serves history and sync by (channel_id, seq).
    CONSTRAINT messages_channel_seq UNIQUE (channel_id, seq),
    -- Makes sending idempotent.
    CONSTRAINT messages_sender_client_id UNIQUE (sender_id, client_message_id)
);
