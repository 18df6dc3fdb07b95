//! Instructions between instances: the one path on which one instance tells every instance to
//! act on its sockets (disconnect a user, disconnect a session, make a user leave a channel).
//!
//! They travel as Postgres notifications on [`CHANNEL`], with an [`Instruction`] as JSON
//! payload, and every instance listens. Postgres is the carrier because most instructions
//! follow a change stored there: a ban and a removed account are announced by triggers (see
//! the migrations), so the instruction leaves exactly when the change commits, also for a
//! change an operator makes in SQL; the others (a logout, a removal from a channel) are sent
//! with [`send`]. The instance that gives an instruction also applies it to its own sockets at
//! once, before it answers; applying one twice changes nothing. An instruction given while an
//! instance's listener is away (Postgres restarting) does not reach that instance; what it
//! guarded is still enforced where it matters: the handshake refuses banned users, removed
//! accounts and revoked sessions, and a send or a join checks the membership in Postgres.
//!
//! Server events for clients (presence, typing, notices) do not travel here but on the event
//! relay through Redis ([`super::delivery`]).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use std::sync::Arc;

use super::delivery::Delivery;
use super::rooms;
use crate::ops::Ops;
use crate::shutdown::Shutdown;

/// The notification channel every instance listens on.
pub const CHANNEL: &str = "banter_instructions";

/// How long the listener waits before it tries Postgres again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What every instance is to do with its sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Instruction {
    /// Disconnect every socket of a user (banned, or the account removed).
    DisconnectUser { user: Uuid },
    /// Disconnect every socket of one session (logged out).
    DisconnectSession { session: Uuid },
    /// A user's sockets leave a channel they were removed from.
    Leave { user: Uuid, channel: String },
    /// An instance starts draining (`drain`), or takes sessions again.
    Drain { instance: String, drain: bool },
}

/// Sends `instruction` to every instance (this one too).
pub async fn send(db: &PgPool, instruction: &Instruction) -> Result<(), sqlx::Error> {
    let payload =
        serde_json::to_string(instruction).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(db)
        .await?;
    Ok(())
}

/// Applies `instruction` to this instance's sockets.
pub async fn apply(delivery: &Delivery, ops: &Ops, instruction: Instruction) {
    match instruction {
        Instruction::DisconnectUser { user } => {
            tracing::info!(user_id = %user, "user removed or banned: disconnecting their sockets");
            delivery.disconnect_local(rooms::user_room(user)).await;
        }
        Instruction::DisconnectSession { session } => {
            delivery
                .disconnect_local(rooms::session_room(session))
                .await;
        }
        Instruction::Leave { user, channel } => delivery.leave_here(user, channel),
        Instruction::Drain { instance, drain } => {
            if instance == ops.instance {
                if drain {
                    ops.drain.start("an administrator's request");
                } else {
                    ops.drain.stop("an administrator's request");
                }
            }
        }
    }
}

/// A Postgres connection listening for instructions.
async fn connect(db: &PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(db).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Listens for instructions and applies them to this instance's sockets. Listening is in place
/// when this returns (or, if Postgres refused it, retried in the background); the listener
/// reconnects by itself after Postgres comes back.
pub async fn listen(db: &PgPool, delivery: &Delivery, ops: &Arc<Ops>, shutdown: &Shutdown) {
    let first = connect(db).await;
    let (db, delivery, ops) = (db.clone(), delivery.clone(), ops.clone());
    shutdown.spawn_until_stopped(async move {
        let mut listener = match first {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for instructions; retrying");
                loop {
                    tokio::time::sleep(RETRY).await;
                    match connect(&db).await {
                        Ok(l) => break l,
                        Err(e) => tracing::warn!(error = %e, "cannot listen for instructions"),
                    }
                }
            }
        };
        loop {
            match listener.recv().await {
                Ok(note) => match serde_json::from_str::<Instruction>(note.payload()) {
                    Ok(instruction) => apply(&delivery, &ops, instruction).await,
                    Err(e) => tracing::warn!(error = %e, "unreadable instruction"),
                },
                Err(e) => {
                    tracing::warn!(error = %e, "instruction listener lost Postgres; reconnecting");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triggers in the migrations write these payloads by hand: they must stay readable.
    #[test]
    fn the_payloads_the_triggers_write_are_instructions() {
        let user = Uuid::nil();
        assert_eq!(
            serde_json::from_str::<Instruction>(&format!(
                r#"{{"op": "disconnect_user", "user": "{user}"}}"#
            ))
            .ok(),
            Some(Instruction::DisconnectUser { user })
        );
        let leave = Instruction::Leave {
            user,
            channel: "club".into(),
        };
        let text = serde_json::to_string(&leave).unwrap_or_default();
        assert_eq!(serde_json::from_str::<Instruction>(&text).ok(), Some(leave));
    }
}
