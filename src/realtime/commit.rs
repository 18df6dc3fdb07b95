//! Group commit for `message.send`: sends that arrive while a transaction is running wait for
//! it and are then stored together, in one transaction (one multi-row insert, one `last_seq`
//! update), published together (one fan-out call per channel), and only then acked. Every
//! per-message promise holds: stored before broadcast, idempotent on
//! `(sender_id, client_message_id)`, gap-free `seq`, ack after commit.

use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::error::{AppError, AppResult};
use crate::metrics::METRICS;
use crate::store::messages::{self, Inserted, NewMessage};
use crate::store::{self};
use crate::AppState;

/// Most messages in one batch.
pub const MAX_BATCH: usize = 512;
/// Batches stored and published at once per instance: while one commits, the next gathers
/// and starts (inserts into one channel still commit one after another, in seq order).
const PIPELINE: usize = 4;
/// Sends waiting for a transaction, per instance; beyond it senders wait their turn.
const QUEUE: usize = 8192;

struct Job {
    message: NewMessage,
    reply: oneshot::Sender<Result<Inserted, String>>,
}

/// The sending side of this instance's commit queue.
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

/// The receiving side, consumed by [`start`].
pub struct CommitQueue(mpsc::Receiver<Job>);

impl Committer {
    pub fn new() -> (Self, CommitQueue) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, CommitQueue(rx))
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
                .map_err(|_| "the commit queue is closed".to_owned())?;
            answer
                .await
                .map_err(|_| "the commit queue dropped the message".to_owned())?
        };
        match tokio::time::timeout(store::DEADLINE, queued).await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(e)) => Err(AppError::unavailable("database", &e)),
            Err(_) => Err(AppError::unavailable("database", &"the insert timed out")),
        }
    }
}

/// Starts this instance's commit loop.
pub fn start(state: &AppState, CommitQueue(mut rx): CommitQueue) {
    let state = state.clone();
    tokio::spawn(async move {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PIPELINE));
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        loop {
            // Wait for a free slot first, so that sends gather into the next batch meanwhile.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                return;
            }
            let batch: Vec<Job> = std::mem::replace(&mut jobs, Vec::with_capacity(MAX_BATCH));
            let state = state.clone();
            tokio::spawn(async move {
                commit(&state, batch).await;
                drop(slot);
            });
        }
    });
}

/// Stores one batch, publishes what is new, and answers every sender.
async fn commit(state: &AppState, jobs: Vec<Job>) {
    let (batch, replies): (Vec<NewMessage>, Vec<_>) =
        jobs.into_iter().map(|j| (j.message, j.reply)).unzip();
    let started = Instant::now();
    let result = store::bounded(messages::insert_batch(&state.db, &batch)).await;
    METRICS
        .commit_seconds
        .observe(started.elapsed().as_secs_f64());
    METRICS.batch_size.observe(batch.len() as f64);
    match result {
        Ok(outcomes) => {
            let fresh: Vec<&messages::Message> = outcomes
                .iter()
                .filter(|o| !o.duplicate)
                .map(|o| &o.message)
                .collect();
            state.fanout.publish(state, &fresh).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let e = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
