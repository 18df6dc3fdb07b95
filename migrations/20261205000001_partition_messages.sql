-- `messages` partitioned by month of `created_at` (declarative range partitioning), so that
-- retention by age drops whole months instead of deleting rows, and every partition keeps a
-- small (channel_id, seq) index for history and sync.
--
-- A unique key of a partitioned table must include the partition key, so the two promises the
-- old unique keys kept are kept this way:
-- - one message per (channel, seq): seqs come from the channel row's counter, raised under the
--   row lock in the statement that inserts (store/messages.rs), so no seq is handed out twice;
-- - idempotent sends: `message_keys` holds one row per (sender, client_message_id), inserted
--   in the same statement as the message; a retry conflicts there and gets the stored message.

CREATE TABLE message_keys (
    sender_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_message_id uuid NOT NULL,
    channel_id        uuid NOT NULL,
    message_id        uuid NOT NULL,
    -- The message's partition key, so that looking the message up touches one partition.
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (sender_id, client_message_id)
);

CREATE TABLE messages_partitioned (
    id                uuid NOT NULL,               -- UUIDv7, time-ordered
    channel_id        uuid NOT NULL
                      CONSTRAINT messages_channel_id_fkey REFERENCES channels (id) ON DELETE CASCADE,
    seq               bigint NOT NULL,
    -- (The send path tells a removed sender by this constraint's name, and by
    -- message_keys_sender_id_fkey.)
    sender_id         uuid CONSTRAINT messages_sender_id_fkey REFERENCES users (id) ON DELETE SET NULL,
    sender_name       text NOT NULL,
    text              text NOT NULL,
    client_message_id uuid NOT NULL,
    file_url          text,
    file_name         text,
    file_type         text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    file_key          uuid CONSTRAINT messages_file_key_fkey REFERENCES uploads (key),
    file_size         bigint,
    file_width        integer,
    file_height       integer,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- Creates the monthly partitions of `messages` from the month of `since` to `months_ahead`
-- months after the current one (the ones missing): `messages_yYYYYmMM` holds that month.
-- Every instance calls it at start and hourly, so the coming months always exist.
CREATE FUNCTION ensure_message_partitions(since timestamptz, months_ahead int)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    -- Months are counted in UTC, whatever the session's time zone.
    month timestamp := date_trunc('month', since AT TIME ZONE 'UTC');
    last  timestamp := date_trunc('month', now() AT TIME ZONE 'UTC')
                       + make_interval(months => months_ahead);
    name  text;
    made  int := 0;
BEGIN
    -- Instances starting together must not race to create the same partition.
    PERFORM pg_advisory_xact_lock(7089068734655131745);  -- "banterpa"
    WHILE month <= last LOOP
        name := 'messages_' || to_char(month, '"y"YYYY"m"MM');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE IF NOT EXISTS %I PARTITION OF messages FOR VALUES FROM (%L) TO (%L)',
                name, month AT TIME ZONE 'UTC', (month + interval '1 month') AT TIME ZONE 'UTC');
            made := made + 1;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN made;
END $$;

INSERT INTO message_keys (sender_id, client_message_id, channel_id, message_id, created_at)
SELECT sender_id, client_message_id, channel_id, id, created_at
FROM messages WHERE sender_id IS NOT NULL;

ALTER TABLE messages RENAME TO messages_unpartitioned;
ALTER TABLE messages_partitioned RENAME TO messages;
SELECT ensure_message_partitions(
    LEAST(now(), (SELECT min(created_at) FROM messages_unpartitioned)), 2);
INSERT INTO messages (id, channel_id, seq, sender_id, sender_name, text, client_message_id,
                      file_url, file_name, file_type, created_at, file_key, file_size,
                      file_width, file_height)
SELECT id, channel_id, seq, sender_id, sender_name, text, client_message_id, file_url,
       file_name, file_type, created_at, file_key, file_size, file_width, file_height
FROM messages_unpartitioned;
DROP TABLE messages_unpartitioned;
ALTER INDEX messages_partitioned_pkey RENAME TO messages_pkey;

-- History and sync by (channel_id, seq), in each partition.
CREATE INDEX messages_channel_seq ON messages (channel_id, seq);
-- Who may read an upload (the channels its messages are in), and retention's cleanup.
CREATE INDEX messages_file_key ON messages (file_key) WHERE file_key IS NOT NULL;
