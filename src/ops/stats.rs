//! What an instance reports of itself every [`PERIOD`]: sampled here (sockets, users, CPU,
//! resident memory, deliveries and drops a second, its busiest channels), published to Redis
//! under `{prefix}:ops:<instance>` with a short TTL, and read back by every instance to answer
//! `GET /api/admin/cluster`. The same sample gives the weight of the agent check.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::contract::{ChannelActivity, ClusterView, DependencyHealth, InstanceView};
use crate::state::AppState;

/// How often an instance samples and publishes its figures.
pub const PERIOD: Duration = Duration::from_secs(2);
/// How long a published report lives: an instance that stops reporting drops off the page.
const REPORT_TTL: Duration = Duration::from_secs(10);
/// Channels an instance reports, and the cluster view lists.
const CHANNELS_REPORTED: usize = 20;
const CHANNELS_LISTED: usize = 10;
/// Moderation log entries on the cluster view.
const MODERATION_LISTED: i64 = 10;
/// Clock ticks a second of `/proc/<pid>/stat`'s CPU times (Linux's `USER_HZ`, 100 on every
/// architecture it exports to user space).
const USER_HZ: f64 = 100.0;

/// The process's CPU time (user and system) so far, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The process's resident memory, in bytes.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The weight (percent, 1 to 100) an instance reports for new sessions: what is left of its
/// capacity, by whichever is fuller of its sockets (against `capacity`) and its CPU (against
/// its cores); at most half while it drops deliveries (it does not keep up with what it has).
pub fn weight(sockets: u64, capacity: u64, cpu: f64, cores: u32, drops_per_sec: f64) -> u32 {
    let by_sockets = sockets as f64 / capacity.max(1) as f64;
    let by_cpu = cpu / f64::from(cores.max(1));
    let mut load = by_sockets.max(by_cpu);
    if drops_per_sec > 0.0 {
        load = load.max(0.5);
    }
    ((1.0 - load) * 100.0).round().clamp(1.0, 100.0) as u32
}

/// The previous sample, to turn totals into rates.
pub struct Sampler {
    started_at: DateTime<Utc>,
    at: Instant,
    cpu: Option<f64>,
    deliveries: u64,
    drops: u64,
    cores: u32,
}

impl Sampler {
    pub fn new() -> Self {
        Sampler {
            started_at: Utc::now(),
            at: Instant::now(),
            cpu: cpu_seconds(),
            deliveries: 0,
            drops: 0,
            cores: std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        }
    }

    /// This instance's figures since the last sample; updates the process metrics.
    pub fn sample(&mut self, state: &AppState) -> InstanceView {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64().max(0.001);
        self.at = now;
        let metrics = &state.metrics;
        let cpu_now = cpu_seconds();
        let cpu = match (cpu_now, self.cpu) {
            (Some(now), Some(before)) if now >= before => {
                metrics.cpu_seconds.inc_by(now - before);
                (now - before) / secs
            }
            _ => 0.0,
        };
        self.cpu = cpu_now.or(self.cpu);
        let rss = resident_bytes().unwrap_or(0);
        metrics.resident_bytes.set(rss as i64);
        let deliveries = metrics.deliveries.get();
        let drops = metrics.drops.total();
        let deliveries_per_sec = deliveries.saturating_sub(self.deliveries) as f64 / secs;
        let drops_per_sec = drops.saturating_sub(self.drops) as f64 / secs;
        self.deliveries = deliveries;
        self.drops = drops;

        let sockets = state.membership.live_sockets().max(0) as u64;
        let capacity = state.config.instance_socket_capacity;
        let weight = weight(sockets, capacity, cpu, self.cores, drops_per_sec);
        metrics.agent_weight.set(i64::from(weight));

        // The busiest channels here: by messages stored, then by sockets in them.
        let stored = metrics.channel_messages.take();
        let mut channels: HashMap<String, ChannelActivity> = HashMap::new();
        let mut by_messages: Vec<(String, u64)> = stored.into_iter().collect();
        by_messages.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (name, n) in by_messages.into_iter().take(CHANNELS_REPORTED) {
            channels.insert(
                name.clone(),
                ChannelActivity {
                    name,
                    messages_per_sec: n as f64 / secs,
                    sockets: 0,
                    online: None,
                },
            );
        }
        for (name, n) in state.membership.busiest_rooms(CHANNELS_REPORTED) {
            channels
                .entry(name.clone())
                .or_insert(ChannelActivity {
                    name,
                    messages_per_sec: 0.0,
                    sockets: 0,
                    online: None,
                })
                .sockets = n;
        }
        let mut channels: Vec<ChannelActivity> = channels.into_values().collect();
        for c in &mut channels {
            if c.sockets == 0 {
                c.sockets = state.membership.sockets_in(&c.name);
            }
        }
        sort_channels(&mut channels);
        channels.truncate(CHANNELS_REPORTED);

        InstanceView {
            id: state.presence.instance().to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: self.started_at,
            reported_at: Utc::now(),
            sockets,
            users: state.membership.users_here(),
            capacity,
            cpu,
            cores: self.cores,
            rss_bytes: rss,
            deliveries_per_sec,
            drops_per_sec,
            drops,
            moved: metrics.sockets_moved.get(),
            draining: state.ops.drain.refusing_sessions(),
            weight,
            channels,
        }
    }
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// Busiest first: by messages a second, then sockets, then name.
fn sort_channels(channels: &mut [ChannelActivity]) {
    channels.sort_by(|a, b| {
        b.messages_per_sec
            .total_cmp(&a.messages_per_sec)
            .then_with(|| b.sockets.cmp(&a.sockets))
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Publishes `view` as this instance's report.
pub async fn publish(state: &AppState, view: &InstanceView) -> redis::RedisResult<()> {
    let Ok(json) = serde_json::to_string(view) else {
        return Ok(());
    };
    let mut conn = state.redis.clone();
    redis::cmd("SET")
        .arg(state.ops.keys.instance_stats(&view.id))
        .arg(json)
        .arg("PX")
        .arg(REPORT_TTL.as_millis() as u64)
        .query_async::<()>(&mut conn)
        .await
}

/// The reports of every instance registered in presence (a missing or unreadable one is
/// listed as silent).
pub async fn reports(state: &AppState) -> redis::RedisResult<(Vec<InstanceView>, Vec<String>)> {
    let ids = state.presence.instances().await?;
    let mut conn = state.redis.clone();
    let (mut found, mut silent) = (Vec::new(), Vec::new());
    for id in ids {
        // One GET each: on a Redis Cluster the reports live on different slots.
        let raw: Option<String> = redis::cmd("GET")
            .arg(state.ops.keys.instance_stats(&id))
            .query_async(&mut conn)
            .await?;
        match raw.and_then(|r| serde_json::from_str::<InstanceView>(&r).ok()) {
            Some(view) => found.push(view),
            None => silent.push(id),
        }
    }
    Ok((found, silent))
}

/// How long a dependency takes to answer a trivial request (`None`: it did not, within 2 s).
async fn timed<F, T, E>(f: F) -> Option<f64>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(2), f).await {
        Ok(Ok(_)) => Some(started.elapsed().as_secs_f64() * 1000.0),
        _ => None,
    }
}

fn health(name: &str, latency: Option<f64>) -> DependencyHealth {
    DependencyHealth {
        name: name.to_owned(),
        ok: latency.is_some(),
        latency_ms: latency,
    }
}

/// `GET /api/admin/cluster`: the instances' reports, summed; the busiest channels with their
/// users online; the dependencies as this instance sees them; the newest moderation entries.
pub async fn cluster(state: &AppState) -> Result<ClusterView, crate::error::AppError> {
    let (mut instances, silent) = reports(state).await?;
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    let mut merged: HashMap<String, ChannelActivity> = HashMap::new();
    for instance in &instances {
        for c in &instance.channels {
            let entry = merged.entry(c.name.clone()).or_insert(ChannelActivity {
                name: c.name.clone(),
                messages_per_sec: 0.0,
                sockets: 0,
                online: None,
            });
            entry.messages_per_sec += c.messages_per_sec;
            entry.sockets += c.sockets;
        }
    }
    let mut channels: Vec<ChannelActivity> = merged.into_values().collect();
    sort_channels(&mut channels);
    channels.truncate(CHANNELS_LISTED);
    for c in &mut channels {
        c.online = state.presence.channel_online(&c.name).await.ok();
    }

    let db = sqlx::query("SELECT 1").execute(&state.db);
    let mut conn = state.redis.clone();
    let ping = redis::cmd("PING");
    let redis = ping.query_async::<String>(&mut conn);
    let (db, redis) = tokio::join!(timed(db), timed(redis));
    let mut dependencies = vec![health("postgres", db), health("redis", redis)];
    if state.reads.has_replica() {
        let replica = timed(sqlx::query("SELECT 1").execute(state.reads.any())).await;
        dependencies.push(health("postgres_replica", replica));
    }
    let moderation = crate::store::moderation::page(&state.db, None, MODERATION_LISTED)
        .await
        .unwrap_or_default();

    Ok(ClusterView {
        at: Utc::now(),
        answered_by: state.presence.instance().to_owned(),
        sockets: instances.iter().map(|i| i.sockets).sum(),
        online: state.presence.online_count().await.unwrap_or(0),
        deliveries_per_sec: instances.iter().map(|i| i.deliveries_per_sec).sum(),
        drops_per_sec: instances.iter().map(|i| i.drops_per_sec).sum(),
        instances,
        silent,
        channels,
        dependencies,
        moderation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_follows_the_fuller_of_sockets_and_cpu() {
        assert_eq!(weight(0, 1000, 0.0, 2, 0.0), 100);
        assert_eq!(weight(500, 1000, 0.2, 2, 0.0), 50);
        assert_eq!(weight(100, 1000, 1.5, 2, 0.0), 25);
        assert_eq!(weight(2000, 1000, 0.0, 2, 0.0), 1, "full: never 0");
        assert_eq!(weight(0, 1000, 0.0, 2, 3.0), 50, "dropping: at most half");
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(cpu_seconds().is_some());
        assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
    }
}
