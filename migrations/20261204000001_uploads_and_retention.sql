-- Attachments stored by banter, and per-channel retention.

-- An uploaded file. The object lives in the storage under `uploads/<key>` (and an image's
-- thumbnail under `thumbnails/<key>.jpg`); the row says who owns it and what it turned out to
-- be. `type` is sniffed from the bytes; it is NULL while the bytes have not been checked yet
-- (an S3 upload that went straight to the bucket), and `ready` says the object was checked.
CREATE TABLE uploads (
    key           uuid PRIMARY KEY,                 -- UUIDv7, never the client's file name
    owner_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    name          text NOT NULL,
    declared_type text NOT NULL,
    type          text,
    size          bigint NOT NULL,
    width         integer,
    height        integer,
    ready         boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- A user's quota and upload list.
CREATE INDEX uploads_owner ON uploads (owner_id);
-- The sweep of uploads never sent.
CREATE INDEX uploads_created_at ON uploads (created_at);

-- A message's stored attachment (NULL for a link to elsewhere), with what a client needs to
-- show it without another request.
ALTER TABLE messages
    ADD COLUMN file_key    uuid REFERENCES uploads (key),
    ADD COLUMN file_size   bigint,
    ADD COLUMN file_width  integer,
    ADD COLUMN file_height integer;
-- Who may read an upload (the channels its messages are in), and retention's cleanup.
CREATE INDEX messages_file_key ON messages (file_key) WHERE file_key IS NOT NULL;

-- Where a channel's history begins: retention raises it before it deletes older messages.
-- A per-channel retention setting (NULL: the instance's default) can only be stricter than
-- the instance's ceiling.
ALTER TABLE channels
    ADD COLUMN first_seq              bigint NOT NULL DEFAULT 1,
    ADD COLUMN retention_max_age_secs bigint,
    ADD COLUMN retention_max_messages bigint;
