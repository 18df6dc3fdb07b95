//! [`Positions`]: where each channel's stream of durable events (`message.new` by seq, changes
//! by change number) stands on this instance, the offsets of connection state recovery, and the
//! sockets catching up on a channel.
//!
//! An offset is the position a client holds once it has an event: `<seq>.<change>.<channel>`,
//! the seq of the channel's last message and the number of its last change delivered to the
//! channel's room on this instance at that event. Every instance delivers a channel's events in
//! the order Redis publishes them, so every receiver of an event gets the same offset, and one
//! serialization of the event still serves the whole room.
//!
//! A socket that recovers is put in its channel's room at once (for presence and typing) but
//! also in [`RECOVERING_ROOM`], which durable deliveries skip. While its missed events are read
//! from Postgres and sent, what the room is delivered meanwhile is kept for it (at most
//! [`PENDING_BUFFER`] events); then what it had from Postgres is skipped, the rest sent in
//! order, and it is served on its own until this instance has delivered as far as Postgres
//! took it: from then on it is a plain member of the room. Deliveries, joins and catching up
//! all take one lock, so no event falls between them or reaches a socket twice.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::{BroadcastError, SocketError};

use super::rooms::{channel_room, LocalRooms};
use super::Adapter;

/// The room of the sockets still catching up on their channel: durable deliveries skip it.
pub const RECOVERING_ROOM: &str = "recovering";

/// Events kept per catching-up socket while its missed events are read from Postgres; beyond
/// this the catching up starts over from Postgres.
pub const PENDING_BUFFER: usize = 512;

/// A position in a channel's durable stream: its last message's seq, its last change's number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub seq: i64,
    pub change: i64,
}

/// The position a client holds in a channel, as the last argument of a durable event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offset {
    pub channel: String,
    pub at: Position,
}

/// Longest offset accepted from a client.
const MAX_OFFSET_LEN: usize = 200;

impl Offset {
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.at.seq, self.at.change, self.channel)
    }

    /// An offset as a client sends it back (`auth.offset`); `None` when it is not one.
    pub fn parse(s: &str) -> Option<Offset> {
        if s.len() > MAX_OFFSET_LEN {
            return None;
        }
        let mut parts = s.splitn(3, '.');
        let seq = parts.next()?.parse::<i64>().ok()?;
        let change = parts.next()?.parse::<i64>().ok()?;
        let channel = parts.next()?;
        (seq >= 0 && change >= 0 && !channel.is_empty()).then(|| Offset {
            channel: channel.to_owned(),
            at: Position { seq, change },
        })
    }
}

/// Which stream an event belongs to, with its number there.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    Message(i64),
    Change(i64),
}

impl Step {
    /// Whether a client at `at` has this event already.
    fn within(self, at: Position) -> bool {
        match self {
            Step::Message(seq) => seq <= at.seq,
            Step::Change(n) => n <= at.change,
        }
    }
}

/// An event delivered to a room while one of its sockets was reading Postgres.
struct Kept {
    step: Step,
    event: String,
    data: Arc<RawValue>,
    offset: String,
}

/// A socket catching up on a channel.
struct Pending {
    socket: SocketRef<Adapter>,
    /// What the socket has (from its offset, then from Postgres).
    at: Position,
    /// Events kept while it reads Postgres; `None` once it is served as events come.
    kept: Option<Vec<Kept>>,
    /// More than [`PENDING_BUFFER`] events came while it read Postgres.
    overflowed: bool,
    /// When it started (a socket not connected this long after is gone).
    since: std::time::Instant,
}

/// A catching-up socket still not connected this long after it started is forgotten (its
/// handshake failed before its disconnect handling was in place). A recovering socket is not
/// connected while its handshake reads Postgres, so this is not `connected()` alone.
const PENDING_UNCONNECTED: std::time::Duration = std::time::Duration::from_secs(30);

/// One channel's stream on this instance.
#[derive(Default)]
struct Entry {
    /// The offsets' basis: the last seq and change number delivered here (or stored, when the
    /// first socket of the instance joined the channel).
    at: Position,
    /// The last seq and change number this instance delivered, if it delivered any.
    delivered_seq: Option<i64>,
    delivered_change: Option<i64>,
    pending: Vec<Pending>,
}

impl Entry {
    /// Whether a socket at `at` has caught up with what this instance delivered.
    fn caught_up(&self, at: Position) -> bool {
        let seq = self.delivered_seq.map_or(at.seq == 0, |d| d >= at.seq);
        let change = self
            .delivered_change
            .map_or(at.change == 0, |d| d >= at.change);
        seq && change
    }
}

/// What a socket catching up is to do next.
pub enum Caught {
    /// It is a plain member of the room (or still served on its own until the room catches up).
    Done,
    /// Too much came meanwhile: read Postgres again from this position.
    Again(Position),
    /// The socket did not take what it was sent within [`PACE_LIMIT`].
    Stalled,
}

/// The channels' streams on this instance. Entries exist for channels with sockets here.
pub struct Positions {
    entries: tokio::sync::Mutex<HashMap<String, Entry>>,
    rooms: Arc<LocalRooms>,
}

impl Positions {
    pub fn new(rooms: Arc<LocalRooms>) -> Self {
        Positions {
            entries: tokio::sync::Mutex::new(HashMap::new()),
            rooms,
        }
    }

    /// Delivers a durable event of `channel` to this instance's sockets in its room (`room`:
    /// the local operator to the channel's room, [`RECOVERING_ROOM`] excepted), with its
    /// offset, in the order of the calls.
    pub async fn deliver(
        &self,
        channel: &str,
        step: Step,
        event: &str,
        data: &RawValue,
        room: BroadcastOperators<Adapter>,
    ) -> Result<(), BroadcastError> {
        let mut entries = self.entries.lock().await;
        let Some(entry) = entries.get_mut(channel) else {
            // Nobody here holds a position in this channel.
            drop(entries);
            let offset = Offset {
                channel: channel.to_owned(),
                at: match step {
                    Step::Message(seq) => Position { seq, change: 0 },
                    Step::Change(change) => Position { seq: 0, change },
                },
            };
            return room.emit(event.to_owned(), &(data, offset.encode())).await;
        };
        match step {
            Step::Message(seq) => {
                entry.at.seq = entry.at.seq.max(seq);
                entry.delivered_seq = Some(entry.delivered_seq.map_or(seq, |d| d.max(seq)));
            }
            Step::Change(n) => {
                entry.at.change = entry.at.change.max(n);
                entry.delivered_change = Some(entry.delivered_change.map_or(n, |d| d.max(n)));
            }
        }
        let offset = Offset {
            channel: channel.to_owned(),
            at: entry.at,
        }
        .encode();
        let result = room.emit(event.to_owned(), &(data, &offset)).await;
        if !entry.pending.is_empty() {
            let shared: Arc<RawValue> = Arc::from(data.to_owned());
            for p in &mut entry.pending {
                if step.within(p.at) {
                    continue;
                }
                match &mut p.kept {
                    Some(kept) if kept.len() >= PENDING_BUFFER => p.overflowed = true,
                    Some(kept) => kept.push(Kept {
                        step,
                        event: event.to_owned(),
                        data: shared.clone(),
                        offset: offset.clone(),
                    }),
                    None => emit(&p.socket, event, &*shared, &offset),
                }
            }
            settle(entry);
        }
        if self.rooms.members(channel) == 0 && entry.pending.is_empty() {
            entries.remove(channel);
        }
        result
    }

    /// Whether this instance keeps `channel`'s position (a socket here is in it).
    pub async fn has(&self, channel: &str) -> bool {
        self.entries.lock().await.contains_key(channel)
    }

    /// The offset a socket just put in `channel`'s room holds now: what this instance delivered
    /// of the channel, or `stored` (its position in Postgres) when no socket here was in it.
    /// `then` runs under the lock (the `channel.joined` that carries the offset), so that no
    /// delivery comes between.
    pub async fn offset(&self, channel: &str, stored: Position, then: impl FnOnce(&Offset)) {
        let mut entries = self.entries.lock().await;
        let entry = entries.entry(channel.to_owned()).or_insert_with(|| Entry {
            at: stored,
            ..Entry::default()
        });
        then(&Offset {
            channel: channel.to_owned(),
            at: entry.at,
        });
    }

    /// Starts a socket's catching up on `channel` from `at`: it joins the room and
    /// [`RECOVERING_ROOM`], and what the room is delivered from now on is kept for it.
    pub async fn start_catching_up(
        &self,
        s: &SocketRef<Adapter>,
        channel: &str,
        at: Position,
        stored: Position,
    ) {
        let mut entries = self.entries.lock().await;
        s.join(vec![channel_room(channel), RECOVERING_ROOM.to_owned()]);
        let entry = entries.entry(channel.to_owned()).or_insert_with(|| Entry {
            at: stored,
            ..Entry::default()
        });
        entry.pending.retain(|p| p.socket.id != s.id);
        entry.pending.push(Pending {
            socket: s.clone(),
            at,
            kept: Some(Vec::new()),
            overflowed: false,
            since: std::time::Instant::now(),
        });
    }

    /// The socket has what Postgres gave it, up to `at`: what was kept for it beyond that is
    /// sent (outside the lock, paced by the socket's buffer, while what comes meanwhile is kept
    /// in turn), and it is served as events come until this instance delivered as far. If too
    /// much came meanwhile, it is to read Postgres again.
    pub async fn caught_up(&self, s: &SocketRef<Adapter>, channel: &str, at: Position) -> Caught {
        let mut at = at;
        loop {
            let kept = {
                let mut entries = self.entries.lock().await;
                let Some(entry) = entries.get_mut(channel) else {
                    s.leave(RECOVERING_ROOM);
                    return Caught::Done;
                };
                let Some(p) = entry.pending.iter_mut().find(|p| p.socket.id == s.id) else {
                    s.leave(RECOVERING_ROOM);
                    return Caught::Done;
                };
                p.at = Position {
                    seq: p.at.seq.max(at.seq),
                    change: p.at.change.max(at.change),
                };
                at = p.at;
                if p.overflowed {
                    p.overflowed = false;
                    p.kept = Some(Vec::new());
                    return Caught::Again(p.at);
                }
                let kept = p.kept.replace(Vec::new()).unwrap_or_default();
                if kept.is_empty() {
                    p.kept = None;
                    settle(entry);
                    return Caught::Done;
                }
                kept
            };
            for k in kept {
                if k.step.within(at) {
                    continue;
                }
                if !emit_paced(s, &k.event, &*k.data, &k.offset).await {
                    return Caught::Stalled;
                }
                match k.step {
                    Step::Message(seq) => at.seq = at.seq.max(seq),
                    Step::Change(n) => at.change = at.change.max(n),
                }
            }
        }
    }

    /// Ends a socket's catching up without its events (it was not recovered after all, or it
    /// went away).
    pub async fn abandon(&self, s: &SocketRef<Adapter>, channel: &str) {
        let mut entries = self.entries.lock().await;
        s.leave(RECOVERING_ROOM);
        if let Some(entry) = entries.get_mut(channel) {
            entry.pending.retain(|p| p.socket.id != s.id);
        }
    }
}

/// Sockets served on their own that this instance's deliveries have caught up with become plain
/// members of the room; those that went away are forgotten.
fn settle(entry: &mut Entry) {
    let delivered = (entry.delivered_seq, entry.delivered_change);
    entry.pending.retain(|p| {
        if !p.socket.connected() && p.since.elapsed() > PENDING_UNCONNECTED {
            return false;
        }
        let probe = Entry {
            delivered_seq: delivered.0,
            delivered_change: delivered.1,
            ..Entry::default()
        };
        if p.kept.is_none() && probe.caught_up(p.at) {
            p.socket.leave(RECOVERING_ROOM);
            return false;
        }
        true
    });
}

/// How long a catching-up socket may keep its send buffer full before it is given up.
pub const PACE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends one durable event to one catching-up socket, with its offset, waiting while its send
/// buffer is full (a replay is larger than the buffer; the transport drains it as fast as the
/// client reads). False when the socket is gone, or still full after [`PACE_LIMIT`].
pub async fn emit_paced<T: Serialize + ?Sized>(
    s: &SocketRef<Adapter>,
    event: &str,
    data: &T,
    offset: &str,
) -> bool {
    let deadline = tokio::time::Instant::now() + PACE_LIMIT;
    loop {
        match s.emit(event, &(data, offset)) {
            Ok(()) => return true,
            Err(socketioxide::SendError::Socket(SocketError::InternalChannelFull))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await
            }
            Err(e) => {
                tracing::debug!(sid = %s.id, event, error = %e, "a catching-up socket took nothing");
                return false;
            }
        }
    }
}

/// Sends one durable event to one socket, with its offset.
pub fn emit<T: Serialize + ?Sized>(s: &SocketRef<Adapter>, event: &str, data: &T, offset: &str) {
    match s.emit(event, &(data, offset)) {
        Ok(()) | Err(socketioxide::SendError::Socket(SocketError::Closed)) => {}
        Err(e) => tracing::debug!(sid = %s.id, event, error = %e, "not delivered"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_reads_back_as_written() {
        let offset = Offset {
            channel: "general".into(),
            at: Position { seq: 12, change: 3 },
        };
        assert_eq!(offset.encode(), "12.3.general");
        assert_eq!(Offset::parse("12.3.general"), Some(offset));
        // A channel name may hold dots; the first two fields are numbers.
        assert_eq!(
            Offset::parse("1.0.a.b").map(|o| o.channel),
            Some("a.b".to_owned())
        );
    }

    #[test]
    fn what_is_not_an_offset_is_refused() {
        for bad in [
            "",
            "general",
            "1.general",
            "x.1.general",
            "1.x.general",
            "-1.0.general",
            "1.0.",
            &format!("1.0.{}", "a".repeat(300)),
        ] {
            assert_eq!(Offset::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_socket_has_caught_up_once_delivered_as_far() {
        let entry = Entry {
            delivered_seq: Some(10),
            delivered_change: None,
            ..Entry::default()
        };
        assert!(entry.caught_up(Position { seq: 10, change: 0 }));
        assert!(!entry.caught_up(Position { seq: 11, change: 0 }));
        assert!(!entry.caught_up(Position { seq: 10, change: 1 }));
    }
}
