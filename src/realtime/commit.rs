//! The write path: every write of a message goes through here, stored first and published
//! after, then answered. Sends take the group commit below; changes to a message (edits,
//! deletes, reactions) take [`Committer::change`].
//!
//! Group commit for `message.send`: sends that arrive while a transaction is running wait for
//! it and are then stored together, in one transaction (one multi-row insert, one `last_seq`
//! update), published together (one fan-out call per channel), and only then acked. Every
//! per-message promise holds: stored before broadcast, idempotent on
//! `(sender_id, client_message_id)`, gap-free `seq`, ack after commit.
//!
//! A batch never fails a message for another message's fault: when Postgres refuses the batch
//! statement for what is in it (a data or constraint error, not a lost connection or a
//! timeout), the batch is split in halves and each half stored on its own, down to the one
//! message that Postgres refuses, which alone gets an error. Order within a channel is kept
//! (the first half commits first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::delivery::Delivery;
use crate::error::{AppError, AppResult, Code};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::changes::{self, Actor, Change, Changed, Refusal};
use crate::store::messages::{self, Inserted, NewMessage};
use crate::store::{self};

/// Most messages in one batch.
pub const MAX_BATCH: usize = 512;
/// Batches stored and published at once per instance (of different channels: see [`start`]).
pub const PIPELINE: usize = 4;
/// Sends waiting for a transaction, per instance (in the queue, and again gathered by
/// channel); beyond it senders wait their turn.
const QUEUE: usize = 8192;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<AppResult<Inserted>>,
}

/// The sending side of this instance's commit queue, and the path of changes.
pub struct Committer {
    tx: mpsc::Sender<Job>,
    writer: Writer,
}

/// The receiving side, consumed by [`start`].
pub struct CommitQueue(mpsc::Receiver<Job>);

impl Committer {
    pub fn new(writer: Writer) -> (Self, CommitQueue) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx, writer }, CommitQueue(rx))
    }

    /// What the commit loop of [`start`] writes with.
    pub fn writer(&self) -> Writer {
        self.writer.clone()
    }

    /// Applies `change` to message `id` of `channel` for `actor` (in one transaction that takes
    /// the channel's next change number), then publishes it to the channel in change order and
    /// tells the users an edit newly mentions; the answer comes after both. Bounded by
    /// [`store::DEADLINE`].
    pub async fn change(
        &self,
        channel: (Uuid, &str),
        id: Uuid,
        actor: &Actor,
        change: &Change,
    ) -> AppResult<Result<Changed, Refusal>> {
        let (channel_id, name) = channel;
        let changed = store::bounded(changes::apply(
            &self.writer.db,
            channel_id,
            name,
            id,
            actor,
            change,
        ))
        .await?;
        let Ok(changed) = changed else {
            return Ok(changed);
        };
        if let Some(number) = changed.change {
            let m = &changed.message;
            if !changed.new_mentions.is_empty() {
                self.writer.delivery.mention(&changed.new_mentions, m).await;
            }
            let body = change.event_body(name, number, m, actor.id);
            self.writer
                .delivery
                .change(name, number, change.event(), &body)
                .await;
        }
        Ok(Ok(changed))
    }

    /// Stores a message (with whatever else is waiting), publishes it, and returns it.
    /// Bounded by [`store::DEADLINE`]: past it the answer is `unavailable` (the message may
    /// still be stored; a retry with the same `client_message_id` finds it).
    pub async fn submit(&self, message: NewMessage) -> AppResult<Inserted> {
        let (reply, answer) = oneshot::channel();
        let queued = async {
            self.tx
                .send(Job { message, reply })
                .await
                .map_err(|_| AppError::unavailable("database", &"the commit queue is closed"))?;
            answer.await.map_err(|_| {
                AppError::unavailable("database", &"the commit queue dropped the message")
            })?
        };
        match tokio::time::timeout(store::DEADLINE, queued).await {
            Ok(result) => result,
            Err(_) => Err(AppError::unavailable("database", &"the insert timed out")),
        }
    }
}

/// What the commit loop stores with, and publishes and reports through.
#[derive(Clone)]
pub struct Writer {
    /// Changes to messages go through the instance's pool.
    pub db: PgPool,
    /// Sends' batches through their own pool, one connection per lane ([`PIPELINE`]): a batch
    /// never waits for a connection behind reads, and the few backends that store messages
    /// stay warm (the shared pool hands its connections out in turn, so at light load every
    /// insert would land on a backend that has been idle the longest).
    pub lanes: PgPool,
    pub delivery: Delivery,
    pub metrics: Arc<Metrics>,
}

/// Starts this instance's commit loop. When shutdown begins, the queue is closed and what it
/// holds is still stored, published and acked; shutdown waits for it.
///
/// Per-channel pipelining: a channel has at most one batch being stored on this instance. Its
/// next sends wait, and gather, until that batch has committed, then go as one batch (while
/// the first one is published and acked). A second batch of the same channel would only queue
/// in Postgres on the channel's row, locked to take the next seqs until the first one's commit
/// has synced, and would split the waiting sends into small batches. Batches of other channels
/// are stored meanwhile, up to [`PIPELINE`] at once; a batch takes the waiting sends of every
/// channel that has none being stored, oldest first.
pub fn start(writer: Writer, CommitQueue(mut rx): CommitQueue, shutdown: &Shutdown) {
    let tasks = shutdown.clone();
    shutdown.spawn(async move {
        // Each batch gives its channels back once stored, and its lane when it ends (both also
        // if its task panics).
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Freed>();
        let mut gather: Gather<Job> = Gather::default();
        let mut in_flight = 0usize;
        let mut received = Vec::with_capacity(MAX_BATCH);
        let mut open = true;
        let mut stopping = false;
        loop {
            while in_flight < PIPELINE {
                let Some((channels, batch)) = gather.next_batch(MAX_BATCH) else {
                    break;
                };
                in_flight += 1;
                let writer = writer.clone();
                let mut done = Done {
                    tx: done_tx.clone(),
                    channels: Some(channels),
                };
                tasks.spawn(async move {
                    commit(&writer, batch, &mut done).await;
                    drop(done);
                });
            }
            if !open && gather.is_empty() {
                // What is in flight ends on its own (shutdown waits for it).
                return;
            }
            tokio::select! {
                biased;
                Some(freed) = done_rx.recv() => match freed {
                    Freed::Channels(channels) => gather.release(&channels),
                    Freed::Lane => in_flight -= 1,
                },
                n = rx.recv_many(&mut received, MAX_BATCH), if open && gather.len() < QUEUE => {
                    if n == 0 {
                        open = false;
                    }
                    for job in received.drain(..) {
                        gather.push(job.message.channel_id, job);
                    }
                }
                _ = tasks.stopping(), if !stopping => {
                    // No new sends from here on; the loop stores what is queued.
                    rx.close();
                    stopping = true;
                }
            }
        }
    });
}

/// What a batch gives back to the commit loop.
enum Freed {
    /// Its channels: stored, their next sends may go.
    Channels(Vec<Uuid>),
    /// Its lane: published and answered too.
    Lane,
}

/// A batch in flight: gives its channels back once stored ([`Done::stored`]), and its lane
/// when dropped.
struct Done {
    tx: mpsc::UnboundedSender<Freed>,
    channels: Option<Vec<Uuid>>,
}

impl Done {
    fn stored(&mut self) {
        if let Some(channels) = self.channels.take() {
            let _ = self.tx.send(Freed::Channels(channels));
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        self.stored();
        let _ = self.tx.send(Freed::Lane);
    }
}

/// Sends waiting to be stored, by channel, and the channels that have a batch in flight.
struct Gather<J> {
    waiting: HashMap<Uuid, VecDeque<J>>,
    /// The channels with waiting sends, the longest waiting first.
    order: VecDeque<Uuid>,
    in_flight: HashSet<Uuid>,
    len: usize,
}

impl<J> Default for Gather<J> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
            order: VecDeque::new(),
            in_flight: HashSet::new(),
            len: 0,
        }
    }
}

impl<J> Gather<J> {
    fn push(&mut self, channel: Uuid, job: J) {
        let queue = self.waiting.entry(channel).or_default();
        if queue.is_empty() {
            self.order.push_back(channel);
        }
        queue.push_back(job);
        self.len += 1;
    }

    /// Sends waiting, in all.
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The next batch, at most `max` sends: those of every channel without a batch in flight,
    /// the longest waiting channel first, each channel's in the order they came. Its channels
    /// are in flight until [`Gather::release`]. None when no channel can go.
    fn next_batch(&mut self, max: usize) -> Option<(Vec<Uuid>, Vec<J>)> {
        let mut channels = Vec::new();
        let mut jobs = Vec::new();
        let mut kept = VecDeque::with_capacity(self.order.len());
        while let Some(channel) = self.order.pop_front() {
            if jobs.len() >= max {
                kept.push_back(channel);
                kept.extend(self.order.drain(..));
                break;
            }
            if self.in_flight.contains(&channel) {
                kept.push_back(channel);
                continue;
            }
            let Some(queue) = self.waiting.get_mut(&channel) else {
                continue;
            };
            let take = (max - jobs.len()).min(queue.len());
            jobs.extend(queue.drain(..take));
            channels.push(channel);
            self.in_flight.insert(channel);
            if queue.is_empty() {
                self.waiting.remove(&channel);
            } else {
                kept.push_back(channel);
            }
        }
        self.order = kept;
        self.len -= jobs.len();
        (!jobs.is_empty()).then_some((channels, jobs))
    }

    /// The batch of `channels` has ended: their next sends may go.
    fn release(&mut self, channels: &[Uuid]) {
        for channel in channels {
            self.in_flight.remove(channel);
        }
    }
}

/// Stores one batch, gives its channels back, publishes what is new, and answers every
/// sender. (Batches of one channel may be published out of their seq order: the fan-out
/// script delivers each channel's messages in seq order.)
async fn commit(writer: &Writer, jobs: Vec<Job>, done: &mut Done) {
    let (batch, replies): (Vec<NewMessage>, Vec<_>) =
        jobs.into_iter().map(|j| (j.message, j.reply)).unzip();
    let started = Instant::now();
    let outcomes = store_isolating(&writer.lanes, &batch).await;
    done.stored();
    writer
        .metrics
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    writer.metrics.batch_size.observe(batch.len() as f64);
    let fresh: Vec<&crate::contract::Message> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .filter(|o| !o.duplicate)
        .map(|o| &o.message)
        .collect();
    writer
        .metrics
        .channel_messages
        .add(fresh.iter().map(|m| m.channel.as_str()));
    writer.delivery.messages(&fresh).await;
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(outcome);
    }
}

/// Stores `batch`, one outcome per message in input order. A statement refused for its
/// content is retried in halves until the refused message is alone; any other failure (the
/// connection, a timeout) answers every message not yet stored `unavailable`.
async fn store_isolating(db: &PgPool, batch: &[NewMessage]) -> Vec<AppResult<Inserted>> {
    let mut outcomes = Vec::with_capacity(batch.len());
    // Ranges of the batch still to store, in order.
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    pending.push(0..batch.len());
    while let Some(range) = pending.pop() {
        let part = &batch[range.clone()];
        match store::bounded(messages::insert_batch(db, part)).await {
            Ok(stored) => outcomes.extend(stored.into_iter().map(Ok)),
            Err(e) if blames_content(&e) && part.len() > 1 => {
                let mid = range.start + part.len() / 2;
                // Popped from the end: the first half goes first.
                pending.push(mid..range.end);
                pending.push(range.start..mid);
            }
            Err(e) if blames_content(&e) => outcomes.push(Err(refused(&part[0], &e))),
            Err(e) => {
                let error = AppError::unavailable("database", &e);
                let left = part.len() + pending.iter().map(|r| r.len()).sum::<usize>();
                outcomes.extend((0..left).map(|_| Err(error.clone())));
                break;
            }
        }
    }
    outcomes
}

/// Whether Postgres refused a statement for what it holds (data or constraint errors, a
/// trigger's exception), rather than for its own state (connections, resources, shutdown).
fn blames_content(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    ["22", "23", "P0"]
        .iter()
        .any(|class| code.starts_with(class))
}

/// The answer to one message that Postgres refused on its own.
fn refused(message: &NewMessage, e: &sqlx::Error) -> AppError {
    let constraint = match e {
        sqlx::Error::Database(db) => db.constraint().unwrap_or_default().to_owned(),
        _ => String::new(),
    };
    if constraint == "messages_sender_id_fkey" || constraint == "message_keys_sender_id_fkey" {
        // The sender's account was removed while this send was on its way (its sockets are
        // being disconnected: every instance hears of the removal from Postgres).
        tracing::info!(user_id = %message.sender_id, "message of a removed user refused");
        return AppError::new(
            Code::Unauthorized,
            "this account no longer exists; sign in again",
        );
    }
    if constraint == "messages_file_key_fkey" {
        // The upload was removed (never sent within a day, or expired with its messages)
        // between the check of this send and its insert.
        return AppError::from(crate::error::FieldError {
            field: "file.url".into(),
            message: "the file is no longer stored; upload it again".into(),
        });
    }
    tracing::warn!(
        user_id = %message.sender_id,
        channel = %message.channel,
        error = %e,
        "a message passed validation but Postgres refused it"
    );
    AppError::new(
        Code::InvalidPayload,
        "this message cannot be stored; change it and send it again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn a_channel_has_one_batch_in_flight_and_its_next_sends_gather_meanwhile() {
        let [a, b] = ids(2)[..] else { unreachable!() };
        let mut g = Gather::default();
        g.push(a, 1);
        g.push(b, 2);
        g.push(a, 3);
        assert_eq!(g.next_batch(MAX_BATCH), Some((vec![a, b], vec![1, 3, 2])));
        // Both in flight: what comes now waits, whatever the free lanes.
        g.push(a, 4);
        g.push(b, 5);
        g.push(a, 6);
        assert_eq!(g.next_batch(MAX_BATCH), None);
        assert_eq!(g.len(), 3);
        g.release(&[a]);
        assert_eq!(g.next_batch(MAX_BATCH), Some((vec![a], vec![4, 6])));
        assert_eq!(g.next_batch(MAX_BATCH), None);
        g.release(&[b]);
        assert_eq!(g.next_batch(MAX_BATCH), Some((vec![b], vec![5])));
        assert!(g.is_empty());
    }

    #[test]
    fn a_full_batch_leaves_the_rest_in_order_and_the_longest_waiting_channel_goes_first() {
        let [a, b, c] = ids(3)[..] else {
            unreachable!()
        };
        let mut g = Gather::default();
        for i in 0..5 {
            g.push(a, i);
        }
        g.push(b, 10);
        g.push(c, 20);
        assert_eq!(g.next_batch(3), Some((vec![a], vec![0, 1, 2])));
        // a is in flight with sends left; b and c go, in the order they came.
        assert_eq!(g.next_batch(3), Some((vec![b, c], vec![10, 20])));
        g.release(&[a, b, c]);
        g.push(b, 11);
        // a's rest waited longest.
        assert_eq!(g.next_batch(3), Some((vec![a, b], vec![3, 4, 11])));
        assert!(g.is_empty());
    }
}
