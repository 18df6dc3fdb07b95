//! Client events: `channel.join`, `channel.leave`, `message.send`, `user.typing`,
//! `messages.sync`. Every payload is taken as raw JSON and read into its type of the
//! [`crate::contract`], so a malformed one gets a clear error and never closes the connection.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use socketioxide::extract::{Event, Extension, SocketRef, TryData};
use uuid::Uuid;

use super::membership::Conn;
use super::reply::Reply;
use super::rooms::{channel_room, user_room};
use crate::access;
use crate::auth::verify_password;
use crate::contract::{
    server, AddReaction, ChangeAck, ChannelRead, ClientEvent, DeleteMessage, EditMessage,
    JoinChannel, Joined, LeaveChannel, Left, MessageDeleted, MessageReactions, MessageUpdated,
    RateLimited, ReadAck, ReadChannel, RemoveReaction, SendMessage, Sent, SetTyping, SyncMessages,
    Synced, TypingAck, UserTyping,
};
use crate::error::{AppError, AppResult, Code};
use crate::ratelimit::Verdict;
use crate::store::changes::{self, Actor, Change, Refusal};
use crate::store::messages::{self, NewMessage, Page, Quote};
use crate::store::{self, channels};
use crate::{validate, Adapter, AppState};

/// Relayed typing changes per socket are at least this far apart (about 2/s), whichever way.
const TYPING_INTERVAL: Duration = Duration::from_millis(500);

/// Registers every client event handler on a new socket.
pub fn register(s: &SocketRef<Adapter>, state: &AppState) {
    on(s, state, join);
    on(s, state, leave);
    on(s, state, send);
    on(s, state, typing);
    on(s, state, sync);
    on(s, state, edit);
    on(s, state, delete);
    on(s, state, add_reaction);
    on(s, state, remove_reaction);
    on(s, state, read);
    let state = state.clone();
    s.on_fallback(move |Event(name): Event, reply: Reply| {
        let state = state.clone();
        async move { unknown(&state, &name, reply) }
    });
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
async fn outside_channel(state: &AppState, name: &str) -> AppError {
    match channels::find(&state.db, name).await {
        Ok(None) => AppError::not_found("channel"),
        Ok(Some(_)) => AppError::new(Code::NotInChannel, "join the channel first"),
        Err(e) => e.into(),
    }
}

/// The socket's channel if it is `name`.
async fn joined_channel(state: &AppState, conn: &Conn, raw: &str) -> AppResult<(String, Uuid)> {
    let name = validate::channel_name(raw)?;
    match conn.channel() {
        Some((current, id)) if current == name => Ok((current, id)),
        _ => Err(outside_channel(state, &name).await),
    }
}

async fn join(
    state: AppState,
    s: SocketRef<Adapter>,
    conn: Arc<Conn>,
    JoinChannel { channel, password }: JoinChannel,
) -> AppResult<Joined> {
    {
        let (channel, readable) = access::channel_for(&state, &channel, conn.user_id).await?;
        if !readable {
            let refused = || {
                AppError::new(
                    Code::Forbidden,
                    "this channel is private: a wrong or missing password",
                )
            };
            // A direct-message channel has its two members and nobody else.
            if channel.is_dm() {
                return Err(refused());
            }
            let password = password.ok_or_else(refused)?;
            // Counted before the hash: guesses are capped per user and paced per channel.
            let user = conn.user_id.to_string();
            if let Some(wait) = state.limiter.channel_guess(&user, &channel.name).await? {
                return Err(AppError::rate_limited(wait));
            }
            if !verify_password(password, channel.password_hash.clone()).await? {
                return Err(refused());
            }
            if let Err(e) = state.limiter.channel_guess_succeeded(&user).await {
                tracing::debug!(error = %e, "channel guess not forgiven");
            }
            channels::add_member(&state.db, channel.id, conn.user_id).await?;
        }
        let online = state.membership.switch_channel(&s, &conn, &channel).await?;
        // A first visit starts the user's read position at the newest message (history is
        // there to read); a later one keeps it.
        if let Err(e) = channels::start_reading(&state.db, conn.user_id, channel.id).await {
            tracing::debug!(error = %e, "read position not started");
        }
        if let Err(e) = s.emit(server::CHANNEL_JOINED, &channel.name) {
            tracing::debug!(sid = %s.id, error = %e, "channel.joined not delivered");
        }
        Ok(Joined {
            channel: channel.view(),
            online,
        })
    }
}

async fn leave(
    state: AppState,
    s: SocketRef<Adapter>,
    conn: Arc<Conn>,
    LeaveChannel { channel }: LeaveChannel,
) -> AppResult<Left> {
    let name = validate::channel_name(&channel)?;
    if state.membership.leave_channel(&s, &conn, &name).await {
        Ok(Left {})
    } else {
        Err(outside_channel(&state, &name).await)
    }
}

async fn send(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    request: SendMessage,
) -> AppResult<Sent> {
    let file = request.file_ref();
    let SendMessage {
        channel,
        text,
        client_message_id,
        reply_to,
        ..
    } = request;
    let started = Instant::now();
    let result = async {
        let (channel, channel_id) = joined_channel(&state, &conn, &channel).await?;
        let text = validate::message_text(&text)?;

        match check_rate(&state, &conn).await {
            Ok(()) => {}
            Err(Blocked {
                retry_after_ms,
                new_block,
            }) => {
                // A retry of a stored message gets that message back, even while blocked.
                if let Some(message) = store::bounded(messages::find_by_client_id(
                    &state.db,
                    conn.user_id,
                    client_message_id,
                ))
                .await?
                {
                    return Ok(Sent {
                        message,
                        duplicate: true,
                    });
                }
                if new_block {
                    notify_blocked(&state, conn.user_id, retry_after_ms).await;
                }
                return Err(AppError::rate_limited(retry_after_ms));
            }
        }
        let text = state.filter.apply(&text);
        let reply_to = match reply_to {
            Some(id) => Some(quote(&state, channel_id, id).await?),
            None => None,
        };
        let mentions = mentioned(&state, conn.user_id, channel_id, &channel, &text).await?;
        // An upload of the sender's becomes the stored file (its bytes checked now if they
        // went straight to S3); a link stays a link.
        let file = match file {
            Some(file) => Some(state.uploads.resolve(&state.db, conn.user_id, file).await?),
            None => None,
        };

        // Stored with whatever else arrived meanwhile (group commit), published, then acked.
        let inserted = state
            .committer
            .submit(NewMessage {
                channel_id,
                channel,
                sender_id: conn.user_id,
                sender_name: conn.username.clone(),
                text,
                client_message_id,
                file,
                reply_to,
                mentions,
            })
            .await?;
        Ok(Sent {
            message: inserted.message,
            duplicate: inserted.duplicate,
        })
    }
    .await;
    state
        .metrics
        .send_seconds
        .observe(started.elapsed().as_secs_f64());
    result
}

/// A send refused by the rate limit.
struct Blocked {
    retry_after_ms: u64,
    /// The block started with this send (the user's sockets are told once).
    new_block: bool,
}

/// Counts one send (or change to a message) against the user's limit. Guests are cheap to
/// make: together, the guests of one client address also have a budget of their own (checked
/// in the same script on one Redis). Chat keeps working while Redis is away: the limit fails
/// open.
async fn check_rate(state: &AppState, conn: &Conn) -> Result<(), Blocked> {
    let user = conn.user_id.to_string();
    let address = conn.address.to_string();
    let guest = conn
        .guest
        .then_some((address.as_str(), state.config.guest_messages_per_address));
    match state.limiter.check_send(&user, guest).await {
        Ok(Verdict::Allowed) => Ok(()),
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

/// The users `text` mentions who may read the channel (the author aside); in a direct-message
/// channel, the other member too.
async fn mentioned(
    state: &AppState,
    author: Uuid,
    channel_id: Uuid,
    channel: &str,
    text: &str,
) -> AppResult<Vec<Uuid>> {
    // In a direct-message channel (its name is reserved) every message is for the other.
    let mut users = if channel.starts_with(channels::DM_PREFIX) {
        channels::other_members(&state.db, channel_id, author).await?
    } else {
        Vec::new()
    };
    let names = crate::mentions::names(text);
    if !names.is_empty() {
        for user in store::users::mentionable(&state.db, &names, channel_id).await? {
            if !users.contains(&user) {
                users.push(user);
            }
        }
    }
    users.retain(|u| *u != author);
    Ok(users)
}

/// The quote of message `id` for a reply: it must be a kept, undeleted message of the channel.
async fn quote(state: &AppState, channel_id: Uuid, id: Uuid) -> AppResult<Quote> {
    let unknown = || {
        AppError::from(crate::error::FieldError {
            field: "reply_to".into(),
            message: "no such message in this channel".into(),
        })
    };
    let message = messages::find_by_id(&state.db, channel_id, id)
        .await?
        .ok_or_else(unknown)?;
    if message.deleted {
        return Err(unknown());
    }
    Ok(Quote {
        id: message.id,
        seq: message.seq,
        sender: Some(message.sender),
        text: Some(messages::excerpt(&message.text)),
        deleted: false,
    })
}

/// Tells every socket of a user, on every instance, that sending is blocked.
async fn notify_blocked(state: &AppState, user: Uuid, retry_after_ms: u64) {
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

async fn typing(
    state: AppState,
    s: SocketRef<Adapter>,
    conn: Arc<Conn>,
    SetTyping { channel, is_typing }: SetTyping,
) -> AppResult<TypingAck> {
    {
        let (channel, _) = joined_channel(&state, &conn, &channel).await?;
        let relayed = {
            let mut t = conn
                .typing
                .lock()
                .map_err(|_| AppError::new(Code::Internal, "typing state unavailable"))?;
            let wanted = (channel.clone(), is_typing);
            t.wanted = Some(wanted.clone());
            if t.relayed.as_ref() == Some(&wanted) {
                // No change: nothing to tell the channel.
                false
            } else if t.at.is_some_and(|at| at.elapsed() < TYPING_INTERVAL) {
                // A change too soon: the state at the end of the interval is relayed then.
                if !t.scheduled {
                    t.scheduled = true;
                    let wait = TYPING_INTERVAL
                        .saturating_sub(t.at.map(|a| a.elapsed()).unwrap_or_default());
                    state.shutdown.spawn(trailing_typing(
                        state.clone(),
                        s.clone(),
                        conn.clone(),
                        wait,
                    ));
                }
                false
            } else {
                t.relayed = Some(wanted);
                t.at = Some(Instant::now());
                true
            }
        };
        if !relayed {
            return Ok(TypingAck { throttled: true });
        }
        relay_typing(&state, &s, &conn, &channel, is_typing).await;
        Ok(TypingAck { throttled: false })
    }
}

/// Sends a socket's typing state to the rest of its channel.
async fn relay_typing(
    state: &AppState,
    s: &SocketRef<Adapter>,
    conn: &Conn,
    channel: &str,
    is_typing: bool,
) {
    let body = UserTyping {
        user_id: conn.user_id,
        username: &conn.username,
        channel,
        is_typing,
    };
    state
        .delivery
        .broadcast_from(
            Some(s),
            vec![channel_room(channel)],
            server::USER_TYPING,
            &body,
        )
        .await;
}

/// After a throttled change, relays the socket's latest typing state once the interval is
/// over, if it still differs from what the channel was told (so the last state always arrives).
async fn trailing_typing(state: AppState, s: SocketRef<Adapter>, conn: Arc<Conn>, wait: Duration) {
    tokio::time::sleep(wait).await;
    let due = {
        let Ok(mut t) = conn.typing.lock() else {
            return;
        };
        t.scheduled = false;
        match t.wanted.clone() {
            Some(wanted) if t.relayed.as_ref() != Some(&wanted) => {
                t.relayed = Some(wanted.clone());
                t.at = Some(Instant::now());
                Some(wanted)
            }
            _ => None,
        }
    };
    if let Some((channel, is_typing)) = due {
        // Only while the socket is still in that channel.
        if conn
            .channel()
            .is_some_and(|(current, _)| current == channel)
        {
            relay_typing(&state, &s, &conn, &channel, is_typing).await;
        }
    }
}

async fn sync(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    request: SyncMessages,
) -> AppResult<Synced> {
    let (after, limit) = (request.after_seq, request.limit());
    let channel = access::readable_channel(&state, &request.channel, conn.user_id).await?;
    let db = state.reads.messages(channel.id).await?;
    let paged = messages::page(
        db,
        channel.id,
        Page::After(after),
        limit + 1,
        Some(conn.user_id),
    )
    .await?;
    let mut page = paged.messages;
    let mut has_more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    has_more |= messages::fit_page(&mut page, messages::Keep::First);
    // Changes to the messages the client already has (up to `after_seq`); the page holds the
    // newer ones as they are now, every change up to `paged.last_change` included.
    let (changes, changes_has_more, last_change) = match request.after_change {
        Some(after_change) if after_change < paged.last_change => {
            let range = (after_change, paged.last_change);
            let mut changed =
                changes::since(db, channel.id, range, after, limit + 1, conn.user_id).await?;
            let mut more = changed.len() as i64 > limit;
            changed.truncate(limit as usize);
            more |= messages::fit_page(&mut changed, messages::Keep::First);
            let cursor = match changed.last().and_then(|m| m.change) {
                Some(last) if more => last,
                _ => paged.last_change,
            };
            (changed, more, cursor)
        }
        _ => (Vec::new(), false, paged.last_change),
    };
    // Read after the page; what a retention pass removed meanwhile leaves the answer too, so
    // that it holds nothing older than its `first_seq`.
    let first_seq = channels::first_seq(db, channel.id).await?;
    page.retain(|m| m.seq >= first_seq);
    let mut changes = changes;
    changes.retain(|m| m.seq >= first_seq);
    Ok(Synced {
        messages: page,
        has_more,
        first_seq,
        changes,
        changes_has_more,
        last_change,
    })
}

async fn read(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    ReadChannel { channel, seq }: ReadChannel,
) -> AppResult<ReadAck> {
    let channel = access::readable_channel(&state, &channel, conn.user_id).await?;
    // Only a move forward is written (and told to the user's sockets); a repeat costs one
    // index lookup.
    let (read_seq, moved) = channels::mark_read(&state.db, conn.user_id, channel.id, seq).await?;
    if moved {
        let body = ChannelRead {
            channel: channel.name,
            read_seq,
        };
        state
            .delivery
            .broadcast(vec![user_room(conn.user_id)], server::CHANNEL_READ, &body)
            .await;
    }
    Ok(ReadAck { read_seq })
}

async fn edit(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    EditMessage { channel, id, text }: EditMessage,
) -> AppResult<ChangeAck> {
    let text = validate::message_text(&text)?;
    let text = state.filter.apply(&text);
    // Its mentions are resolved by `change_message`, in the channel the change applies to.
    let change = Change::Edit {
        text,
        mentions: Vec::new(),
    };
    change_message(&state, &conn, &channel, id, change).await
}

async fn delete(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    DeleteMessage { channel, id }: DeleteMessage,
) -> AppResult<ChangeAck> {
    change_message(&state, &conn, &channel, id, Change::Delete).await
}

async fn add_reaction(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    AddReaction { channel, id, emoji }: AddReaction,
) -> AppResult<ChangeAck> {
    let change = Change::React { emoji, add: true };
    change_message(&state, &conn, &channel, id, change).await
}

async fn remove_reaction(
    state: AppState,
    _: SocketRef<Adapter>,
    conn: Arc<Conn>,
    RemoveReaction { channel, id, emoji }: RemoveReaction,
) -> AppResult<ChangeAck> {
    let change = Change::React { emoji, add: false };
    change_message(&state, &conn, &channel, id, change).await
}

/// Edits, deletes or reacts to message `id` of a channel this socket has joined; a change
/// counts against the sender's rate limit like a send. What changed goes to the channel in
/// change order; the ack is the message as it now is.
async fn change_message(
    state: &AppState,
    conn: &Conn,
    raw_channel: &str,
    id: Uuid,
    mut change: Change,
) -> AppResult<ChangeAck> {
    let (channel, channel_id) = joined_channel(state, conn, raw_channel).await?;
    if let Err(blocked) = check_rate(state, conn).await {
        if blocked.new_block {
            notify_blocked(state, conn.user_id, blocked.retry_after_ms).await;
        }
        return Err(AppError::rate_limited(blocked.retry_after_ms));
    }
    // An edit's mentions: users who may read this channel, the one whose message it changes
    // (never the channel the socket happens to be in meanwhile).
    if let Change::Edit { text, mentions } = &mut change {
        *mentions = mentioned(state, conn.user_id, channel_id, &channel, text).await?;
    }
    let moderator = matches!(change, Change::Delete) && may_moderate(state, conn, &channel).await?;
    let actor = Actor {
        id: conn.user_id,
        name: conn.username.clone(),
        moderator,
    };
    let changed = store::bounded(changes::apply(
        &state.db, channel_id, &channel, id, &actor, &change,
    ))
    .await?
    .map_err(|refusal| refused_change(refusal, &change))?;
    if let Some(number) = changed.change {
        let m = &changed.message;
        match &change {
            Change::Edit { .. } => {
                if !changed.new_mentions.is_empty() {
                    state.delivery.mention(&changed.new_mentions, m).await;
                }
                let body = MessageUpdated {
                    channel: channel.clone(),
                    id: m.id,
                    seq: m.seq,
                    change: number,
                    text: m.text.clone(),
                    edited_at: m.edited_at,
                };
                state
                    .delivery
                    .change(&channel, number, server::MESSAGE_UPDATED, &body)
                    .await;
            }
            Change::Delete => {
                let body = MessageDeleted {
                    channel: channel.clone(),
                    id: m.id,
                    seq: m.seq,
                    change: number,
                };
                state
                    .delivery
                    .change(&channel, number, server::MESSAGE_DELETED, &body)
                    .await;
                if let Some(key) = changed.file_key {
                    // The file goes with its message, unless another kept message carries it.
                    match store::uploads::delete_unreferenced(&state.db, &[key]).await {
                        Ok(gone) => state.uploads.delete_objects(&gone).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "a deleted message's file was not removed; retention removes it")
                        }
                    }
                }
            }
            Change::React { emoji, add } => {
                let body = MessageReactions {
                    channel: channel.clone(),
                    id: m.id,
                    seq: m.seq,
                    change: number,
                    // Counts only: whether a reader gave one is theirs to know.
                    reactions: m
                        .reactions
                        .iter()
                        .map(|r| messages::Reaction {
                            me: false,
                            ..r.clone()
                        })
                        .collect(),
                    user_id: conn.user_id,
                    emoji: emoji.clone(),
                    added: *add,
                };
                state
                    .delivery
                    .change(&channel, number, server::MESSAGE_REACTIONS, &body)
                    .await;
            }
        }
    }
    Ok(ChangeAck {
        message: changed.message,
    })
}

/// Whether the user may delete others' messages in `channel`: an administrator, or the
/// channel's owner (its creator; a direct-message channel has none).
async fn may_moderate(state: &AppState, conn: &Conn, channel: &str) -> AppResult<bool> {
    if state.config.is_admin(&conn.username, conn.guest) {
        return Ok(true);
    }
    let owner = channels::find(&state.db, channel)
        .await?
        .and_then(|c| c.owner());
    Ok(owner == Some(conn.user_id))
}

/// The answer to a refused change.
fn refused_change(refusal: Refusal, change: &Change) -> AppError {
    match (refusal, change) {
        (Refusal::NotFound, _) => AppError::not_found("message"),
        (Refusal::Deleted, _) => AppError::new(Code::NotFound, "this message was deleted"),
        (Refusal::NotYours, Change::Delete) => AppError::new(
            Code::Forbidden,
            "only the sender, the channel's owner or an administrator may delete this message",
        ),
        (Refusal::NotYours, _) => {
            AppError::new(Code::Forbidden, "only the sender may edit a message")
        }
        (Refusal::TooManyReactions, _) => AppError::new(
            Code::Conflict,
            format!(
                "a message holds at most {} different reactions",
                changes::MAX_REACTIONS
            ),
        ),
    }
}
