//! Client events, one file per concern: [`channels`] (`channel.join`, `channel.leave`,
//! `channel.read`), [`send`] (`message.send`), [`typing`] (`user.typing`), [`sync`]
//! (`messages.sync`) and [`changes`] (`message.edit`, `message.delete`, `reaction.add`,
//! `reaction.remove`). This file registers them and holds what several share: the socket's
//! channel, the send rate limit and mentions. Every payload is taken as raw JSON and read into
//! its type of the [`crate::contract`], so a malformed one gets a clear error and never closes
//! the connection.

mod changes;
mod channels;
mod send;
mod sync;
mod typing;

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use socketioxide::extract::{Event, Extension, SocketRef, TryData};
use uuid::Uuid;

use super::membership::{Conn, JoinedChannel};
use super::reply::Reply;
use super::rooms::user_room;
use crate::contract::{server, ClientEvent, RateLimited};
use crate::error::{AppError, AppResult, Code};
use crate::ratelimit::Verdict;
use crate::realtime::Adapter;
use crate::state::AppState;
use crate::store::{self, channels as channel_store};
use crate::validate;

/// Registers every client event handler on a new socket: one per event of
/// [`client::ALL`](crate::contract::client::ALL) (a test below holds the two together).
pub fn register(s: &SocketRef<Adapter>, state: &AppState) {
    handlers(&mut Registrar::Socket(s, state));
    let state = state.clone();
    s.on_fallback(move |Event(name): Event, reply: Reply| {
        let state = state.clone();
        async move { unknown(&state, &name, reply) }
    });
}

/// Where [`handlers`] puts each handler: on a socket, or (for the test) in a list of names.
enum Registrar<'a> {
    Socket(&'a SocketRef<Adapter>, &'a AppState),
    #[cfg(test)]
    Names(Vec<&'static str>),
}

impl Registrar<'_> {
    fn add<E, R, F, Fut>(&mut self, handler: F)
    where
        E: ClientEvent + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(AppState, SocketRef<Adapter>, Arc<Conn>, E) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = AppResult<R>> + Send + 'static,
    {
        match self {
            Registrar::Socket(s, state) => on(s, state, handler),
            #[cfg(test)]
            Registrar::Names(names) => names.push(E::NAME),
        }
    }
}

/// Every client event's handler, by concern.
fn handlers(r: &mut Registrar<'_>) {
    r.add(channels::join);
    r.add(channels::leave);
    r.add(channels::read);
    r.add(send::send);
    r.add(typing::typing);
    r.add(sync::sync);
    r.add(changes::edit);
    r.add(changes::delete);
    r.add(changes::add_reaction);
    r.add(changes::remove_reaction);
}

/// Registers `handler` for the event of its payload type `E`: it gets the instance, the
/// socket, its state and the payload read and checked; its result is counted and answered (see
/// [`Reply`]). Before anything else, the event takes a place among its socket's events in
/// flight (`EVENTS_IN_FLIGHT_PER_SOCKET`) and is charged its cost (`E::COST`) to the user's
/// budget: either refused is `rate_limited` at once. A payload that is not JSON, or not of the
/// contract, is `invalid_payload` before the handler runs.
fn on<E, R, F, Fut>(s: &SocketRef<Adapter>, state: &AppState, handler: F)
where
    E: ClientEvent + Send + 'static,
    R: Serialize + Send + 'static,
    F: Fn(AppState, SocketRef<Adapter>, Arc<Conn>, E) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = AppResult<R>> + Send + 'static,
{
    let state = state.clone();
    s.on(
        E::NAME,
        move |s: SocketRef<Adapter>,
              Extension(conn): Extension<Arc<Conn>>,
              TryData(data): TryData<Value>,
              reply: Reply| {
            let (state, handler) = (state.clone(), handler.clone());
            async move {
                let result = async {
                    let max = state.config.events_in_flight_per_socket;
                    let counted = conn.clone();
                    let _in_flight = counted.start_event(max).ok_or_else(|| AppError {
                        message: format!(
                            "at most {max} events of one connection are handled at once: wait for their acks"
                        ),
                        ..AppError::rate_limited(100)
                    })?;
                    state.budget.charge(conn.user_id, E::COST)?;
                    let value =
                        data.map_err(|_| AppError::invalid("the event needs a JSON payload"))?;
                    let body = handler(state.clone(), s, conn, E::parse(value)?).await?;
                    serde_json::to_value(body)
                        .map_err(|_| AppError::new(Code::Internal, "the answer failed"))
                }
                .await;
                state.metrics.event_in(E::NAME, &result);
                reply.send(E::NAME, result);
            }
        },
    );
}

/// Any other event: an ack, when one is asked for, says so (no ack, no answer: an `error`
/// event per unknown event would let a client amplify its own traffic).
fn unknown(state: &AppState, name: &str, reply: Reply) {
    if reply.wants_ack() {
        let shown: String = name.chars().take(64).collect();
        let result = Err(AppError::invalid(format!("unknown event {shown:?}")));
        state.metrics.event_in("unknown", &result);
        reply.send("unknown", result);
    }
}

/// The error for an event on a channel the socket is not in: `not_found` when no such channel
/// exists, else `not_in_channel`.
pub(super) async fn outside_channel(state: &AppState, name: &str) -> AppError {
    match channel_store::find(&state.db, name).await {
        Ok(None) => AppError::not_found("channel"),
        Ok(Some(_)) => AppError::new(Code::NotInChannel, "join the channel first"),
        Err(e) => e.into(),
    }
}

/// The socket's channel if it is `name`.
pub(super) async fn joined_channel(
    state: &AppState,
    conn: &Conn,
    raw: &str,
) -> AppResult<JoinedChannel> {
    let name = validate::channel_name(raw)?;
    match conn.channel() {
        Some(current) if current.name == name => Ok(current),
        _ => Err(outside_channel(state, &name).await),
    }
}

/// A send refused by the rate limit.
pub(super) struct Blocked {
    pub(super) retry_after_ms: u64,
    /// The block started with this send (the user's sockets are told once).
    pub(super) new_block: bool,
}

/// Counts one send (or change to a message) against the user's limit, and holds it until its
/// turn when it is over the limit by less than `RATE_LIMIT_HOLD_SECS`. Guests are cheap to
/// make: together, the guests of one client address also have a budget of their own (checked
/// in the same script on one Redis). Chat keeps working while Redis is away: the limit fails
/// open.
pub(super) async fn check_rate(state: &AppState, conn: &Conn) -> Result<(), Blocked> {
    let user = conn.user_id.to_string();
    let address = conn.address.to_string();
    let guest = conn
        .guest
        .then_some((address.as_str(), state.config.guest_messages_per_address));
    match state.limiter.check_send(&user, guest).await {
        Ok(Verdict::Allowed) => Ok(()),
        Ok(Verdict::Held { wait_ms }) => {
            state.metrics.sends_held.inc();
            tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
            Ok(())
        }
        Ok(Verdict::Blocked {
            retry_after_ms,
            new_block,
        }) => Err(Blocked {
            retry_after_ms,
            new_block,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter unavailable, send allowed");
            Ok(())
        }
    }
}

/// Tells every socket of a user, on every instance, that sending is blocked.
pub(super) async fn notify_blocked(state: &AppState, user: Uuid, retry_after_ms: u64) {
    let until = chrono::Utc::now() + chrono::Duration::milliseconds(retry_after_ms as i64);
    let body = RateLimited {
        retry_after_ms,
        until,
    };
    state
        .delivery
        .broadcast(vec![user_room(user)], server::RATE_LIMITED, &body)
        .await;
}

/// The users `text` mentions who may read `channel` (the author aside); in a direct message,
/// the other member too.
pub(super) async fn mentioned(
    state: &AppState,
    author: Uuid,
    channel: &JoinedChannel,
    text: &str,
) -> AppResult<Vec<Uuid>> {
    // In a direct message every message is for the other.
    let mut users = if channel.dm {
        channel_store::other_members(&state.db, channel.id, author).await?
    } else {
        Vec::new()
    };
    let names = crate::mentions::names(text);
    if !names.is_empty() {
        for user in store::users::mentionable(&state.db, &names, channel.id).await? {
            if !users.contains(&user) {
                users.push(user);
            }
        }
    }
    users.retain(|u| *u != author);
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::{handlers, Registrar};
    use crate::contract::client;

    #[test]
    fn every_client_event_has_one_handler() {
        let mut r = Registrar::Names(Vec::new());
        handlers(&mut r);
        let Registrar::Names(mut names) = r else {
            unreachable!()
        };
        names.sort_unstable();
        let mut all = client::ALL.to_vec();
        all.sort_unstable();
        assert_eq!(names, all);
    }
}
