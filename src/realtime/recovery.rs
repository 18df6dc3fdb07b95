//! Socket.IO connection state recovery, on any instance and after any instance's death.
//!
//! The CONNECT answer carries a private session id (`pid`, through the patched socketioxide's
//! `Socket::set_pid`); every durable event carries an offset ([`super::positions`]). A client
//! that reconnects sends both back (`auth.pid`, `auth.offset`). The session is recovered when:
//!
//! - its record ([`Recovery`], in Redis: user, session, instance, socket, channel) names the
//!   same user and session (a pid is worth nothing to anyone else, and a logout or ban ends the
//!   session before any handshake), and
//! - it disconnected at most `RECOVERY_MAX_DISCONNECT_SECS` ago: when its instance saw the
//!   disconnect, or when its instance was found gone (SIGKILL) — while that instance's
//!   heartbeat lives or it awaits its reaping, the socket counts as just disconnected, and
//! - its offset is in its channel, which the user may still read, and what it missed is still
//!   stored (retention, the change log) and at most [`MAX_REPLAY`] messages and as many changes.
//!
//! Then the answer carries the same pid (`socket.recovered` on the client), the socket is put
//! back in its channel, and what it missed is replayed from Postgres in order: the messages
//! after its seq as they are now, then each change (edit, delete, reaction) after its change
//! number to the messages it had, as the event it missed (the message's state as it is now).
//! Otherwise the socket starts fresh, with a new pid, in the default channel.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::extract::SocketRef;
use socketioxide::socket::DisconnectReason;
use uuid::Uuid;

use super::membership::Session;
use super::positions::{self, Caught, Offset, Position, Step};
use super::Adapter;
use crate::clock::now_ms;
use crate::contract::server;
use crate::keys::Keys;
use crate::kv::Redis;
use crate::state::AppState;
use crate::store::changes::{self, Logged};
use crate::store::channels::{self, Channel};
use crate::store::messages::{self, Page};

/// Most messages, and most changes, one recovery replays; a client that missed more starts
/// fresh (and reads history).
pub const MAX_REPLAY: i64 = 1000;

/// Longest pid accepted from a client.
const MAX_PID_LEN: usize = 64;

/// How long logged changes are kept at least (the recovery window doubled, when longer).
const CHANGE_LOG_MIN_KEEP: Duration = Duration::from_secs(600);

/// How often old logged changes are removed.
const CHANGE_LOG_SWEEP: Duration = Duration::from_secs(60);

/// A session's record: `HSET` fields of `keys.recovery(pid)`.
#[derive(Debug, Default)]
struct Record {
    user: String,
    jti: String,
    instance: String,
    channel: String,
    /// When its instance saw the disconnect (ms), 0 while connected.
    at: u64,
}

// Changes the record only if it still belongs to socket ARGV[1] (a newer socket of the same
// session may have recovered it meanwhile). ARGV[2]: 'channel' (ARGV[3]: the channel),
// 'closed' (ARGV[3]: now ms, ARGV[4]: window ms), or 'ended'.
const UPDATE: &str = r"
if redis.call('HGET', KEYS[1], 'sid') ~= ARGV[1] then return 0 end
if ARGV[2] == 'channel' then
  redis.call('HSET', KEYS[1], 'channel', ARGV[3])
elseif ARGV[2] == 'closed' then
  redis.call('HSET', KEYS[1], 'at', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// The records of recoverable sessions, in Redis.
pub struct Recovery {
    redis: Redis,
    keys: Keys,
    window: Duration,
    /// How long a connected socket's record lives (a session's lifetime).
    session_ttl: Duration,
    instance: String,
    update: Script,
}

impl Recovery {
    pub fn new(
        redis: Redis,
        keys: Keys,
        window: Duration,
        session_ttl: Duration,
        instance: String,
    ) -> Self {
        Recovery {
            redis,
            keys,
            window,
            session_ttl,
            instance,
            update: Script::new(UPDATE),
        }
    }

    /// Whether recovery is on (`RECOVERY_MAX_DISCONNECT_SECS` > 0).
    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    /// A new private session id.
    pub fn new_pid() -> String {
        Uuid::new_v4().simple().to_string()
    }

    /// Records socket `sid` of `session` as connected here under `pid`, in `channel`.
    pub async fn open(&self, pid: &str, session: &Session, sid: &str, channel: Option<&str>) {
        let mut conn = self.redis.clone();
        let key = self.keys.recovery(pid);
        let result: redis::RedisResult<()> = redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg("user")
            .arg(session.user_id.to_string())
            .arg("jti")
            .arg(session.jti.to_string())
            .arg("instance")
            .arg(&self.instance)
            .arg("sid")
            .arg(sid)
            .arg("channel")
            .arg(channel.unwrap_or(""))
            .arg("at")
            .arg(0)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(self.session_ttl.as_millis() as u64)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "recovery record not written");
        }
    }

    async fn update(&self, pid: &str, sid: &str, args: &[String]) {
        let mut conn = self.redis.clone();
        let mut call = self.update.prepare_invoke();
        call.key(self.keys.recovery(pid)).arg(sid);
        for a in args {
            call.arg(a);
        }
        let result: redis::RedisResult<i64> = call.invoke_async(&mut conn).await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "recovery record not updated");
        }
    }

    /// Socket `sid` (session `pid`) is now in `channel` (or in none).
    pub async fn moved(&self, pid: &str, sid: &str, channel: Option<&str>) {
        let args = ["channel".to_owned(), channel.unwrap_or("").to_owned()];
        self.update(pid, sid, &args).await;
    }

    /// Socket `sid` disconnected: recoverable for the window from now, or (a disconnect the
    /// client or the server asked for: a logout, a ban) never.
    pub async fn closed(&self, pid: &str, sid: &str, reason: DisconnectReason) {
        let args = if recoverable(reason) {
            vec![
                "closed".to_owned(),
                now_ms().to_string(),
                self.window.as_millis().to_string(),
            ]
        } else {
            vec!["ended".to_owned()]
        };
        self.update(pid, sid, &args).await;
    }

    /// Instance `instance` stopped without disconnecting its sockets (it was reaped, or it is
    /// this instance shutting down): its sockets count as disconnected from now.
    pub async fn gone(&self, instance: &str) {
        let mut conn = self.redis.clone();
        let result: redis::RedisResult<()> = redis::cmd("SET")
            .arg(self.keys.instance_gone(instance))
            .arg(now_ms())
            .arg("PX")
            .arg(self.window.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, instance, "instance's departure not recorded");
        }
    }

    async fn find(&self, pid: &str) -> redis::RedisResult<Option<Record>> {
        let mut conn = self.redis.clone();
        let fields: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.recovery(pid))
            .query_async(&mut conn)
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        Ok(Some(Record {
            user: get("user"),
            jti: get("jti"),
            instance: get("instance"),
            channel: get("channel"),
            at: get("at").parse().unwrap_or(0),
        }))
    }

    /// When the record's socket disconnected (ms), as well as the cluster can tell; `None` when
    /// that was longer ago than the window.
    async fn disconnected_at(&self, record: &Record) -> redis::RedisResult<Option<u64>> {
        if record.at > 0 {
            return Ok(Some(record.at));
        }
        let mut conn = self.redis.clone();
        // Its instance is alive (the socket is going or just went), or dead but not reaped yet.
        let alive: bool = redis::cmd("EXISTS")
            .arg(self.keys.heartbeat(&record.instance))
            .query_async(&mut conn)
            .await?;
        let listed: bool = redis::cmd("SISMEMBER")
            .arg(self.keys.instances())
            .arg(&record.instance)
            .query_async(&mut conn)
            .await?;
        if alive || listed {
            return Ok(Some(now_ms()));
        }
        let gone: Option<u64> = redis::cmd("GET")
            .arg(self.keys.instance_gone(&record.instance))
            .query_async(&mut conn)
            .await?;
        Ok(gone)
    }

    /// The record of `pid` when `session` may recover it now.
    async fn recoverable(&self, pid: &str, session: &Session) -> Option<Record> {
        let record = match self.find(pid).await {
            Ok(Some(record)) => record,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "recovery record not read");
                return None;
            }
        };
        if record.user != session.user_id.to_string() || record.jti != session.jti.to_string() {
            tracing::info!(user_id = %session.user_id, "a session's pid from another session refused");
            return None;
        }
        let at = match self.disconnected_at(&record).await {
            Ok(Some(at)) => at,
            Ok(None) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "recovery record not read");
                return None;
            }
        };
        (now_ms().saturating_sub(at) <= self.window.as_millis() as u64).then_some(record)
    }
}

/// Whether a disconnect leaves the session recoverable: a lost transport or a server going
/// down does; a disconnect the client asked for, or the server decided (logout, ban, removal,
/// a malformed packet), does not.
fn recoverable(reason: DisconnectReason) -> bool {
    matches!(
        reason,
        DisconnectReason::TransportClose
            | DisconnectReason::TransportError
            | DisconnectReason::HeartbeatTimeout
            | DisconnectReason::ClosingServer
            | DisconnectReason::MultipleHttpPollingError
    )
}

/// A durable event replayed to a recovered socket.
struct Replayed {
    step: Step,
    event: &'static str,
    data: Box<RawValue>,
}

/// What a recovered socket is sent after its CONNECT answer, kept in its extensions.
pub struct Replay {
    channel: String,
    events: Vec<Replayed>,
    /// The position the client had.
    from: Position,
    /// The position the replay takes it to.
    to: Position,
}

/// A recovered session: its pid, the channel it is back in (and its replay), if any.
pub struct Restored {
    pub pid: String,
    pub channel: Option<Channel>,
}

/// Whether the handshake of `s` recovers a session (see the module's documentation). When it
/// does, `s` is in its channel's room and catching up, and its replay waits in its
/// extensions for [`replay`].
pub async fn restore(
    state: &AppState,
    s: &SocketRef<Adapter>,
    session: &Session,
    auth: Option<&Value>,
) -> Option<Restored> {
    let recovery = &state.recovery;
    if !recovery.enabled() {
        return None;
    }
    let auth = auth?;
    let pid = auth
        .get("pid")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty() && p.len() <= MAX_PID_LEN)?;
    let record = recovery.recoverable(pid, session).await?;
    if record.channel.is_empty() {
        return Some(Restored {
            pid: pid.to_owned(),
            channel: None,
        });
    }
    let offset = auth
        .get("offset")
        .and_then(Value::as_str)
        .and_then(Offset::parse)
        .filter(|o| o.channel == record.channel)?;
    let channel = match crate::access::channel_for(state, &offset.channel, session.user_id).await {
        Ok((channel, true)) => channel,
        _ => return None,
    };
    let (first_seq, last_seq, last_change) =
        channels::position(&state.db, channel.id).await.ok()?;
    let at = offset.at;
    if at.seq > last_seq || at.change > last_change || at.seq + 1 < first_seq {
        return None;
    }
    let positions = state.delivery.positions();
    let stored = Position {
        seq: last_seq,
        change: last_change,
    };
    positions
        .start_catching_up(s, &channel.name, at, stored)
        .await;
    match read_missed(state, &channel, session.user_id, at).await {
        Some(replay) => {
            s.extensions.insert(Arc::new(replay));
            tracing::info!(sid = %s.id, user_id = %session.user_id, channel = %channel.name, "session recovered");
            Some(Restored {
                pid: pid.to_owned(),
                channel: Some(channel),
            })
        }
        None => {
            positions.abandon(s, &channel.name).await;
            s.leave(super::rooms::channel_room(&channel.name));
            None
        }
    }
}

/// What a client at `at` in `channel` missed, from Postgres (the primary: a replica may lag
/// behind what was delivered); `None` when it is more than [`MAX_REPLAY`] or no longer stored.
async fn read_missed(
    state: &AppState,
    channel: &Channel,
    reader: Uuid,
    at: Position,
) -> Option<Replay> {
    let db = &state.db;
    let paged = messages::page(
        db,
        channel.id,
        Page::After(at.seq),
        MAX_REPLAY + 1,
        Some(reader),
    )
    .await
    .ok()?;
    if paged.messages.len() as i64 > MAX_REPLAY {
        return None;
    }
    let range = (at.change, paged.last_change.max(at.change));
    let logged = changes::logged(db, channel.id, range, at.seq, MAX_REPLAY + 1)
        .await
        .ok()??;
    if logged.len() as i64 > MAX_REPLAY {
        return None;
    }
    let mut seqs: Vec<i64> = logged.iter().map(|l| l.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let mut changed = messages::by_seqs(db, channel.id, &seqs).await.ok()?;
    messages::decorate(db, &mut changed, Some(reader))
        .await
        .ok()?;
    let mut events = Vec::with_capacity(paged.messages.len() + logged.len());
    let mut to = at;
    for message in &paged.messages {
        events.push(Replayed {
            step: Step::Message(message.seq),
            event: server::MESSAGE_NEW,
            data: serde_json::value::to_raw_value(message).ok()?,
        });
        to.seq = to.seq.max(message.seq);
    }
    for Logged {
        change,
        seq,
        actor_id,
        what,
    } in &logged
    {
        // A message retention removed meanwhile is not told about.
        let Some(message) = changed.iter().find(|m| m.seq == *seq) else {
            continue;
        };
        let body = what.event_body(&channel.name, *change, message, *actor_id);
        events.push(Replayed {
            step: Step::Change(*change),
            event: what.event(),
            data: serde_json::value::to_raw_value(&body).ok()?,
        });
    }
    to.change = range.1;
    Some(Replay {
        channel: channel.name.clone(),
        events,
        from: at,
        to,
    })
}

/// Sends a recovered socket what it missed (after its CONNECT answer), then lets it catch up
/// with its room. A socket that does not take it (its client stopped reading) is closed: its
/// client reconnects and recovers again.
pub async fn replay(state: &AppState, s: &SocketRef<Adapter>, session_user: Uuid) {
    let Some(replay) = s.extensions.remove::<Arc<Replay>>() else {
        return;
    };
    let count = replay.events.len();
    let positions = state.delivery.positions();
    if !send(s, &replay.channel, &replay.events, replay.from, replay.to).await {
        give_up(state, s, &replay.channel).await;
        return;
    }
    let mut to = replay.to;
    // Bounded: a channel busy enough to overflow the buffer three times over is joined as it
    // is (the client may see a seq gap there, and fill it with messages.sync).
    for _ in 0..3 {
        match positions.caught_up(s, &replay.channel, to).await {
            Caught::Done => {
                tracing::debug!(sid = %s.id, events = count, "recovered socket caught up");
                return;
            }
            Caught::Stalled => {
                give_up(state, s, &replay.channel).await;
                return;
            }
            Caught::Again(from) => {
                let Ok(channel) = crate::access::channel(state, &replay.channel).await else {
                    break;
                };
                let Some(more) = read_missed(state, &channel, session_user, from).await else {
                    break;
                };
                if !send(s, &more.channel, &more.events, more.from, more.to).await {
                    give_up(state, s, &replay.channel).await;
                    return;
                }
                to = more.to;
            }
        }
    }
    tracing::warn!(sid = %s.id, "a recovered socket could not catch up with its busy channel");
    positions.abandon(s, &replay.channel).await;
}

/// Ends a recovered socket that did not take its replay: its connection is closed from the
/// server's side, as after a lost transport (its session stays recoverable).
async fn give_up(state: &AppState, s: &SocketRef<Adapter>, channel: &str) {
    tracing::info!(sid = %s.id, "a recovered socket did not take its replay; closing it");
    state.delivery.positions().abandon(s, channel).await;
    if let Some(closer) = s
        .req_parts()
        .extensions
        .get::<engineioxide::socket::SessionCloser>()
    {
        closer.close(engineioxide::DisconnectReason::TransportError);
    }
}

/// Sends replayed events with their offsets, paced by the socket's send buffer: a message's
/// carries its seq and the change number the client started from; a change's carries the last
/// replayed seq; the last event carries the replay's end (everything up to it is then held).
/// False when the socket did not take them.
async fn send(
    s: &SocketRef<Adapter>,
    channel: &str,
    events: &[Replayed],
    from: Position,
    to: Position,
) -> bool {
    for (i, e) in events.iter().enumerate() {
        let at = if i + 1 == events.len() {
            to
        } else {
            match e.step {
                Step::Message(seq) => Position {
                    seq,
                    change: from.change,
                },
                Step::Change(n) => Position {
                    seq: to.seq,
                    change: n,
                },
            }
        };
        let offset = Offset {
            channel: channel.to_owned(),
            at,
        }
        .encode();
        if !positions::emit_paced(s, e.event, &*e.data, &offset).await {
            return false;
        }
    }
    true
}

/// Removes logged changes older than the recovery window needs, every minute, until shutdown.
pub fn sweep_change_log(state: &AppState) {
    let keep = (state.recovery.window * 2).max(CHANGE_LOG_MIN_KEEP);
    let db = state.db.clone();
    state.shutdown.spawn_until_stopped(async move {
        loop {
            tokio::time::sleep(CHANGE_LOG_SWEEP).await;
            match changes::forget_logged(&db, keep).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, "old logged changes removed"),
                Err(e) => tracing::debug!(error = %e, "logged changes not removed"),
            }
        }
    });
}

/// Sends `channel.joined` to a socket just put in `channel`'s room: with the offset of where it
/// joined when recovery is on (the name alone otherwise).
pub async fn joined(
    state: &AppState,
    s: &SocketRef<Adapter>,
    channel: &super::membership::JoinedChannel,
) {
    if !state.recovery.enabled() {
        state
            .delivery
            .to_socket(s, server::CHANNEL_JOINED, &channel.name);
        return;
    }
    let positions = state.delivery.positions();
    let stored = if positions.has(&channel.name).await {
        Position::default()
    } else {
        match channels::position(&state.db, channel.id).await {
            Ok((_, seq, change)) => Position { seq, change },
            Err(e) => {
                tracing::debug!(error = %e, "channel position not read");
                Position::default()
            }
        }
    };
    let conn = s.extensions.get::<Arc<super::Conn>>();
    positions
        .offset(&channel.name, stored, |offset| {
            // The socket may have moved on meanwhile (a `channel.join` right after connecting
            // overtakes the automatic join's answer): only its current channel is told.
            let current = conn.as_ref().and_then(|c| c.channel());
            if current.is_some_and(|c| c.name == channel.name) {
                state.delivery.to_socket(
                    s,
                    server::CHANNEL_JOINED,
                    &(channel.name.as_str(), offset.encode()),
                )
            }
        })
        .await;
}
