//! A worker process: one thread, a share of the users, every connection a local task.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{stream, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;
use tokio::task::LocalSet;
use tokio_tungstenite::tungstenite::Message;

use crate::eio::{self, Packet, Ws};
use crate::hist;
use crate::http;
use crate::procfs;
use crate::spec::{
    Counters, OpResult, Round, Scenario, Second, WorkerMsg, WorkerResult, WorkerSpec,
};

/// Guest sessions created at once per worker.
const HTTP_CONCURRENCY: usize = 32;
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
const MAX_ERRORS: usize = 20;

fn emit(msg: &WorkerMsg) {
    if let Ok(line) = serde_json::to_string(msg) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct SecStats {
    sent: u64,
    acked: u64,
    delivered: u64,
    latency: Histogram<u64>,
}

struct Stats {
    c: Counters,
    e2e: Histogram<u64>,
    ack: Histogram<u64>,
    connect: Histogram<u64>,
    secs: Vec<SecStats>,
    acked_per_channel: Vec<u64>,
    events: BTreeMap<String, u64>,
    errors: Vec<String>,
    /// mixed: per kind of operation other than sends (sends are counted as in fanout).
    ops: BTreeMap<&'static str, OpStats>,
}

/// Counts and ack latencies of one kind of operation (mixed scenario).
struct OpStats {
    sent: u64,
    acked: u64,
    errors: u64,
    ack: Histogram<u64>,
}

impl Stats {
    fn op(&mut self, op: Op) -> &mut OpStats {
        self.ops.entry(op.name()).or_insert_with(|| OpStats {
            sent: 0,
            acked: 0,
            errors: 0,
            ack: hist::new(3),
        })
    }

    fn second(&mut self, t0: Instant) -> &mut SecStats {
        let i = t0.elapsed().as_secs() as usize;
        while self.secs.len() <= i {
            self.secs.push(SecStats {
                sent: 0,
                acked: 0,
                delivered: 0,
                latency: hist::new(2),
            });
        }
        &mut self.secs[i]
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(e);
        }
    }
}

struct Shared {
    spec: WorkerSpec,
    stats: RefCell<Stats>,
    t0: Cell<Instant>,
    /// Wakes every connection task when the connections should close (storm rounds).
    close: Notify,
}

impl Shared {
    fn user(&self, i: usize) -> usize {
        self.spec.first_user + i
    }
    fn target(&self, u: usize) -> &str {
        &self.spec.targets[u % self.spec.targets.len()]
    }
    fn channel(&self, u: usize) -> (usize, &str) {
        let c = u % self.spec.channels.len();
        (c, &self.spec.channels[c])
    }
}

pub fn main(spec: &str) -> std::process::ExitCode {
    let spec: WorkerSpec = match serde_json::from_str(spec) {
        Ok(s) => s,
        Err(e) => {
            emit(&WorkerMsg::Failed {
                error: format!("bad worker spec: {e}"),
            });
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            emit(&WorkerMsg::Failed {
                error: e.to_string(),
            });
            return std::process::ExitCode::FAILURE;
        }
    };
    let local = LocalSet::new();
    match local.block_on(&runtime, run(spec)) {
        Ok(result) => {
            emit(&WorkerMsg::Done {
                result: Box::new(result),
            });
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            emit(&WorkerMsg::Failed {
                error: format!("{e:#}"),
            });
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(spec: WorkerSpec) -> anyhow::Result<WorkerResult> {
    let channels = spec.channels.len();
    let shared = Rc::new(Shared {
        stats: RefCell::new(Stats {
            c: Counters::default(),
            e2e: hist::new(3),
            ack: hist::new(3),
            connect: hist::new(3),
            secs: Vec::new(),
            acked_per_channel: vec![0; channels],
            events: BTreeMap::new(),
            errors: Vec::new(),
            ops: BTreeMap::new(),
        }),
        spec,
        t0: Cell::new(Instant::now()),
        close: Notify::new(),
    });
    let tokens = guests(&shared).await?;

    let progress = {
        let shared = shared.clone();
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                let counters = shared.stats.borrow().c.clone();
                emit(&WorkerMsg::Progress { counters });
            }
        })
    };

    let scenario = shared.spec.scenario;
    let mut result = WorkerResult::default();
    let measured_wall;
    let cpu0;
    match scenario {
        Scenario::Fanout | Scenario::Flood | Scenario::Mixed => {
            let (conns, _) = connect_all(&shared, &tokens).await;
            result.members_per_channel = vec![0; channels];
            for (u, _) in &conns {
                result.members_per_channel[shared.channel(*u).0] += 1;
            }
            ready_then_go(&shared).await?;
            cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
            shared.t0.set(Instant::now());
            let tasks: Vec<_> = conns
                .into_iter()
                .map(|(u, ws)| tokio::task::spawn_local(traffic(shared.clone(), u, ws)))
                .collect();
            for t in tasks {
                let _ = t.await;
            }
            measured_wall = shared.t0.get().elapsed();
        }
        Scenario::Idle => {
            ready_then_go(&shared).await?;
            cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
            shared.t0.set(Instant::now());
            let (conns, took) = connect_all(&shared, &tokens).await;
            result.connect_phase_s = took.as_secs_f64();
            hold(&shared, conns).await;
            measured_wall = shared.t0.get().elapsed();
        }
        Scenario::Storm => {
            ready_then_go(&shared).await?;
            cpu0 = procfs::cpu_seconds("self").unwrap_or(0.0);
            shared.t0.set(Instant::now());
            for round in 0..=shared.spec.rounds {
                let before = shared.stats.borrow().c.clone();
                let (conns, took) = connect_all(&shared, &tokens).await;
                let after = shared.stats.borrow().c.clone();
                if round == 0 {
                    result.connect_phase_s = took.as_secs_f64();
                }
                result.rounds.push(Round {
                    connected: after.connected - before.connected,
                    failed: after.connect_failed - before.connect_failed,
                    seconds: took.as_secs_f64(),
                });
                hold(&shared, conns).await;
            }
            measured_wall = shared.t0.get().elapsed();
        }
    }
    let cpu_s = procfs::cpu_seconds("self").unwrap_or(0.0) - cpu0;
    progress.abort();

    let stats = shared.stats.borrow();
    result.counters = stats.c.clone();
    result.acked_per_channel = stats.acked_per_channel.clone();
    result.e2e = hist::encode(&stats.e2e);
    result.ack = hist::encode(&stats.ack);
    result.connect = hist::encode(&stats.connect);
    result.timeline = stats
        .secs
        .iter()
        .map(|s| Second {
            sent: s.sent,
            acked: s.acked,
            delivered: s.delivered,
            latency: hist::encode(&s.latency),
        })
        .collect();
    result.events = stats.events.clone();
    result.ops = stats
        .ops
        .iter()
        .map(|(name, o)| {
            (
                (*name).to_owned(),
                OpResult {
                    sent: o.sent,
                    acked: o.acked,
                    errors: o.errors,
                    ack: hist::encode(&o.ack),
                },
            )
        })
        .collect();
    result.errors = stats.errors.clone();
    result.cpu_s = cpu_s;
    result.wall_s = measured_wall.as_secs_f64();
    Ok(result)
}

/// One guest session per user.
async fn guests(shared: &Rc<Shared>) -> anyhow::Result<Vec<String>> {
    let client = http::client()?;
    let results: Vec<(usize, anyhow::Result<String>)> = stream::iter(0..shared.spec.users)
        .map(|i| {
            let client = client.clone();
            let u = shared.user(i);
            let target = shared.target(u).to_owned();
            let name = format!("lg{}{}", shared.spec.run, u);
            async move { (i, http::guest(&client, &target, &name).await) }
        })
        .buffer_unordered(HTTP_CONCURRENCY)
        .collect()
        .await;
    let mut tokens = vec![String::new(); shared.spec.users];
    for (i, r) in results {
        tokens[i] = r?;
    }
    Ok(tokens)
}

/// Tells the coordinator this worker is set up, then waits for `go` on stdin.
async fn ready_then_go(shared: &Rc<Shared>) -> anyhow::Result<()> {
    let counters = shared.stats.borrow().c.clone();
    emit(&WorkerMsg::Ready { counters });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim() == "go" {
            return Ok(());
        }
    }
    anyhow::bail!("the coordinator went away")
}

/// Connects (and joins) every user, `connect_concurrency` at a time. Returns the open
/// connections and how long the whole phase took.
async fn connect_all(shared: &Rc<Shared>, tokens: &[String]) -> (Vec<(usize, Ws)>, Duration) {
    let start = Instant::now();
    let sources = &shared.spec.sources;
    let conns: Vec<Option<(usize, Ws)>> = stream::iter(0..shared.spec.users)
        .map(|i| {
            let u = shared.user(i);
            let shared = shared.clone();
            let token = tokens[i].clone();
            let source = sources[u % sources.len()];
            async move {
                let began = Instant::now();
                let (_, channel) = shared.channel(u);
                let result = async {
                    let mut ws = eio::connect(shared.target(u), source, &token).await?;
                    if shared.spec.join {
                        eio::join(&mut ws, channel).await?;
                    }
                    anyhow::Ok(ws)
                }
                .await;
                let mut stats = shared.stats.borrow_mut();
                match result {
                    Ok(ws) => {
                        stats.c.connected += 1;
                        hist::record(&mut stats.connect, began.elapsed().as_micros() as u64);
                        Some((u, ws))
                    }
                    Err(e) => {
                        stats.c.connect_failed += 1;
                        stats.error(format!("connect: {e:#}"));
                        None
                    }
                }
            }
        })
        .buffer_unordered(shared.spec.connect_concurrency.max(1))
        .collect()
        .await;
    (conns.into_iter().flatten().collect(), start.elapsed())
}

/// Keeps connections open (answering pings, counting events) for the scenario's duration,
/// then closes them.
async fn hold(shared: &Rc<Shared>, conns: Vec<(usize, Ws)>) {
    let tasks = holders(shared, conns);
    tokio::time::sleep(Duration::from_secs_f64(shared.spec.duration_s)).await;
    shared.close.notify_waiters();
    for t in tasks {
        let _ = t.await;
    }
}

/// One task per connection, reading until `close` is notified.
fn holders(shared: &Rc<Shared>, conns: Vec<(usize, Ws)>) -> Vec<tokio::task::JoinHandle<()>> {
    conns
        .into_iter()
        .map(|(_, mut ws)| {
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                let closed = shared.close.notified();
                tokio::pin!(closed);
                loop {
                    tokio::select! {
                        _ = &mut closed => break,
                        frame = ws.next() => {
                            if !on_frame(&shared, &mut ws, frame, None).await {
                                break;
                            }
                        }
                    }
                }
                let _ = ws.close(None).await;
            })
        })
        .collect()
}

/// The sends (and, mixed, other operations) of one connection that await their ack.
struct Pending {
    /// Operations awaiting their ack: ack id, when it was sent, what it was.
    acks: Vec<(u64, Instant, Op)>,
    channel: usize,
    /// mixed: what the connection knows to act on.
    mixed: Option<Known>,
}

/// One operation of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Send,
    Edit,
    React,
    Unreact,
    Read,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::Edit => "edit",
            Op::React => "react",
            Op::Unreact => "unreact",
            Op::Read => "read",
        }
    }
}

/// Emoji the mixed scenario reacts with.
const EMOJI: [&str; 4] = ["👍", "🎉", "👀", "✅"];
/// How many message ids a connection remembers of each kind.
const REMEMBERED: usize = 32;

/// What a connection of the mixed scenario remembers: its own messages (to edit), the
/// channel's messages it received (to react to and mark read), its reactions (to take back).
#[derive(Default)]
struct Known {
    mine: Vec<String>,
    seen: Vec<(String, i64)>,
    reacted: Vec<(String, &'static str)>,
}

fn remember<T>(list: &mut Vec<T>, item: T) {
    if list.len() == REMEMBERED {
        list.remove(0);
    }
    list.push(item);
}

/// The 36-character id that follows `key` in a JSON frame.
fn id_after(frame: &str, key: &str) -> Option<String> {
    let at = frame.find(key)? + key.len();
    frame.get(at..at + 36).map(str::to_owned)
}

/// The integer that follows `key` in a JSON frame.
fn int_after(frame: &str, key: &str) -> Option<i64> {
    let at = frame.find(key)? + key.len();
    let digits = frame[at..].bytes().take_while(u8::is_ascii_digit).count();
    frame[at..at + digits].parse().ok()
}

/// Handles one incoming frame; false when the connection is gone.
async fn on_frame(
    shared: &Shared,
    ws: &mut Ws,
    frame: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    pending: Option<&mut Pending>,
) -> bool {
    let text = match frame {
        Some(Ok(Message::Text(t))) => t,
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
            shared.stats.borrow_mut().c.disconnected += 1;
            return false;
        }
        Some(Ok(_)) => return true,
    };
    match eio::classify(&text) {
        Packet::Ping => {
            if ws.send(Message::text("3")).await.is_err() {
                shared.stats.borrow_mut().c.disconnected += 1;
                return false;
            }
        }
        Packet::MessageNew(Some(sent_us)) => {
            if let Some(known) = pending.and_then(|p| p.mixed.as_mut()) {
                if let (Some(id), Some(seq)) =
                    (id_after(&text, "\"id\":\""), int_after(&text, "\"seq\":"))
                {
                    remember(&mut known.seen, (id, seq));
                }
            }
            let latency = now_us().saturating_sub(sent_us);
            let t0 = shared.t0.get();
            let mut stats = shared.stats.borrow_mut();
            stats.c.delivered += 1;
            hist::record(&mut stats.e2e, latency);
            let second = stats.second(t0);
            second.delivered += 1;
            hist::record(&mut second.latency, latency);
        }
        Packet::MessageNew(None) => shared.stats.borrow_mut().c.other_events += 1,
        Packet::Ack { id, ok, duplicate } => {
            let Some(p) = pending else {
                return true;
            };
            let Some(at) = p.acks.iter().position(|(i, _, _)| *i == id) else {
                return true;
            };
            let (_, sent, op) = p.acks.swap_remove(at);
            let t0 = shared.t0.get();
            let mut stats = shared.stats.borrow_mut();
            if op != Op::Send {
                let o = stats.op(op);
                hist::record(&mut o.ack, sent.elapsed().as_micros() as u64);
                if ok {
                    o.acked += 1;
                } else {
                    o.errors += 1;
                    stats.error(format!("{} refused: {text}", op.name()));
                }
                return true;
            }
            if ok {
                if let Some(known) = p.mixed.as_mut() {
                    // The ack's object may come with its keys in any order.
                    let message = text.find("\"message\":{").map(|at| &text[at..]);
                    if let Some(mid) = message.and_then(|m| id_after(m, "\"id\":\"")) {
                        remember(&mut known.mine, mid);
                    }
                }
            }
            hist::record(&mut stats.ack, sent.elapsed().as_micros() as u64);
            if ok {
                stats.c.acked += 1;
                stats.acked_per_channel[p.channel] += 1;
                stats.second(t0).acked += 1;
                if duplicate {
                    stats.c.duplicates += 1;
                }
            } else {
                stats.c.send_errors += 1;
                stats.error(format!("message.send refused: {text}"));
            }
        }
        Packet::Event(name) => {
            let mut stats = shared.stats.borrow_mut();
            stats.c.other_events += 1;
            *stats.events.entry(name.to_owned()).or_insert(0) += 1;
        }
        Packet::Disconnect => {
            shared.stats.borrow_mut().c.disconnected += 1;
            return false;
        }
        Packet::Other => {}
    }
    true
}

/// The message traffic of one connection in the fanout and flood scenarios.
async fn traffic(shared: Rc<Shared>, u: usize, mut ws: Ws) {
    let spec = &shared.spec;
    let (channel, channel_name) = shared.channel(u);
    let t0 = shared.t0.get();
    let send_until = t0 + Duration::from_secs_f64(spec.duration_s);
    let end = send_until + Duration::from_secs_f64(spec.drain_s);
    let flood = spec.scenario == Scenario::Flood;
    let interval = if flood || spec.rate <= 0.0 {
        Duration::MAX
    } else {
        Duration::from_secs_f64(1.0 / spec.rate)
    };
    let mut next_send = if flood {
        send_until
    } else {
        t0 + interval.mul_f64(fastrand::f64())
    };
    let mut next_id = 1u64;
    let mixed = spec.scenario == Scenario::Mixed;
    let mut pending = Pending {
        acks: Vec::new(),
        channel,
        mixed: mixed.then(Known::default),
    };
    // The text after the 16-digit timestamp and a space, made once per connection.
    let pad = "x".repeat(spec.text_bytes.saturating_sub(17));
    let mut alive = true;
    if flood {
        for _ in 0..spec.inflight.max(1) {
            alive &= send(
                &shared,
                &mut ws,
                &mut pending,
                &mut next_id,
                channel_name,
                &pad,
            )
            .await;
        }
    }
    while alive {
        tokio::select! {
            biased;
            frame = ws.next() => {
                alive = on_frame(&shared, &mut ws, frame, Some(&mut pending)).await;
                if flood && Instant::now() < send_until {
                    // Every answered send (acked or refused) frees its slot.
                    while alive && pending.acks.len() < spec.inflight.max(1) {
                        alive &= send(&shared, &mut ws, &mut pending, &mut next_id, channel_name, &pad).await;
                    }
                }
            }
            _ = tokio::time::sleep_until(next_send.into()), if next_send < send_until => {
                alive = if mixed {
                    operate(&shared, &mut ws, &mut pending, &mut next_id, channel_name, &pad).await
                } else {
                    send(&shared, &mut ws, &mut pending, &mut next_id, channel_name, &pad).await
                };
                next_send += interval;
            }
            _ = tokio::time::sleep_until(end.into()) => break,
        }
    }
    let _ = ws.close(None).await;
}

async fn send(
    shared: &Shared,
    ws: &mut Ws,
    pending: &mut Pending,
    next_id: &mut u64,
    channel: &str,
    pad: &str,
) -> bool {
    let id = *next_id;
    *next_id += 1;
    let text = format!("{} {pad}", now_us());
    let frame = eio::send_frame(id, channel, &text, &uuid::Uuid::new_v4());
    pending.acks.push((id, Instant::now(), Op::Send));
    {
        let t0 = shared.t0.get();
        let mut stats = shared.stats.borrow_mut();
        stats.c.sent += 1;
        stats.second(t0).sent += 1;
    }
    if ws.send(Message::text(frame)).await.is_err() {
        shared.stats.borrow_mut().c.disconnected += 1;
        return false;
    }
    true
}

/// One operation of the mixed scenario: a send (50%), an edit of one of the connection's
/// messages (15%), a reaction added or taken back (25%), a read marker (10%). Without a
/// message to act on yet, a send.
async fn operate(
    shared: &Shared,
    ws: &mut Ws,
    pending: &mut Pending,
    next_id: &mut u64,
    channel: &str,
    pad: &str,
) -> bool {
    let roll = fastrand::u32(0..100);
    let Some(known) = pending.mixed.as_mut() else {
        return send(shared, ws, pending, next_id, channel, pad).await;
    };
    let id = *next_id;
    let (op, frame) = if (50..65).contains(&roll) && !known.mine.is_empty() {
        let target = &known.mine[fastrand::usize(..known.mine.len())];
        let text = format!("{} edited {pad}", now_us());
        (
            Op::Edit,
            format!(
                "42{id}[\"message.edit\",{{\"channel\":\"{channel}\",\"id\":\"{target}\",\"text\":\"{text}\"}}]"
            ),
        )
    } else if (65..90).contains(&roll) && !known.seen.is_empty() {
        if roll >= 80 && !known.reacted.is_empty() {
            let (target, emoji) = known.reacted.remove(fastrand::usize(..known.reacted.len()));
            (
                Op::Unreact,
                format!(
                    "42{id}[\"reaction.remove\",{{\"channel\":\"{channel}\",\"id\":\"{target}\",\"emoji\":\"{emoji}\"}}]"
                ),
            )
        } else {
            let target = known.seen[fastrand::usize(..known.seen.len())].0.clone();
            let emoji = EMOJI[fastrand::usize(..EMOJI.len())];
            let frame = format!(
                "42{id}[\"reaction.add\",{{\"channel\":\"{channel}\",\"id\":\"{target}\",\"emoji\":\"{emoji}\"}}]"
            );
            remember(&mut known.reacted, (target, emoji));
            (Op::React, frame)
        }
    } else if roll >= 90 && !known.seen.is_empty() {
        let seq = known.seen.iter().map(|(_, s)| *s).max().unwrap_or(0);
        (
            Op::Read,
            format!("42{id}[\"channel.read\",{{\"channel\":\"{channel}\",\"seq\":{seq}}}]"),
        )
    } else {
        return send(shared, ws, pending, next_id, channel, pad).await;
    };
    *next_id += 1;
    pending.acks.push((id, Instant::now(), op));
    shared.stats.borrow_mut().op(op).sent += 1;
    if ws.send(Message::text(frame)).await.is_err() {
        shared.stats.borrow_mut().c.disconnected += 1;
        return false;
    }
    true
}
