//! The `messages` table: the idempotent, gap-free batch insert (group commit) and the cursor
//! queries behind history and `messages.sync`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::contract::{FileRef, Message, Quote, Reaction};
use crate::error::ResultExt;

/// Longest quoted text, in chars.
pub const QUOTE_CHARS: usize = 200;

/// The start of a text, for a quote.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(QUOTE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A query of messages: `SELECT` of every column of [`Row`] (this is the one list of them,
/// `m` being `messages` and `c` its channel), then `$from` (a string literal: the `FROM` clause
/// and the rest) and the query's arguments.
macro_rules! select_rows {
    ($from:tt $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            Row,
            "SELECT m.id, m.channel_id, c.name AS channel, m.seq, m.text, m.sender_name,
                    m.sender_id, m.client_message_id, m.created_at, m.file_url, m.file_name,
                    m.file_type, m.file_key, m.file_size, m.file_width, m.file_height,
                    m.edited_at, m.deleted_at, m.change_seq, m.reply_to, m.reply_seq, m.mentions
             " + $from
            $(, $arg)*
        )
    };
}

/// A message as a query reads it (with its channel's name).
struct Row {
    id: Uuid,
    channel_id: Uuid,
    channel: String,
    seq: i64,
    text: String,
    sender_name: String,
    sender_id: Option<Uuid>,
    client_message_id: Uuid,
    created_at: DateTime<Utc>,
    file_url: Option<String>,
    file_name: Option<String>,
    file_type: Option<String>,
    file_key: Option<Uuid>,
    file_size: Option<i64>,
    file_width: Option<i32>,
    file_height: Option<i32>,
    edited_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
    change_seq: Option<i64>,
    reply_to: Option<Uuid>,
    reply_seq: Option<i64>,
    mentions: Vec<Uuid>,
}

impl From<Row> for Message {
    fn from(r: Row) -> Self {
        let file = match (r.file_url, r.file_name, r.file_type) {
            (Some(url), Some(name), Some(kind)) => Some(FileRef {
                thumbnail: r.file_width.map(|_| format!("{url}/thumbnail")),
                url,
                name,
                kind,
                size: r.file_size,
                width: r.file_width,
                height: r.file_height,
                key: r.file_key,
            }),
            _ => None,
        };
        // Filled in by `decorate` with the quoted message's current state.
        let reply_to = match (r.reply_to, r.reply_seq) {
            (Some(id), Some(seq)) => Some(Quote {
                id,
                seq,
                sender: None,
                text: None,
                deleted: false,
            }),
            _ => None,
        };
        Message {
            id: r.id,
            channel_id: r.channel_id,
            channel: r.channel,
            seq: r.seq,
            text: r.text,
            sender: r.sender_name,
            sender_id: r.sender_id,
            client_message_id: r.client_message_id,
            created_at: r.created_at,
            file,
            edited_at: r.edited_at,
            deleted: r.deleted_at.is_some(),
            change: r.change_seq,
            reply_to,
            reactions: Vec::new(),
            mentions: r.mentions,
        }
    }
}

/// A message to store.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub channel_id: Uuid,
    pub channel: String,
    pub sender_id: Uuid,
    pub sender_name: String,
    pub text: String,
    pub client_message_id: Uuid,
    pub file: Option<FileRef>,
    /// The message it answers (checked to be in the same channel), quoted.
    pub reply_to: Option<Quote>,
    /// The users it mentions (who may read the channel).
    pub mentions: Vec<Uuid>,
}

/// The outcome of an idempotent insert.
#[derive(Clone, Debug)]
pub struct Inserted {
    pub message: Message,
    /// The sender had already used this `client_message_id`: nothing was stored.
    pub duplicate: bool,
}

/// The message a sender stored under a `client_message_id`, if any.
pub async fn find_by_client_id(
    db: &PgPool,
    sender: Uuid,
    client_message_id: Uuid,
) -> Result<Option<Message>, sqlx::Error> {
    Ok(find_by_client_ids(db, &[sender], &[client_message_id])
        .await?
        .pop())
}

/// The stored messages among `(senders[i], client_message_ids[i])` pairs.
async fn find_by_client_ids(
    db: &PgPool,
    senders: &[Uuid],
    client_message_ids: &[Uuid],
) -> Result<Vec<Message>, sqlx::Error> {
    // Through the idempotency keys: each names its message's partition.
    let rows = select_rows!(
        "FROM message_keys k
         JOIN messages m ON m.id = k.message_id AND m.created_at = k.created_at
         JOIN channels c ON c.id = m.channel_id
         WHERE (k.sender_id, k.client_message_id) IN
               (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
        senders,
        client_message_ids
    )
    .fetch_all(db)
    .await?;
    let mut messages: Vec<Message> = rows.into_iter().map(Message::from).collect();
    decorate(db, &mut messages, None).await?;
    Ok(messages)
}

/// Removes the idempotency keys among `(senders[i], client_message_ids[i])` whose message is
/// gone (retention removed it without its key: an interrupted pass), so the id can be used
/// again, as it could before the message was removed.
async fn forget_stale_keys(
    db: &PgPool,
    senders: &[Uuid],
    client_message_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM message_keys k
         WHERE (k.sender_id, k.client_message_id) IN
               (SELECT * FROM unnest($1::uuid[], $2::uuid[]))
           AND NOT EXISTS (SELECT 1 FROM messages m
                           WHERE m.id = k.message_id AND m.created_at = k.created_at)",
        senders,
        client_message_ids
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the idempotency keys of removed messages (`(senders[i], client_message_ids[i])`).
pub async fn forget_keys(
    db: &PgPool,
    senders: &[Uuid],
    client_message_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM message_keys
         WHERE (sender_id, client_message_id) IN
               (SELECT * FROM unnest($1::uuid[], $2::uuid[]))",
        senders,
        client_message_ids
    )
    .execute(db)
    .await?;
    Ok(())
}

/// How often a batch's insert is retried after it met a stored `client_message_id`.
const ATTEMPTS: usize = 3;

/// Stores a batch of messages (group commit) and returns one outcome per input, in input
/// order. Each message is stored exactly once per `(sender, client_message_id)`.
///
/// - One statement, atomic on its own (no explicit transaction: one round trip, one commit):
///   it locks the batch's channel rows in id order (no deadlock with a concurrent batch),
///   raises each channel's `last_seq` by its message count, and inserts every message with
///   its seq in one multi-row insert. The row locks are held until the statement commits, so
///   inserts into one channel are serialized and seqs follow commit order with no gap.
/// - Repeats of one id inside the batch are stored once; the repeats come back as duplicates.
/// - Each message's idempotency key goes into `message_keys` in the same statement. A message
///   already stored (a retry) makes the statement fail on that table's primary key, so nothing
///   of it is kept and no seq is used; the stored ids are then looked up, returned as
///   duplicates, and the rest is inserted again.
pub async fn insert_batch(db: &PgPool, batch: &[NewMessage]) -> Result<Vec<Inserted>, sqlx::Error> {
    // First occurrence of every (sender, client_message_id).
    let mut first_of: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    let mut indexes = Vec::with_capacity(batch.len());
    for (i, m) in batch.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(e) =
            first_of.entry((m.sender_id, m.client_message_id))
        {
            e.insert(i);
            indexes.push(i);
        }
    }
    let outcomes: HashMap<usize, Inserted> = insert_unique(db, batch, indexes)
        .await?
        .into_iter()
        .collect();
    batch
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let first = first_of[&(m.sender_id, m.client_message_id)];
            let outcome = outcomes.get(&first).ok_or(sqlx::Error::RowNotFound)?;
            Ok(Inserted {
                message: outcome.message.clone(),
                duplicate: outcome.duplicate || first != i,
            })
        })
        .collect()
}

/// Inserts the messages `indexes` of `batch` (no id twice), answering retries of stored ones.
async fn insert_unique(
    db: &PgPool,
    batch: &[NewMessage],
    mut indexes: Vec<usize>,
) -> Result<Vec<(usize, Inserted)>, sqlx::Error> {
    let mut done = Vec::with_capacity(indexes.len());
    for _ in 0..ATTEMPTS {
        if indexes.is_empty() {
            return Ok(done);
        }
        match insert_statement(db, batch, &indexes)
            .await
            .none_on_unique()?
        {
            Some(stored) => {
                done.extend(stored);
                return Ok(done);
            }
            None => {
                // Some are retries of stored messages: answer those, insert the rest.
                let senders: Vec<Uuid> = indexes.iter().map(|&i| batch[i].sender_id).collect();
                let ids: Vec<Uuid> = indexes
                    .iter()
                    .map(|&i| batch[i].client_message_id)
                    .collect();
                let mut known: HashMap<(Uuid, Uuid), Message> =
                    find_by_client_ids(db, &senders, &ids)
                        .await?
                        .into_iter()
                        .map(|m| ((m.sender_id.unwrap_or_default(), m.client_message_id), m))
                        .collect();
                let mut unknown = (Vec::new(), Vec::new());
                indexes.retain(|&i| {
                    let m = &batch[i];
                    match known.remove(&(m.sender_id, m.client_message_id)) {
                        Some(message) => {
                            done.push((
                                i,
                                Inserted {
                                    message,
                                    duplicate: true,
                                },
                            ));
                            false
                        }
                        None => {
                            unknown.0.push(m.sender_id);
                            unknown.1.push(m.client_message_id);
                            true
                        }
                    }
                });
                if !unknown.0.is_empty() {
                    forget_stale_keys(db, &unknown.0, &unknown.1).await?;
                }
            }
        }
    }
    Err(sqlx::Error::Protocol(
        "messages kept conflicting with concurrent inserts".into(),
    ))
}

/// Stores the messages `indexes` of `batch` in one statement that numbers them: within a
/// channel, seqs follow the batch's order.
async fn insert_statement(
    db: &PgPool,
    batch: &[NewMessage],
    indexes: &[usize],
) -> Result<Vec<(usize, Inserted)>, sqlx::Error> {
    let ms: Vec<&NewMessage> = indexes.iter().map(|&i| &batch[i]).collect();
    let ids: Vec<Uuid> = ms.iter().map(|_| Uuid::now_v7()).collect();
    let channel_ids: Vec<Uuid> = ms.iter().map(|m| m.channel_id).collect();
    let sender_ids: Vec<Uuid> = ms.iter().map(|m| m.sender_id).collect();
    let sender_names: Vec<&str> = ms.iter().map(|m| m.sender_name.as_str()).collect();
    let texts: Vec<&str> = ms.iter().map(|m| m.text.as_str()).collect();
    let client_ids: Vec<Uuid> = ms.iter().map(|m| m.client_message_id).collect();
    let file = |part: fn(&FileRef) -> &str| -> Vec<Option<&str>> {
        ms.iter().map(|m| m.file.as_ref().map(part)).collect()
    };
    let (file_urls, file_names, file_types) = (
        file(|f| f.url.as_str()),
        file(|f| f.name.as_str()),
        file(|f| f.kind.as_str()),
    );
    let file_keys: Vec<Option<Uuid>> = ms
        .iter()
        .map(|m| m.file.as_ref().and_then(|f| f.key))
        .collect();
    let file_sizes: Vec<Option<i64>> = ms
        .iter()
        .map(|m| m.file.as_ref().and_then(|f| f.size))
        .collect();
    let file_widths: Vec<Option<i32>> = ms
        .iter()
        .map(|m| m.file.as_ref().and_then(|f| f.width))
        .collect();
    let file_heights: Vec<Option<i32>> = ms
        .iter()
        .map(|m| m.file.as_ref().and_then(|f| f.height))
        .collect();
    let reply_ids: Vec<Option<Uuid>> = ms
        .iter()
        .map(|m| m.reply_to.as_ref().map(|q| q.id))
        .collect();
    let reply_seqs: Vec<Option<i64>> = ms
        .iter()
        .map(|m| m.reply_to.as_ref().map(|q| q.seq))
        .collect();
    // Mentions flattened: (position of the message in `v`, 1-based; user).
    let (mention_ords, mention_users): (Vec<i64>, Vec<Uuid>) = ms
        .iter()
        .enumerate()
        .flat_map(|(i, m)| m.mentions.iter().map(move |u| (i as i64 + 1, *u)))
        .unzip();
    // Borrowed strings are bound as text arrays without copying them (`as _`: the macro's
    // type check knows only owned arrays).
    let rows = sqlx::query!(
        r#"
WITH v AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                         $6::uuid[], $7::text[], $8::text[], $9::text[], $10::uuid[],
                         $11::int8[], $12::int4[], $13::int4[], $14::uuid[], $15::int8[])
        WITH ORDINALITY AS v(id, channel_id, sender_id, sender_name, text, client_message_id,
                             file_url, file_name, file_type, file_key, file_size, file_width,
                             file_height, reply_to, reply_seq, ord)
), counts AS (
    SELECT channel_id, count(*) AS n FROM v GROUP BY channel_id
), locked AS (
    SELECT id FROM channels WHERE id IN (SELECT channel_id FROM counts) ORDER BY id FOR UPDATE
), bump AS (
    UPDATE channels c SET last_seq = c.last_seq + counts.n
    FROM counts, locked
    WHERE c.id = counts.channel_id AND locked.id = c.id
    RETURNING c.id, c.last_seq, counts.n
), numbered AS (
    SELECT v.*, now() AS created_at,
           bump.last_seq - bump.n
               + row_number() OVER (PARTITION BY v.channel_id ORDER BY v.ord) AS seq
    FROM v JOIN bump ON bump.id = v.channel_id
), keyed AS (
    -- A retried (sender, client_message_id) conflicts here and fails the whole statement.
    INSERT INTO message_keys (sender_id, client_message_id, channel_id, message_id, created_at)
    SELECT sender_id, client_message_id, channel_id, id, created_at FROM numbered
), mm AS (
    SELECT * FROM unnest($16::int8[], $17::uuid[]) AS mm(ord, user_id)
), mentioned AS (
    INSERT INTO message_mentions (user_id, channel_id, seq)
    SELECT mm.user_id, numbered.channel_id, numbered.seq FROM mm JOIN numbered USING (ord)
)
INSERT INTO messages (id, channel_id, seq, sender_id, sender_name, text, client_message_id,
                      file_url, file_name, file_type, file_key, file_size, file_width,
                      file_height, reply_to, reply_seq, mentions, created_at)
SELECT id, channel_id, seq, sender_id, sender_name, text, client_message_id, file_url,
       file_name, file_type, file_key, file_size, file_width, file_height, reply_to,
       reply_seq, ARRAY(SELECT mm.user_id FROM mm WHERE mm.ord = numbered.ord), created_at
FROM numbered
RETURNING id AS "id!", seq AS "seq!", created_at AS "created_at!""#,
        &ids,
        &channel_ids,
        &sender_ids,
        &sender_names as _,
        &texts as _,
        &client_ids,
        &file_urls as _,
        &file_names as _,
        &file_types as _,
        &file_keys as _,
        &file_sizes as _,
        &file_widths as _,
        &file_heights as _,
        &reply_ids as _,
        &reply_seqs as _,
        &mention_ords,
        &mention_users
    )
    .fetch_all(db)
    .await?;
    if rows.len() != ms.len() {
        // Only when a channel row is gone (channels are never removed).
        return Err(sqlx::Error::RowNotFound);
    }
    let stored: HashMap<Uuid, (i64, DateTime<Utc>)> = rows
        .into_iter()
        .map(|r| (r.id, (r.seq, r.created_at)))
        .collect();
    indexes
        .iter()
        .zip(ms)
        .zip(&ids)
        .map(|((&i, m), id)| {
            let (seq, created_at) = *stored.get(id).ok_or(sqlx::Error::RowNotFound)?;
            Ok((
                i,
                Inserted {
                    message: Message {
                        id: *id,
                        channel_id: m.channel_id,
                        channel: m.channel.clone(),
                        seq,
                        text: m.text.clone(),
                        sender: m.sender_name.clone(),
                        sender_id: Some(m.sender_id),
                        client_message_id: m.client_message_id,
                        created_at,
                        file: m.file.clone(),
                        edited_at: None,
                        deleted: false,
                        change: None,
                        reply_to: m.reply_to.clone(),
                        reactions: Vec::new(),
                        mentions: m.mentions.clone(),
                    },
                    duplicate: false,
                },
            ))
        })
        .collect()
}

/// Which page of a channel's history to read.
#[derive(Clone, Copy, Debug)]
pub enum Page {
    /// The newest messages.
    Latest,
    /// The messages just older than this seq.
    Before(i64),
    /// The messages just newer than this seq.
    After(i64),
}

/// Most bytes of messages (as JSON on the wire) one page carries, whatever its `limit`: a page
/// is cut to fit, keeping at least one message, and says it has more.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

/// Which end of a page a cut keeps: the one its reader continues from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The first messages (a page read forward: `after_seq`, changes by number).
    First,
    /// The last messages (the newest page, or one read backward: `before`).
    Last,
}

/// Cuts `messages` to at most [`MAX_PAGE_BYTES`] of JSON (at least one message is kept),
/// keeping the end `keep` names; whether any were cut.
pub fn fit_page(messages: &mut Vec<Message>, keep: Keep) -> bool {
    let mut total = 0;
    let mut fits = 0;
    let order: Box<dyn Iterator<Item = &Message>> = match keep {
        Keep::First => Box::new(messages.iter()),
        Keep::Last => Box::new(messages.iter().rev()),
    };
    for message in order {
        total += json_len(message);
        if total > MAX_PAGE_BYTES && fits > 0 {
            break;
        }
        fits += 1;
    }
    let cut = fits < messages.len();
    match keep {
        Keep::First => messages.truncate(fits),
        Keep::Last => {
            messages.drain(..messages.len() - fits);
        }
    }
    cut
}

/// The length of a value's JSON, counted without building it.
fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a value that cannot be written counts as nothing.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// How far back history is read first: the newest monthly partitions only.
const RECENT_DAYS: i64 = 31;

/// A page of history with the channel's change cursor as of just before it was read: every
/// change numbered up to `last_change` shows in the page.
#[derive(Debug)]
pub struct Paged {
    pub messages: Vec<Message>,
    pub last_change: i64,
}

/// One page of history, oldest first, as `reader` sees it (their own reactions marked).
///
/// `messages` is partitioned by month, and a read by (channel, seq) alone visits every month's
/// index. So the page is read first from the last [`RECENT_DAYS`] (which prunes to the newest
/// partitions) and kept when it is provably whole: a channel's seqs from `first_seq` to
/// `last_seq` are all stored (seqs are handed out without gaps, retention removes a prefix and
/// a delete leaves a tombstone), so a run of consecutive seqs that reaches the page's expected
/// end, and fills the page or reaches the other end of the channel, misses nothing. Otherwise
/// (older history, a quiet channel) the page is read from every partition.
pub async fn page(
    db: &PgPool,
    channel_id: Uuid,
    page: Page,
    limit: i64,
    reader: Option<Uuid>,
) -> Result<Paged, sqlx::Error> {
    let Some(bounds) = sqlx::query!(
        "SELECT name, first_seq, last_seq, last_change FROM channels WHERE id = $1",
        channel_id
    )
    .fetch_optional(db)
    .await?
    else {
        return Ok(Paged {
            messages: Vec::new(),
            last_change: 0,
        });
    };
    let last_change = bounds.last_change;
    // The seqs the page is drawn from, as of now.
    let (lo, hi) = match page {
        Page::Latest => (bounds.first_seq, bounds.last_seq),
        Page::Before(seq) => (bounds.first_seq, bounds.last_seq.min(seq - 1)),
        Page::After(seq) => (bounds.first_seq.max(seq.saturating_add(1)), bounds.last_seq),
    };
    if lo > hi || limit < 1 {
        return Ok(Paged {
            messages: Vec::new(),
            last_change,
        });
    }
    let since = Utc::now() - chrono::Duration::days(RECENT_DAYS);
    let recent = read_page(db, channel_id, page, limit, since).await?;
    let whole = match page {
        // Newest first: from the top down to a full page or to the beginning.
        Page::Latest | Page::Before(_) => {
            consecutive(&recent, -1)
                && recent.first().is_some_and(|m| m.seq >= hi)
                && (recent.len() as i64 == limit || recent.last().is_some_and(|m| m.seq <= lo))
        }
        Page::After(_) => {
            consecutive(&recent, 1)
                && recent.first().is_some_and(|m| m.seq <= lo)
                && (recent.len() as i64 == limit || recent.last().is_some_and(|m| m.seq >= hi))
        }
    };
    let mut messages = if whole {
        recent
    } else {
        read_page(db, channel_id, page, limit, DateTime::UNIX_EPOCH).await?
    };
    // The newest pages are read newest first.
    if !matches!(page, Page::After(_)) {
        messages.reverse();
    }
    decorate(db, &mut messages, reader).await?;
    Ok(Paged {
        messages,
        last_change,
    })
}

/// Fills in what a message row does not hold: the current state of the messages quoted by
/// replies, and the reactions (with `me` for `reader`'s own).
pub async fn decorate(
    db: &PgPool,
    messages: &mut [Message],
    reader: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let mut channels: Vec<Uuid> = messages.iter().map(|m| m.channel_id).collect();
    channels.sort_unstable();
    channels.dedup();
    for channel_id in channels {
        let mut of_channel: Vec<&mut Message> = messages
            .iter_mut()
            .filter(|m| m.channel_id == channel_id)
            .collect();
        decorate_channel(db, channel_id, &mut of_channel, reader).await?;
    }
    Ok(())
}

/// [`decorate`] for messages of one channel.
async fn decorate_channel(
    db: &PgPool,
    channel_id: Uuid,
    messages: &mut [&mut Message],
    reader: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let quoted: Vec<i64> = messages
        .iter()
        .filter_map(|m| m.reply_to.as_ref().map(|q| q.seq))
        .collect();
    if !quoted.is_empty() {
        let rows = sqlx::query!(
            "SELECT m.seq, m.id, m.sender_name, m.text, m.deleted_at IS NOT NULL AS \"deleted!\"
             FROM messages m JOIN channels c ON c.id = m.channel_id
             WHERE m.channel_id = $1 AND m.seq = ANY($2) AND m.seq >= c.first_seq",
            channel_id,
            &quoted
        )
        .fetch_all(db)
        .await?;
        let by_seq: HashMap<i64, _> = rows.into_iter().map(|r| (r.seq, r)).collect();
        for quote in messages.iter_mut().filter_map(|m| m.reply_to.as_mut()) {
            match by_seq.get(&quote.seq) {
                Some(r) if r.id == quote.id && r.deleted => quote.deleted = true,
                Some(r) if r.id == quote.id => {
                    quote.sender = Some(r.sender_name.clone());
                    quote.text = Some(excerpt(&r.text));
                }
                // Removed by retention.
                _ => {}
            }
        }
    }
    let seqs: Vec<i64> = messages
        .iter()
        .filter(|m| !m.deleted)
        .map(|m| m.seq)
        .collect();
    let rows = sqlx::query!(
        r#"SELECT seq, emoji, count(*) AS "count!", bool_or(user_id = $3) AS "me!"
           FROM message_reactions WHERE channel_id = $1 AND seq = ANY($2)
           GROUP BY seq, emoji ORDER BY seq, min(created_at), emoji"#,
        channel_id,
        &seqs,
        reader.unwrap_or_default()
    )
    .fetch_all(db)
    .await?;
    let mut by_seq: HashMap<i64, Vec<Reaction>> = HashMap::new();
    for r in rows {
        by_seq.entry(r.seq).or_default().push(Reaction {
            emoji: r.emoji,
            count: r.count,
            me: reader.is_some() && r.me,
        });
    }
    for m in messages.iter_mut() {
        if let Some(reactions) = by_seq.remove(&m.seq) {
            m.reactions = reactions;
        }
    }
    Ok(())
}

/// Whether the seqs of `messages` follow each other by `step`.
fn consecutive(messages: &[Message], step: i64) -> bool {
    messages.windows(2).all(|w| w[1].seq == w[0].seq + step)
}

/// One page of the messages created since `since`, in the page's reading order.
async fn read_page(
    db: &PgPool,
    channel_id: Uuid,
    page: Page,
    limit: i64,
    since: DateTime<Utc>,
) -> Result<Vec<Message>, sqlx::Error> {
    let rows = match page {
        Page::Latest => {
            select_rows!(
                "FROM messages m JOIN channels c ON c.id = m.channel_id
                 WHERE m.channel_id = $1 AND m.seq >= c.first_seq AND m.created_at >= $3
                 ORDER BY m.seq DESC LIMIT $2",
                channel_id,
                limit,
                since
            )
            .fetch_all(db)
            .await?
        }
        Page::Before(seq) => {
            select_rows!(
                "FROM messages m JOIN channels c ON c.id = m.channel_id
                 WHERE m.channel_id = $1 AND m.seq < $3 AND m.seq >= c.first_seq
                   AND m.created_at >= $4
                 ORDER BY m.seq DESC LIMIT $2",
                channel_id,
                limit,
                seq,
                since
            )
            .fetch_all(db)
            .await?
        }
        Page::After(seq) => {
            select_rows!(
                "FROM messages m JOIN channels c ON c.id = m.channel_id
                 WHERE m.channel_id = $1 AND m.seq > $3 AND m.seq >= c.first_seq
                   AND m.created_at >= $4
                 ORDER BY m.seq ASC LIMIT $2",
                channel_id,
                limit,
                seq,
                since
            )
            .fetch_all(db)
            .await?
        }
    };
    Ok(rows.into_iter().map(Message::from).collect())
}

/// The message `seq` of a channel (none when it does not exist or retention removed it).
pub async fn find(db: &PgPool, channel_id: Uuid, seq: i64) -> Result<Option<Message>, sqlx::Error> {
    let row = select_rows!(
        "FROM messages m JOIN channels c ON c.id = m.channel_id
         WHERE m.channel_id = $1 AND m.seq = $2 AND m.seq >= c.first_seq",
        channel_id,
        seq
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
}

/// The message `id` of a channel, if it is still kept.
pub async fn find_by_id(
    db: &PgPool,
    channel_id: Uuid,
    id: Uuid,
) -> Result<Option<Message>, sqlx::Error> {
    let row = select_rows!(
        "FROM messages m JOIN channels c ON c.id = m.channel_id
         WHERE m.channel_id = $1 AND m.id = $2 AND m.seq >= c.first_seq",
        channel_id,
        id
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Message::from))
}

/// The kept messages of a channel up to seq `max_seq` changed after change `after` and up to
/// `upto`, by change number, at most `limit` (undecorated).
/// The messages of a channel with these seqs (those retention has not removed), as stored.
pub async fn by_seqs(
    db: &PgPool,
    channel_id: Uuid,
    seqs: &[i64],
) -> Result<Vec<Message>, sqlx::Error> {
    let rows = select_rows!(
        "FROM messages m JOIN channels c ON c.id = m.channel_id
         WHERE m.channel_id = $1 AND m.seq = ANY($2) AND m.seq >= c.first_seq
         ORDER BY m.seq",
        channel_id,
        seqs
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}

pub async fn changed_since(
    db: &PgPool,
    channel_id: Uuid,
    (after, upto): (i64, i64),
    max_seq: i64,
    limit: i64,
) -> Result<Vec<Message>, sqlx::Error> {
    let rows = select_rows!(
        "FROM messages m JOIN channels c ON c.id = m.channel_id
         WHERE m.channel_id = $1 AND m.change_seq > $2 AND m.change_seq <= $3
           AND m.seq >= c.first_seq AND m.seq <= $5
         ORDER BY m.change_seq LIMIT $4",
        channel_id,
        after,
        upto,
        limit,
        max_seq
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Message::from).collect())
}
