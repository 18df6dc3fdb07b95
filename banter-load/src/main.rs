//! `banter-load`: drives a banter cluster (or any server speaking the same contract) through
//! its public HTTP and Socket.IO interface, and reports throughput, latency and server cost.
//!
//! The coordinator (this process) creates the channels, starts worker processes (each one
//! thread, a share of the users, its own file-descriptor budget), starts them together, shows
//! progress, merges their reports and writes the summary table, a JSON report and a chart.

mod chart;
mod eio;
mod hist;
mod http;
mod procfs;
mod report;
mod spec;
mod worker;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

use spec::{Counters, Scenario, WorkerMsg, WorkerResult, WorkerSpec};

/// Load generator for banter (Socket.IO v5 over websocket). Loopback only; stops by itself.
#[derive(Parser, Debug, Clone)]
#[command(name = "banter-load", version)]
pub struct Args {
    /// idle, fanout, flood, storm or mixed.
    #[arg(value_enum, required_unless_present = "worker")]
    scenario: Option<Scenario>,
    /// Instances to drive, `host:port`, comma-separated; users are spread over them.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:4000")]
    targets: Vec<String>,
    /// Users (one connection each).
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Channels the users are spread over (idle always uses one).
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// fanout: messages per user per second; mixed: operations per user per second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// flood: sends in flight per user.
    #[arg(long, default_value_t = 4)]
    inflight: usize,
    /// Seconds of sending (fanout, flood), of holding (idle) or per storm round.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds to keep receiving after sending stops.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// storm: reconnect rounds after the first connect.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker processes (each holds at most about 19,000 connections).
    #[arg(long, default_value_t = 2)]
    procs: usize,
    /// Loopback source addresses to spread connections over (127.0.0.2 onwards).
    #[arg(long, default_value_t = 8)]
    sources: u8,
    /// Connection attempts in flight per worker.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// idle and storm: the channel everyone is in. Empty (the default): a new channel that
    /// every connection joins; a name, e.g. `general`: the server's default channel, which
    /// sockets join at connect, so no `channel.join` is sent.
    #[arg(long, default_value = "")]
    channel: String,
    /// Bytes of message text.
    #[arg(long, default_value_t = 64)]
    text_bytes: usize,
    /// Server process ids whose CPU and memory are reported.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<String>,
    /// Also report the CPU every local `postgres` process used while the load was sent, and
    /// per persisted message (fanout, flood, mixed).
    #[arg(long)]
    postgres_cpu: bool,
    /// The server stores nothing (a bare relay): no persisted count is taken or checked.
    #[arg(long)]
    relay_only: bool,
    /// A name for this run in the report (e.g. banter, baseline).
    #[arg(long, default_value = "run")]
    label: String,
    /// Where to write the JSON report.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to write the PNG chart (latency over time and its CDF).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// The run's id (lowercase letters and digits): users are `lg<id><n>`, channels
    /// `lg-<id>-<n>`. Random by default; existing channels of that name are used as they are.
    #[arg(long)]
    run_id: Option<String>,
    /// Hard stop: the run is abandoned after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Internal: run as a worker with this spec.
    #[arg(long, hide = true)]
    worker: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(spec) = &args.worker {
        return worker::main(spec);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("banter-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(coordinate(args)) {
        Ok(report) => {
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("banter-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses anything but loopback targets.
fn check_targets(targets: &[String]) -> anyhow::Result<()> {
    for t in targets {
        let host = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
        let ip: Ipv4Addr = match host {
            "localhost" => Ipv4Addr::LOCALHOST,
            h => h
                .parse()
                .with_context(|| format!("target {t}: give an IPv4 address and port"))?,
        };
        if !ip.is_loopback() {
            bail!("target {t} is not a loopback address: banter-load only drives 127.0.0.0/8");
        }
    }
    Ok(())
}

async fn coordinate(args: Args) -> anyhow::Result<report::Report> {
    let scenario = args.scenario.context("a scenario is required")?;
    check_targets(&args.targets)?;
    if args.users == 0 || args.procs == 0 {
        bail!("--users and --procs must be at least 1");
    }
    let run = match &args.run_id {
        Some(id)
            if (1..=12).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) =>
        {
            id.clone()
        }
        Some(_) => bail!("--run-id: 1 to 12 lowercase letters and digits"),
        None => format!("{:06x}", fastrand::u32(..1 << 24)),
    };
    let channel_count = if scenario == Scenario::Idle || scenario == Scenario::Storm {
        1
    } else {
        args.channels.clamp(1, args.users)
    };
    let idle_like = matches!(scenario, Scenario::Idle | Scenario::Storm);
    let join = !idle_like || args.channel.is_empty();
    let channels: Vec<String> = if join {
        (0..channel_count)
            .map(|i| format!("lg-{run}-{i}"))
            .collect()
    } else {
        vec![args.channel.clone()]
    };

    // Setup: one session to create the channels (and read them back at the end).
    let client = http::client()?;
    let admin_target = args.targets[0].clone();
    let admin = http::guest(&client, &admin_target, &format!("lg{run}admin")).await?;
    if join {
        for c in &channels {
            http::channel(&client, &admin_target, &admin, c).await?;
        }
    }
    let sources: Vec<Ipv4Addr> = (0..args.sources.clamp(1, 250))
        .map(|i| Ipv4Addr::new(127, 0, 0, 2 + i))
        .collect();

    let procs = args.procs.min(args.users);
    let mut stdins = Vec::new();
    let mut children = Vec::new();
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, WorkerMsg)>();
    let exe = std::env::current_exe()?;
    for w in 0..procs {
        let first = w * args.users / procs;
        let last = (w + 1) * args.users / procs;
        let spec = WorkerSpec {
            scenario,
            targets: args.targets.clone(),
            sources: sources.clone(),
            run: run.clone(),
            first_user: first,
            users: last - first,
            channels: channels.clone(),
            join,
            rate: args.rate,
            inflight: args.inflight,
            duration_s: args.duration,
            drain_s: args.drain,
            rounds: args.rounds,
            connect_concurrency: args.connect_concurrency,
            text_bytes: args.text_bytes.max(17),
        };
        let mut child = Command::new(&exe)
            .arg("--worker")
            .arg(serde_json::to_string(&spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker")?;
        stdins.push(child.stdin.take().context("worker stdin")?);
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(msg) = serde_json::from_str::<WorkerMsg>(&line) {
                    let _ = tx.send((w, msg));
                }
            }
            let _ = tx.send((
                w,
                WorkerMsg::Failed {
                    error: "worker exited".into(),
                },
            ));
        });
        children.push(child);
    }
    drop(tx);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    let style = ProgressStyle::with_template("{spinner} {elapsed:>4} {bar:30} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::new(1000).with_style(style);
    bar.set_message("creating guest sessions and connecting");
    bar.enable_steady_tick(Duration::from_millis(200));

    // Wait until every worker is set up.
    let mut progress = vec![Counters::default(); procs];
    let mut results: Vec<Option<WorkerResult>> = vec![None; procs];
    let mut ready = 0;
    while ready < procs {
        let (w, msg) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .context("timed out while workers set up")?
            .context("workers went away")?;
        match msg {
            WorkerMsg::Ready { counters } => {
                progress[w] = counters;
                ready += 1;
            }
            WorkerMsg::Progress { counters } => progress[w] = counters,
            WorkerMsg::Failed { error } => bail!("worker {w} failed while setting up: {error}"),
            WorkerMsg::Done { .. } => bail!("worker {w} finished before it started"),
        }
        let total = sum(&progress);
        bar.set_message(format!(
            "setting up: {ready}/{procs} workers ready, {} connected",
            total.connected
        ));
    }

    // Go.
    let expected_connections = args.users as u64;
    let phase = match scenario {
        Scenario::Fanout | Scenario::Flood | Scenario::Mixed => args.duration + args.drain,
        Scenario::Idle => args.duration,
        Scenario::Storm => args.duration * (args.rounds + 1) as f64,
    };
    let mut sampler = report::Sampling::start(&args.server_pids, args.postgres_cpu);
    let started = Instant::now();
    for stdin in &mut stdins {
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    }
    let mut done = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    while done < procs {
        tokio::select! {
            msg = rx.recv() => {
                let Some((w, msg)) = msg else { bail!("workers went away") };
                match msg {
                    WorkerMsg::Progress { counters } => progress[w] = counters,
                    WorkerMsg::Done { result } => {
                        progress[w] = result.counters.clone();
                        if results[w].is_none() {
                            results[w] = Some(*result);
                            done += 1;
                        }
                    }
                    WorkerMsg::Failed { error } => {
                        if results[w].is_none() {
                            bail!("worker {w} failed: {error}");
                        }
                    }
                    WorkerMsg::Ready { .. } => {}
                }
            }
            _ = ticker.tick() => {
                let total = sum(&progress);
                let elapsed = started.elapsed().as_secs_f64();
                sampler.tick(scenario, elapsed, args.duration, total.connected >= expected_connections);
                bar.set_position(((elapsed / phase).min(1.0) * 1000.0) as u64);
                bar.set_message(format!(
                    "connected {} sent {} acked {} delivered {}",
                    total.connected, total.sent, total.acked, total.delivered
                ));
            }
            _ = tokio::time::sleep_until(deadline) => bail!("the run passed --timeout"),
        }
    }
    bar.finish_and_clear();
    for mut child in children {
        let _ = child.wait().await;
    }
    let (server_stats, postgres_cpu_s) = sampler.finish();

    let results: Vec<WorkerResult> = results.into_iter().flatten().collect();
    let persisted = if matches!(
        scenario,
        Scenario::Fanout | Scenario::Flood | Scenario::Mixed
    ) && !args.relay_only
    {
        let mut total = 0;
        for c in &channels {
            total += http::last_seq(&client, &admin_target, &admin, c).await?;
        }
        Some(total as u64)
    } else {
        None
    };
    let mut report = report::build(
        &args,
        scenario,
        &channels,
        &results,
        server_stats,
        persisted,
    );
    report.postgres_cpu_s = postgres_cpu_s;
    report.postgres_us_per_message = postgres_cpu_s
        .zip(persisted)
        .filter(|(_, n)| *n > 0)
        .map(|(cpu, n)| cpu * 1e6 / n as f64);
    println!("{}", report.table());
    if let Some(path) = &args.out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        if let Err(e) = chart::draw(&report, path) {
            eprintln!("banter-load: no chart: {e:#}");
        }
    }
    Ok(report)
}

fn sum(all: &[Counters]) -> Counters {
    let mut total = Counters::default();
    for c in all {
        total.add(c);
    }
    total
}
