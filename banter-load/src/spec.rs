//! What the coordinator tells a worker process, and what a worker reports back (one JSON
//! object per line on its stdout).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Open N connections in one channel, then hold them.
    Idle,
    /// Users in channels send at a fixed rate; every member receives every message.
    Fanout,
    /// Every user keeps a fixed number of sends in flight, as fast as acks come back.
    Flood,
    /// Connect everyone, then drop and reconnect everyone, several rounds.
    Storm,
    /// Like fanout (`rate` operations per user per second), each operation one of: a send
    /// (50%), an edit of one of the user's messages (15%), a reaction added or taken back
    /// (25%), a read marker (10%).
    Mixed,
}

/// One worker's share of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub scenario: Scenario,
    /// `host:port` of every instance; user `u` uses `targets[u % len]`.
    pub targets: Vec<String>,
    /// Local source addresses; user `u` connects from `sources[u % len]`.
    pub sources: Vec<Ipv4Addr>,
    /// Short random id of the run, part of every user name.
    pub run: String,
    /// This worker's users are `first_user .. first_user + users`.
    pub first_user: usize,
    pub users: usize,
    /// User `u` is in `channels[u % len]`.
    pub channels: Vec<String>,
    /// Send `channel.join` after connecting; false: stay in the server's default channel.
    pub join: bool,
    /// fanout: messages per user per second.
    pub rate: f64,
    /// flood: sends in flight per user.
    pub inflight: usize,
    /// Length of the sending phase (fanout, flood) or the hold (idle), in seconds.
    pub duration_s: f64,
    /// How long to keep reading after the sending phase, in seconds.
    pub drain_s: f64,
    /// storm: reconnect rounds.
    pub rounds: usize,
    /// Connection attempts in flight at once, per worker.
    pub connect_concurrency: usize,
    /// Bytes of text per message (the timestamp included).
    pub text_bytes: usize,
}

/// Counts a worker keeps; summed over workers by the coordinator.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    pub connected: u64,
    pub connect_failed: u64,
    pub disconnected: u64,
    pub sent: u64,
    pub acked: u64,
    pub send_errors: u64,
    pub duplicates: u64,
    pub delivered: u64,
    pub other_events: u64,
}

impl Counters {
    pub fn add(&mut self, o: &Counters) {
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.disconnected += o.disconnected;
        self.sent += o.sent;
        self.acked += o.acked;
        self.send_errors += o.send_errors;
        self.duplicates += o.duplicates;
        self.delivered += o.delivered;
        self.other_events += o.other_events;
    }
}

/// One kind of operation of the mixed scenario, seen by one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpResult {
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    /// Ack latency, HDR V2, base64, µs.
    pub ack: String,
}

/// One second of the measured phase, seen by one worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Second {
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    /// End-to-end latencies (µs) of the deliveries in this second, HDR V2, base64.
    pub latency: String,
}

/// One storm round.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Round {
    pub connected: u64,
    pub failed: u64,
    pub seconds: f64,
}

/// A worker's final report.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    pub counters: Counters,
    pub acked_per_channel: Vec<u64>,
    /// This worker's connected users per channel (the receivers of its messages).
    pub members_per_channel: Vec<u64>,
    /// HDR V2, base64, µs.
    pub e2e: String,
    pub ack: String,
    pub connect: String,
    pub timeline: Vec<Second>,
    /// From the first connection attempt to the last connection of the connect phase.
    pub connect_phase_s: f64,
    pub rounds: Vec<Round>,
    /// Server events other than message.new and acks, by name.
    pub events: std::collections::BTreeMap<String, u64>,
    /// mixed: each kind of operation (send, edit, react, unreact, read).
    #[serde(default)]
    pub ops: std::collections::BTreeMap<String, OpResult>,
    /// CPU seconds this worker used in the measured phase, and that phase's wall time.
    pub cpu_s: f64,
    pub wall_s: f64,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum WorkerMsg {
    /// Set up and waiting for `go` on stdin.
    Ready {
        counters: Counters,
    },
    Progress {
        counters: Counters,
    },
    Done {
        result: Box<WorkerResult>,
    },
    Failed {
        error: String,
    },
}
