//! Merging worker results into one report: the summary table and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use serde::Serialize;

use crate::hist;
use crate::procfs;
use crate::spec::{Counters, Round, Scenario, WorkerResult};
use crate::Args;

/// A worker above this share of one core was the bottleneck, not the server.
const SATURATED: f64 = 0.9;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &hdrhistogram::Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: hist::ms(h, 0.5),
            p90_ms: hist::ms(h, 0.9),
            p99_ms: hist::ms(h, 0.99),
            p999_ms: hist::ms(h, 0.999),
            max_ms: h.max() as f64 / 1000.0,
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerStat {
    pub pid: String,
    /// Share of one core over the measured phase, in percent.
    pub cpu_pct: f64,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    /// RSS while every connection was open (idle, storm).
    pub rss_connected_kib: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Generator {
    pub workers: usize,
    /// Each worker's share of one core over the measured phase, in percent.
    pub cpu_pct: Vec<f64>,
    pub saturated: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct SecondRow {
    pub t: usize,
    pub sent: u64,
    pub acked: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub scenario: Scenario,
    /// No connection failed, every acked message was stored and delivered to every member.
    pub ok: bool,
    pub command: String,
    pub targets: Vec<String>,
    pub users: usize,
    pub channels: usize,
    pub rate_per_user: f64,
    pub inflight: usize,
    pub duration_s: f64,
    pub text_bytes: usize,
    pub counters: Counters,
    pub expected_deliveries: Option<u64>,
    pub lost: Option<u64>,
    pub persisted: Option<u64>,
    pub acked_per_s: f64,
    pub deliveries_per_s: f64,
    pub connects_per_s: f64,
    pub e2e: Latency,
    pub ack: Latency,
    pub connect: Latency,
    pub rounds: Vec<Round>,
    pub servers: Vec<ServerStat>,
    pub rss_per_connection_kib: Option<f64>,
    /// CPU seconds of the local Postgres while the load was sent (`--postgres-cpu`).
    pub postgres_cpu_s: Option<f64>,
    /// The same per persisted message, in µs.
    pub postgres_us_per_message: Option<f64>,
    pub generator: Generator,
    pub events: BTreeMap<String, u64>,
    /// mixed: the operations other than sends, by kind.
    pub ops: BTreeMap<String, OpRow>,
    pub timeline: Vec<SecondRow>,
    /// (percentile, ms) points of the end-to-end latency distribution.
    pub cdf: Vec<(f64, f64)>,
    pub errors: Vec<String>,
}

/// One kind of operation of the mixed scenario, over all workers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpRow {
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub ack: Latency,
}

/// Samples the servers' CPU and memory during a run.
pub struct Sampling {
    pids: Vec<String>,
    rss_before: Vec<u64>,
    cpu0: Vec<f64>,
    t0: Instant,
    cpu_end: Option<(Vec<f64>, f64)>,
    /// Postgres's CPU seconds at the start, and at the end of sending (when sampled).
    postgres: Option<(f64, Option<f64>)>,
    rss_peak: Vec<u64>,
    rss_connected: Vec<u64>,
    all_connected_at: Option<f64>,
}

fn cpu_of(pids: &[String]) -> Vec<f64> {
    pids.iter()
        .map(|p| procfs::cpu_seconds(p).unwrap_or(0.0))
        .collect()
}

impl Sampling {
    /// Starts sampling at the start of the measured phase.
    pub fn start(pids: &[String], postgres: bool) -> Self {
        let rss_before: Vec<u64> = pids
            .iter()
            .map(|p| procfs::rss_kib(p).unwrap_or(0))
            .collect();
        Sampling {
            pids: pids.to_vec(),
            cpu0: cpu_of(pids),
            t0: Instant::now(),
            cpu_end: None,
            postgres: postgres.then(|| (procfs::cpu_seconds_of_command("postgres"), None)),
            rss_peak: rss_before.clone(),
            rss_connected: vec![0; pids.len()],
            all_connected_at: None,
            rss_before,
        }
    }

    /// Called twice a second: `elapsed` since go, the sending phase's length, and whether
    /// every connection is open.
    pub fn tick(&mut self, scenario: Scenario, elapsed: f64, duration: f64, all_connected: bool) {
        let rss: Vec<u64> = self
            .pids
            .iter()
            .map(|p| procfs::rss_kib(p).unwrap_or(0))
            .collect();
        for (peak, now) in self.rss_peak.iter_mut().zip(&rss) {
            *peak = (*peak).max(*now);
        }
        match scenario {
            Scenario::Fanout | Scenario::Flood | Scenario::Mixed => {
                if elapsed >= duration && self.cpu_end.is_none() {
                    self.cpu_end = Some((cpu_of(&self.pids), self.t0.elapsed().as_secs_f64()));
                    if let Some((_, end)) = &mut self.postgres {
                        *end = Some(procfs::cpu_seconds_of_command("postgres"));
                    }
                }
            }
            Scenario::Idle | Scenario::Storm => {
                if all_connected {
                    let at = *self.all_connected_at.get_or_insert(elapsed);
                    // While the hold lasts (the workers close everything at its end).
                    let holding = scenario == Scenario::Storm || elapsed < at + duration - 1.0;
                    let first = self.rss_connected.iter().all(|r| *r == 0);
                    if holding && (scenario == Scenario::Idle || first) {
                        self.rss_connected = rss;
                    }
                }
            }
        }
    }

    /// Each server's figures, and Postgres's CPU seconds while the load was sent (if sampled).
    pub fn finish(self) -> (Vec<ServerStat>, Option<f64>) {
        let (cpu1, wall) = self
            .cpu_end
            .unwrap_or_else(|| (cpu_of(&self.pids), self.t0.elapsed().as_secs_f64()));
        let postgres = self.postgres.map(|(start, end)| {
            end.unwrap_or_else(|| procfs::cpu_seconds_of_command("postgres")) - start
        });
        let servers = self
            .pids
            .iter()
            .enumerate()
            .map(|(i, pid)| ServerStat {
                pid: pid.clone(),
                cpu_pct: if wall > 0.0 {
                    (cpu1[i] - self.cpu0[i]) / wall * 100.0
                } else {
                    0.0
                },
                rss_before_kib: self.rss_before[i],
                rss_peak_kib: self.rss_peak[i],
                rss_connected_kib: self.rss_connected[i],
            })
            .collect();
        (servers, postgres)
    }
}

pub fn build(
    args: &Args,
    scenario: Scenario,
    channels: &[String],
    results: &[WorkerResult],
    servers: Vec<ServerStat>,
    persisted: Option<u64>,
) -> Report {
    let mut counters = Counters::default();
    let mut e2e = hist::new(3);
    let mut ack = hist::new(3);
    let mut connect = hist::new(3);
    let mut acked_per_channel = vec![0u64; channels.len()];
    let mut members = vec![0u64; channels.len()];
    let mut events = BTreeMap::new();
    let mut ops: BTreeMap<String, (u64, u64, u64, hdrhistogram::Histogram<u64>)> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut seconds: Vec<(u64, u64, u64, hdrhistogram::Histogram<u64>)> = Vec::new();
    let mut rounds: Vec<Round> = Vec::new();
    let mut connect_phase: f64 = 0.0;
    for r in results {
        counters.add(&r.counters);
        hist::merge(&mut e2e, &r.e2e);
        hist::merge(&mut ack, &r.ack);
        hist::merge(&mut connect, &r.connect);
        for (total, n) in acked_per_channel.iter_mut().zip(&r.acked_per_channel) {
            *total += n;
        }
        for (total, n) in members.iter_mut().zip(&r.members_per_channel) {
            *total += n;
        }
        for (k, v) in &r.events {
            *events.entry(k.clone()).or_insert(0) += v;
        }
        for (k, o) in &r.ops {
            let total = ops
                .entry(k.clone())
                .or_insert_with(|| (0, 0, 0, hist::new(3)));
            total.0 += o.sent;
            total.1 += o.acked;
            total.2 += o.errors;
            hist::merge(&mut total.3, &o.ack);
        }
        errors.extend(r.errors.iter().take(5).cloned());
        for (i, s) in r.timeline.iter().enumerate() {
            if seconds.len() <= i {
                seconds.push((0, 0, 0, hist::new(2)));
            }
            seconds[i].0 += s.sent;
            seconds[i].1 += s.acked;
            seconds[i].2 += s.delivered;
            hist::merge(&mut seconds[i].3, &s.latency);
        }
        for (i, round) in r.rounds.iter().enumerate() {
            if rounds.len() <= i {
                rounds.push(Round::default());
            }
            rounds[i].connected += round.connected;
            rounds[i].failed += round.failed;
            rounds[i].seconds = rounds[i].seconds.max(round.seconds);
        }
        connect_phase = connect_phase.max(r.connect_phase_s);
    }

    let messaging = matches!(
        scenario,
        Scenario::Fanout | Scenario::Flood | Scenario::Mixed
    );
    let (expected, lost) = if messaging {
        // Every acked message reaches every connected member of its channel (sender included).
        let expected: u64 = acked_per_channel
            .iter()
            .zip(&members)
            .map(|(acked, members)| acked * members)
            .sum();
        (
            Some(expected),
            Some(expected.saturating_sub(counters.delivered)),
        )
    } else {
        (None, None)
    };
    let cpu_pct: Vec<f64> = results
        .iter()
        .map(|r| {
            if r.wall_s > 0.0 {
                r.cpu_s / r.wall_s * 100.0
            } else {
                0.0
            }
        })
        .collect();
    let saturated = cpu_pct.iter().any(|p| *p >= SATURATED * 100.0);
    let connections: u64 = counters.connected;
    let rss_per_connection_kib = if scenario == Scenario::Idle && connections > 0 {
        let grown: u64 = servers
            .iter()
            .map(|s| s.rss_connected_kib.saturating_sub(s.rss_before_kib))
            .sum();
        Some(grown as f64 / connections as f64)
    } else {
        None
    };
    let connects_per_s = if connect_phase > 0.0 {
        rounds.first().map(|r| r.connected).unwrap_or(connections) as f64 / connect_phase
    } else {
        0.0
    };
    let ok = counters.connect_failed == 0
        && counters.send_errors == 0
        && lost.unwrap_or(0) == 0
        && persisted.is_none_or(|p| p >= counters.acked);
    let timeline = seconds
        .iter()
        .enumerate()
        .map(|(t, (sent, acked, delivered, h))| SecondRow {
            t,
            sent: *sent,
            acked: *acked,
            delivered: *delivered,
            p50_ms: hist::ms(h, 0.5),
            p99_ms: hist::ms(h, 0.99),
            max_ms: if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1000.0
            },
        })
        .collect();
    let cdf = if e2e.is_empty() {
        Vec::new()
    } else {
        (0..=200)
            .map(|i| {
                // Denser towards the tail: 0, 50, 75, 87.5, ... percent.
                let q = 1.0 - 0.5f64.powf(i as f64 / 20.0);
                (q * 100.0, hist::ms(&e2e, q.min(1.0)))
            })
            .chain(std::iter::once((100.0, e2e.max() as f64 / 1000.0)))
            .collect()
    };
    Report {
        label: args.label.clone(),
        scenario,
        ok,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        targets: args.targets.clone(),
        users: args.users,
        channels: channels.len(),
        rate_per_user: args.rate,
        inflight: args.inflight,
        duration_s: args.duration,
        text_bytes: args.text_bytes,
        expected_deliveries: expected,
        lost,
        persisted,
        acked_per_s: if messaging {
            counters.acked as f64 / args.duration
        } else {
            0.0
        },
        deliveries_per_s: if messaging {
            counters.delivered as f64 / args.duration
        } else {
            0.0
        },
        connects_per_s,
        e2e: Latency::of(&e2e),
        ack: Latency::of(&ack),
        connect: Latency::of(&connect),
        counters,
        rounds,
        servers,
        rss_per_connection_kib,
        postgres_cpu_s: None,
        postgres_us_per_message: None,
        generator: Generator {
            workers: results.len(),
            cpu_pct,
            saturated,
        },
        events,
        ops: ops
            .into_iter()
            .map(|(k, (sent, acked, errors, ack))| {
                (
                    k,
                    OpRow {
                        sent,
                        acked,
                        errors,
                        ack: Latency::of(&ack),
                    },
                )
            })
            .collect(),
        timeline,
        cdf,
        errors,
    }
}

impl Report {
    /// The summary table printed at the end of a run.
    pub fn table(&self) -> String {
        let c = &self.counters;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "banter-load {:?} [{}]: {} users, {} channels, {} s",
            self.scenario, self.label, self.users, self.channels, self.duration_s
        );
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<26} {v}");
        };
        row(
            &mut t,
            "connections",
            format!(
                "{} ok, {} failed, {} dropped",
                c.connected, c.connect_failed, c.disconnected
            ),
        );
        if self.connects_per_s > 0.0 {
            row(
                &mut t,
                "connect rate",
                format!(
                    "{:.0}/s (handshake p50 {:.1} ms, p99 {:.1} ms)",
                    self.connects_per_s, self.connect.p50_ms, self.connect.p99_ms
                ),
            );
        }
        for (i, r) in self.rounds.iter().enumerate() {
            row(
                &mut t,
                &format!("storm round {i}"),
                format!(
                    "{} connected, {} failed in {:.2} s ({:.0}/s)",
                    r.connected,
                    r.failed,
                    r.seconds,
                    r.connected as f64 / r.seconds.max(1e-9)
                ),
            );
        }
        if let Some(expected) = self.expected_deliveries {
            row(
                &mut t,
                "sent / acked / errors",
                format!("{} / {} / {}", c.sent, c.acked, c.send_errors),
            );
            if let Some(p) = self.persisted {
                row(&mut t, "persisted", p.to_string());
            }
            row(
                &mut t,
                "delivered / expected",
                format!("{} / {}", c.delivered, expected),
            );
            row(&mut t, "lost", self.lost.unwrap_or(0).to_string());
            row(
                &mut t,
                "acked per second",
                format!("{:.0}", self.acked_per_s),
            );
            row(
                &mut t,
                "deliveries per second",
                format!("{:.0}", self.deliveries_per_s),
            );
            let l = &self.e2e;
            row(
                &mut t,
                "end-to-end latency",
                format!(
                    "p50 {:.2} ms, p90 {:.2}, p99 {:.2}, max {:.2}",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                ),
            );
            let a = &self.ack;
            row(
                &mut t,
                "ack latency",
                format!(
                    "p50 {:.2} ms, p99 {:.2}, max {:.2}",
                    a.p50_ms, a.p99_ms, a.max_ms
                ),
            );
        }
        for (name, o) in &self.ops {
            row(
                &mut t,
                &format!("{name} sent / acked / errors"),
                format!(
                    "{} / {} / {}; ack p50 {:.2} ms, p99 {:.2}",
                    o.sent, o.acked, o.errors, o.ack.p50_ms, o.ack.p99_ms
                ),
            );
        }
        if let Some(per) = self.rss_per_connection_kib {
            row(&mut t, "server RSS per connection", format!("{per:.1} KiB"));
        }
        if !self.events.is_empty() {
            let list: Vec<String> = self
                .events
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            row(&mut t, "other events received", list.join(", "));
        }
        for s in &self.servers {
            row(
                &mut t,
                &format!("server {}", s.pid),
                format!(
                    "CPU {:.0}% of a core, RSS {:.1} MiB before, {:.1} MiB peak",
                    s.cpu_pct,
                    s.rss_before_kib as f64 / 1024.0,
                    s.rss_peak_kib as f64 / 1024.0
                ),
            );
        }
        let g: Vec<String> = self
            .generator
            .cpu_pct
            .iter()
            .map(|p| format!("{p:.0}%"))
            .collect();
        row(
            &mut t,
            "generator CPU (per worker)",
            format!(
                "{}{}",
                g.join(" "),
                if self.generator.saturated {
                    "  SATURATED: the generator, not the server, set this pace"
                } else {
                    ""
                }
            ),
        );
        for e in self.errors.iter().take(5) {
            row(&mut t, "error", e.chars().take(160).collect());
        }
        row(
            &mut t,
            "verdict",
            if self.ok {
                "ok".into()
            } else {
                "FAILED (see above)".into()
            },
        );
        t
    }
}
