-- The log of changes to messages (edits, deletes, reactions), one row per change number of a
-- channel, written in the change's own transaction. Connection state recovery replays from it
-- the changes a reconnecting client missed, each as the event it missed
-- (`src/realtime/recovery.rs`). Rows are kept for a while past the recovery window, then
-- removed; a client whose position is older than the log gets no recovery and starts fresh.
CREATE TABLE message_changes (
    channel_id uuid NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    change bigint NOT NULL,
    -- The changed message.
    seq bigint NOT NULL,
    -- 'edit', 'delete' or 'react'.
    kind text NOT NULL CHECK (kind IN ('edit', 'delete', 'react')),
    actor_id uuid NOT NULL,
    -- A reaction's emoji, and whether it was added (else removed).
    emoji text,
    added boolean,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, change)
);
