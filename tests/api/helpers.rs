//! Test support: a fresh two-instance cluster per test (own database, own Redis prefix), an
//! HTTP client, and a Socket.IO client (`sio.rs`) that records every event.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banter::{App, Config};
use clap::Parser;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::sio;

/// The JWT secret every test instance shares.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
/// An origin in the test allowlist.
pub const GOOD_ORIGIN: &str = "http://localhost:3000";

/// Where a process instance's output goes: nowhere, unless `BANTER_TEST_LOGS` is set.
fn test_logs() -> std::process::Stdio {
    if std::env::var_os("BANTER_TEST_LOGS").is_some() {
        std::process::Stdio::inherit()
    } else {
        std::process::Stdio::null()
    }
}

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The Redis Cluster the tests run on instead of the single Redis, when
/// `REDIS_CLUSTER_NODES` is set (comma-separated node URLs).
pub fn redis_cluster_nodes() -> Option<String> {
    std::env::var("REDIS_CLUSTER_NODES")
        .ok()
        .filter(|n| !n.trim().is_empty())
}

/// A command connection to the test Redis (the cluster when the tests run on one).
pub async fn test_redis() -> banter::testing::Redis {
    connect_redis(redis_cluster_nodes().as_deref(), &redis_url()).await
}

/// A command connection to the cluster of `nodes` (comma-separated URLs), else to `url`.
async fn connect_redis(nodes: Option<&str>, url: &str) -> banter::testing::Redis {
    let target = match nodes {
        Some(nodes) => {
            let nodes: Vec<&str> = nodes.split(',').collect();
            banter::testing::RedisTarget::cluster(&nodes).expect("cluster nodes")
        }
        None => banter::testing::RedisTarget::single(url).expect("redis url"),
    };
    // Renewals of a cluster connection run as tasks that nothing stops: the test process ends.
    target
        .connect(&banter::testing::Shutdown::new())
        .await
        .expect("redis connection")
}

/// Every key of a prefix, on one Redis or every master of a cluster (hash-tagged keys begin
/// with `{`, so the prefix may come after it).
pub async fn keys_of(redis: &banter::testing::Redis, prefix: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(format!("*{prefix}*"))
        .query_async(&mut redis.clone())
        .await
        .unwrap_or_default()
}

/// A rate limiter of its own, outside any instance: keys under a fresh prefix (returned, with
/// its Redis connection) on the test Redis.
pub async fn standalone_limiter(
    limit: u64,
    window_secs: u64,
    block_secs: u64,
) -> (banter::testing::RateLimiter, banter::testing::Redis, String) {
    let redis = test_redis().await;
    let prefix = format!("bt{}", uuid::Uuid::new_v4().simple());
    let keys = banter::testing::Keys::for_target(&prefix, redis.is_cluster());
    let limiter = banter::testing::RateLimiter::new(
        redis.clone(),
        keys,
        banter::testing::SendLimit {
            messages: limit,
            window_secs,
            block_secs,
            hold_secs: 0,
        },
        &banter::testing::Shutdown::new(),
    );
    (limiter, redis, prefix)
}

/// `url` with its database name replaced.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` with its port replaced (the host becomes 127.0.0.1).
pub fn through_port(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("url scheme");
    let (authority, path) = rest.split_once('/').expect("url path");
    let user = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}127.0.0.1:{port}/{path}")
}

/// A TCP proxy the test can cut: while cut, it closes every connection and refuses new ones,
/// which is what an instance sees when its Postgres goes away.
pub struct Proxy {
    pub port: u16,
    /// Connections wait in the listen backlog, unanswered, until [`Proxy::release`].
    held: Arc<tokio::sync::Notify>,
    cut: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Proxies to the Postgres of DATABASE_URL.
    pub async fn to_postgres() -> Proxy {
        let proxy = Self::to_postgres_held().await;
        proxy.release();
        proxy
    }

    /// The same, but a connection gets no answer until [`Proxy::release`]: a Postgres that
    /// is slow to answer while an instance starts.
    pub async fn to_postgres_held() -> Proxy {
        let url = admin_url();
        let host = url
            .split_once("://")
            .and_then(|(_, r)| r.split('/').next())
            .map(|a| a.rsplit_once('@').map(|(_, h)| h).unwrap_or(a).to_owned())
            .expect("postgres host");
        let target = if host.contains(':') {
            host
        } else {
            format!("{host}:5432")
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, l) = (cut.clone(), links.clone());
        let held = Arc::new(tokio::sync::Notify::new());
        let released = held.clone();
        let accept = tokio::spawn(async move {
            released.notified().await;
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                l.lock().unwrap().push(link.abort_handle());
            }
        });
        Proxy {
            port,
            held,
            cut,
            links,
            accept,
        }
    }

    /// Connections are answered from now on.
    pub fn release(&self) {
        self.held.notify_one();
    }

    /// Postgres "goes away": open connections are closed, new ones refused.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Postgres is back.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// One running instance, on its own runtime so that it can be killed without any cleanup.
pub struct Instance {
    pub addr: SocketAddr,
    /// Set for an instance running as a separate `banter` process.
    process: Option<std::process::Child>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Instance {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn start(config: Config) -> Instance {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let app = App::build(config).await.expect("instance builds");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).ok();
                let serve = app.serve(listener, async move {
                    let _ = stop_rx.await;
                });
                tokio::select! {
                    r = serve => r.expect("instance serves"),
                    _ = crash_rx => {}
                }
            });
            // After a crash, every task is dropped without running its cleanup.
            rt.shutdown_background();
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("instance started");
        Instance {
            addr,
            process: None,
            stop: Some(stop_tx),
            crash: Some(crash_tx),
            thread: Some(thread),
        }
    }

    /// Runs the `banter` binary with `env` on a free loopback port and waits for `/health`.
    pub async fn spawn_process(env: &[(&str, String)]) -> Instance {
        let instance = Self::spawn_process_starting(env);
        instance.healthy().await;
        instance
    }

    /// Waits until the instance answers `/health`.
    pub async fn healthy(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while reqwest::get(format!("{}/health", self.url()))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "banter process did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the `banter` binary with `env` on a free loopback port, without waiting for it.
    pub fn spawn_process_starting(env: &[(&str, String)]) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
            .env("BANTER_ADDR", addr.to_string())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            // BANTER_TEST_LOGS=1 shows the process's logs (with its RUST_LOG, if given).
            .stdout(test_logs())
            .stderr(test_logs())
            .spawn()
            .expect("spawn banter");
        Instance {
            addr,
            process: Some(child),
            stop: None,
            crash: None,
            thread: None,
        }
    }

    /// Whether a process instance has a handler for signal number `signal` (its `SigCgt`).
    pub fn catches(&self, signal: u32) -> bool {
        let pid = self.process.as_ref().expect("a process instance").id();
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let mask = status.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
                u64::from_str_radix(mask.trim(), 16).ok()
            })
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }

    /// Resident and peak resident memory of a process instance, in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let pid = self.process.as_ref().expect("a process instance").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends `signal` (e.g. `-USR1`) to a process instance.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("a process instance").id();
        let sent = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// Whether a process instance is still running.
    pub fn running(&mut self) -> bool {
        let child = self.process.as_mut().expect("a process instance");
        matches!(child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM to a process instance and returns its exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.process.take().expect("a process instance");
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait")
    }

    /// A clean shutdown (as on SIGTERM).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.join().await;
    }

    /// Stops the instance without any cleanup, as SIGKILL would.
    pub async fn crash(mut self) {
        if let Some(crash) = self.crash.take() {
            let _ = crash.send(());
        }
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await
                .expect("join")
                .expect("instance thread");
        }
    }
}

/// A process instance never outlives its test, also one that failed before stopping it: it
/// would keep its database connections, and the tests after it would find none.
impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two instances sharing one fresh database and one fresh Redis prefix.
pub struct Cluster {
    pub a: Option<Instance>,
    pub b: Option<Instance>,
    pub db: sqlx::PgPool,
    db_name: String,
    admin_url: String,
    db_url: String,
    prefix: String,
    redis_url: String,
    /// The Redis Cluster the instances use instead of `redis_url`, if any.
    redis_cluster: Option<String>,
    extra: Vec<String>,
    /// The folder both instances keep uploads in (a shared volume in production).
    pub storage: std::path::PathBuf,
    pub http: reqwest::Client,
}

impl Cluster {
    /// Starts two instances (on the test Redis Cluster when there is one); `extra` are
    /// additional `--flag value` arguments for both.
    pub async fn start(extra: &[&str]) -> Cluster {
        Self::start_with(redis_cluster_nodes(), None, extra).await
    }

    /// Starts two instances on a given single Redis.
    pub async fn start_on_redis(redis_url: String, extra: &[&str]) -> Cluster {
        Self::start_on(admin_url(), redis_url, None, None, None, extra).await
    }

    /// Starts two instances on a given Redis Cluster (`nodes`: comma-separated URLs).
    pub async fn start_on_redis_cluster(nodes: &str, extra: &[&str]) -> Cluster {
        Self::start_with(Some(nodes.to_owned()), None, extra).await
    }

    /// Starts two instances that reach Postgres through `proxy` (which the test can cut).
    pub async fn start_behind_proxy(proxy: &Proxy, extra: &[&str]) -> Cluster {
        Self::start_with(redis_cluster_nodes(), Some(proxy.port), extra).await
    }

    /// A cluster on the Postgres server of `primary` (an admin URL), whose instances read from
    /// the streaming replica of `replica` (`DATABASE_READ_URL`, the same database name).
    pub async fn start_with_replica(primary: &str, replica: &str, extra: &[&str]) -> Cluster {
        Self::start_on(
            primary.to_owned(),
            redis_url(),
            redis_cluster_nodes(),
            None,
            Some(replica),
            extra,
        )
        .await
    }

    async fn start_with(
        redis_cluster: Option<String>,
        pg_proxy_port: Option<u16>,
        extra: &[&str],
    ) -> Cluster {
        Self::start_on(
            admin_url(),
            redis_url(),
            redis_cluster,
            pg_proxy_port,
            None,
            extra,
        )
        .await
    }

    async fn start_on(
        admin_url: String,
        redis_url: String,
        redis_cluster: Option<String>,
        pg_proxy_port: Option<u16>,
        replica: Option<&str>,
        extra: &[&str],
    ) -> Cluster {
        let db_name = format!("banter_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.expect("postgres");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
            .execute(&mut admin)
            .await
            .expect("create database");
        admin.close().await.ok();
        let db_url = with_database(&admin_url, &db_name);
        // The test itself always reaches Postgres directly; instances maybe through the proxy.
        let instance_db_url = match pg_proxy_port {
            Some(port) => through_port(&db_url, port),
            None => db_url.clone(),
        };
        let prefix = format!("bt{}", Uuid::new_v4().simple());
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some(replica) = replica {
            extra.extend([
                "--database-read-url".to_owned(),
                with_database(replica, &db_name),
            ]);
        }
        let storage = std::env::temp_dir().join(format!("banter-test-uploads-{prefix}"));
        let mut cluster = Cluster {
            storage,
            a: None,
            b: None,
            db: sqlx::PgPool::connect_lazy(&db_url).expect("pool"),
            db_name,
            admin_url,
            db_url: instance_db_url,
            prefix,
            redis_url,
            redis_cluster,
            extra,
            http: reqwest::Client::new(),
        };
        // Both start at the same moment on the empty database: migrations must cope.
        let (a, b) = tokio::join!(cluster.instance(), cluster.instance());
        cluster.a = Some(a);
        cluster.b = Some(b);
        cluster
    }

    /// A new instance of this cluster.
    pub async fn instance(&self) -> Instance {
        let mut args = vec![
            "banter".to_owned(),
            "--database-url".into(),
            self.db_url.clone(),
            "--redis-prefix".into(),
            self.prefix.clone(),
            "--jwt-secret".into(),
            SECRET.into(),
            "--allowed-origins".into(),
            GOOD_ORIGIN.into(),
            "--presence-heartbeat-secs".into(),
            "1".into(),
        ];
        match &self.redis_cluster {
            Some(nodes) => args.extend(["--redis-cluster-nodes".to_owned(), nodes.clone()]),
            // Set empty, not left out: the test process's own REDIS_CLUSTER_NODES must not
            // reach an instance that is to use one Redis.
            None => args.extend([
                "--redis-url".to_owned(),
                self.redis_url.clone(),
                "--redis-cluster-nodes".to_owned(),
                String::new(),
            ]),
        }
        args.extend(self.extra.iter().cloned());
        // Every test client comes from 127.0.0.1: per-address caps only where a test sets them.
        for (flag, value) in [
            ("--guests-per-address-per-hour", "100000"),
            ("--guest-messages-per-address", "1000000"),
            ("--channels-per-user-per-hour", "1000"),
            ("--max-pending-sessions-per-address", "100000"),
            // Offline announcements wait 1 s, not 5, so that tests end sooner.
            ("--presence-offline-grace-secs", "1"),
        ] {
            if !self.extra.iter().any(|a| a == flag) {
                args.extend([flag.to_owned(), value.to_owned()]);
            }
        }
        if !self.extra.iter().any(|a| a == "--storage-url") {
            args.extend([
                "--storage-url".to_owned(),
                self.storage.display().to_string(),
            ]);
        }
        let config = Config::try_parse_from(args).expect("config");
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Building needs a runtime of its own (the instance keeps it); do it off this one.
        std::thread::spawn(move || {
            tx.send(Instance::start(config)).ok();
        });
        rx.await.expect("instance")
    }

    /// The environment that makes a `banter` process join this cluster.
    pub fn process_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.db_url.clone()),
            ("REDIS_URL", self.redis_url.clone()),
            (
                "REDIS_CLUSTER_NODES",
                self.redis_cluster.clone().unwrap_or_default(),
            ),
            ("REDIS_PREFIX", self.prefix.clone()),
            ("JWT_SECRET", SECRET.to_owned()),
            ("ALLOWED_ORIGINS", GOOD_ORIGIN.to_owned()),
            ("PRESENCE_HEARTBEAT_SECS", "1".to_owned()),
            ("PRESENCE_OFFLINE_GRACE_SECS", "1".to_owned()),
            ("STORAGE_URL", self.storage.display().to_string()),
        ]
    }

    pub fn a(&self) -> &Instance {
        self.a.as_ref().expect("instance a running")
    }

    /// The names of this cluster's Redis keys.
    pub fn keys(&self) -> banter::testing::Keys {
        banter::testing::Keys::for_target(&self.prefix, self.redis_cluster.is_some())
    }

    /// A command connection to this cluster's Redis.
    pub async fn redis(&self) -> banter::testing::Redis {
        connect_redis(self.redis_cluster.as_deref(), &self.redis_url).await
    }

    /// Sets a Redis key (a name from [`Cluster::keys`]), to stage a state the instances must
    /// cope with.
    pub async fn redis_set(&self, key: &str, value: &str) {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.redis().await)
            .await
            .expect("SET");
    }

    /// One sample of `/metrics` on an instance, by its exact series name (labels included).
    /// Each instance has its own metrics.
    pub async fn metric(&self, instance: &Instance, series: &str) -> f64 {
        let body = self
            .http
            .get(format!("{}/metrics", instance.url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{series} is exported:\n{body}"))
    }

    pub fn b(&self) -> &Instance {
        self.b.as_ref().expect("instance b running")
    }

    /// Stops what still runs and removes the database and every Redis key of the cluster.
    pub async fn finish(mut self) {
        for instance in [self.a.take(), self.b.take()].into_iter().flatten() {
            instance.stop().await;
        }
        self.db.close().await;
        let _ = std::fs::remove_dir_all(&self.storage);
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.db_name
            )))
            .execute(&mut admin)
            .await;
        }
        let redis = self.redis().await;
        for key in keys_of(&redis, &self.prefix).await {
            let _: Result<(), _> = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut redis.clone())
                .await;
        }
    }

    /// Registers a user on instance `on` and returns their session.
    pub async fn register(&self, on: &Instance, name: &str) -> User {
        let resp = self
            .http
            .post(format!("{}/api/auth/register", on.url()))
            .json(&json!({
                "username": name,
                "email": format!("{name}@example.com"),
                "password": "password123",
            }))
            .send()
            .await
            .expect("register");
        assert_eq!(resp.status(), 201, "register {name}");
        User::from_response(resp).await
    }

    /// Signs in a guest (cheaper than registering: no password hash).
    pub async fn guest(&self, name: &str) -> User {
        let resp = self
            .http
            .post(format!("{}/api/auth/guest", self.a().url()))
            .json(&json!({ "username": name }))
            .send()
            .await
            .expect("guest");
        assert_eq!(resp.status(), 201, "guest {name}");
        User::from_response(resp).await
    }

    /// Ids of the users `/api/presence/online{query}` lists for `viewer` (None on an error).
    pub async fn online(&self, on: &Instance, viewer: &User, query: &str) -> Option<Vec<String>> {
        let (status, body) = self
            .get(on, &format!("/api/presence/online{query}"), viewer)
            .await;
        (status == 200).then(|| {
            body.as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u["userId"].as_str().map(str::to_owned))
                .collect()
        })
    }

    /// The status of `/health` on an instance.
    pub async fn health(&self, on: &Instance) -> u16 {
        self.http
            .get(format!("{}/health", on.url()))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// A request with a session cookie (and a JSON body, if any): the status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        on: &Instance,
        path: &str,
        user: &User,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", on.url()))
            .header("cookie", user.cookie());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// GET with a session cookie.
    pub async fn get(&self, on: &Instance, path: &str, user: &User) -> (u16, Value) {
        self.call(reqwest::Method::GET, on, path, user, None).await
    }

    /// POST JSON with a session cookie.
    pub async fn post(&self, on: &Instance, path: &str, user: &User, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, on, path, user, Some(body))
            .await
    }
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl User {
    pub async fn from_response(resp: reqwest::Response) -> User {
        let token = session_cookie(&resp).expect("session cookie");
        let body: Value = resp.json().await.expect("json");
        User {
            id: body["user"]["id"].as_str().expect("id").to_owned(),
            token,
        }
    }

    pub fn cookie(&self) -> String {
        format!("token={}", self.token)
    }
}

/// The `token` cookie a response sets.
pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("token="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned())
}

/// How a test client presents itself at the handshake.
#[derive(Clone, Default)]
pub struct Hello {
    pub cookie: Option<String>,
    pub auth_token: Option<String>,
    /// A session to recover: its pid and the offset of the last event received, as
    /// socket.io-client sends them (`auth.pid`, `auth.offset`).
    pub recover: Option<(String, Option<String>)>,
    pub origin: Option<String>,
    pub polling: bool,
}

impl Hello {
    pub fn cookie(user: &User) -> Hello {
        Hello {
            cookie: Some(user.cookie()),
            ..Hello::default()
        }
    }
}

#[derive(Default)]
struct Recorded {
    events: Vec<(String, Value, std::time::Instant)>,
    connected: bool,
    /// The pid of the CONNECT answer (connection state recovery).
    pid: Option<String>,
    /// The last string argument of the last event with one, once a pid is held (what
    /// socket.io-client keeps as its offset).
    offset: Option<String>,
    /// The CONNECT_ERROR's message, when the handshake was refused.
    refused: Option<String>,
    closed: bool,
    /// The `error` events (kept apart from the others, as Socket.IO clients report them).
    errors: Vec<String>,
}

/// A Socket.IO client ([`crate::sio`]) that records what it receives.
pub struct Client {
    inner: sio::Socket,
    recorded: Arc<Mutex<Recorded>>,
    changed: Arc<Notify>,
    /// Records what arrives, for the client's life.
    _recorder: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An event's or an ack's arguments as one value: the only one, or all of them as an array.
fn first_arg(mut args: Vec<Value>) -> Value {
    if args.len() == 1 {
        args.remove(0)
    } else {
        Value::Array(args)
    }
}

/// The outcome of a handshake.
pub enum Handshake {
    Connected(Client),
    Refused(String),
}

impl Client {
    /// Connects and waits for the server's verdict.
    pub async fn handshake(on: &Instance, hello: Hello) -> Handshake {
        let mut headers = Vec::new();
        if let Some(cookie) = &hello.cookie {
            headers.push(("Cookie".to_owned(), cookie.clone()));
        }
        if let Some(origin) = &hello.origin {
            headers.push(("Origin".to_owned(), origin.clone()));
        }
        let mut auth = serde_json::Map::new();
        if let Some(token) = hello.auth_token {
            auth.insert("token".into(), json!(token));
        }
        if let Some((pid, offset)) = hello.recover {
            auth.insert("pid".into(), json!(pid));
            if let Some(offset) = offset {
                auth.insert("offset".into(), json!(offset));
            }
        }
        let options = sio::Options {
            base: on.url(),
            polling: hello.polling,
            headers,
            auth: (!auth.is_empty()).then_some(Value::Object(auth)),
        };
        let (inner, mut incoming) = sio::connect(options).await.expect("engine.io connection");
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let changed = Arc::new(Notify::new());
        let (r, c) = (recorded.clone(), changed.clone());
        let recorder = tokio::spawn(async move {
            while let Some(packet) = incoming.recv().await {
                {
                    let mut r = r.lock().unwrap();
                    match packet {
                        sio::Incoming::Connected(data) => {
                            r.connected = true;
                            r.pid = data.get("pid").and_then(Value::as_str).map(str::to_owned);
                        }
                        sio::Incoming::ConnectError(data) => {
                            let message = data
                                .get("message")
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                                .unwrap_or_else(|| data.to_string());
                            r.refused = Some(message);
                        }
                        sio::Incoming::Event(name, args) if name == "error" => {
                            let text = match first_arg(args) {
                                Value::String(s) => s,
                                other => other.to_string(),
                            };
                            r.errors.push(text);
                        }
                        sio::Incoming::Event(name, mut args) => {
                            if r.pid.is_some() {
                                if let Some(Value::String(offset)) = args.last() {
                                    r.offset = Some(offset.clone());
                                }
                            }
                            // A durable event's offset follows its payload.
                            if args.len() >= 2 && args.last().is_some_and(Value::is_string) {
                                args.pop();
                            }
                            r.events
                                .push((name, first_arg(args), std::time::Instant::now()));
                        }
                        sio::Incoming::Closed => r.closed = true,
                    }
                }
                c.notify_waiters();
            }
        });
        let client = Client {
            inner,
            recorded,
            changed,
            _recorder: AbortOnDrop(recorder),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = client.changed.notified();
            {
                let r = client.recorded.lock().unwrap();
                if r.connected {
                    break;
                }
                if let Some(message) = &r.refused {
                    return Handshake::Refused(message.clone());
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no handshake verdict within {WAIT:?}");
            }
        }
        Handshake::Connected(client)
    }

    /// Connects with a session cookie; panics when refused.
    pub async fn connect(on: &Instance, user: &User) -> Client {
        match Self::handshake(on, Hello::cookie(user)).await {
            Handshake::Connected(c) => c,
            Handshake::Refused(m) => panic!("handshake refused: {m}"),
        }
    }

    /// The pid of the CONNECT answer (connection state recovery), if any.
    pub fn pid(&self) -> Option<String> {
        self.recorded.lock().unwrap().pid.clone()
    }

    /// The offset socket.io-client would send back when it reconnects.
    pub fn offset(&self) -> Option<String> {
        self.recorded.lock().unwrap().offset.clone()
    }

    /// Connects `user` again as socket.io-client does after losing its transport: with this
    /// client's pid and offset.
    pub async fn reconnect(&self, on: &Instance, user: &User) -> Client {
        let recover = self.pid().map(|pid| (pid, self.offset()));
        let hello = Hello {
            recover,
            ..Hello::cookie(user)
        };
        match Self::handshake(on, hello).await {
            Handshake::Connected(c) => c,
            Handshake::Refused(m) => panic!("handshake refused: {m}"),
        }
    }

    /// Connects `user` with a session to recover (a pid and an offset).
    pub async fn resume(on: &Instance, user: &User, recover: (String, Option<String>)) -> Client {
        let hello = Hello {
            recover: Some(recover),
            ..Hello::cookie(user)
        };
        match Self::handshake(on, hello).await {
            Handshake::Connected(c) => c,
            Handshake::Refused(m) => panic!("handshake refused: {m}"),
        }
    }

    /// Ends the transport without a DISCONNECT (a lost connection, as the server sees it).
    pub fn drop_transport(self) {
        drop(self);
    }

    /// Emits and waits for the ack.
    pub async fn ack(&self, event: &str, payload: Value) -> Value {
        self.ack_within(event, payload, WAIT).await
    }

    /// Emits an event with no argument at all and waits for the ack.
    pub async fn ack_empty(&self, event: &str) -> Value {
        self.ack_args_within(event, Vec::new(), WAIT).await
    }

    /// Emits and waits for the ack up to `wait` (for an event queued behind a flood of others,
    /// whose handling time depends on the machine, not on banter's behaviour).
    pub async fn ack_within(&self, event: &str, payload: Value, wait: Duration) -> Value {
        self.ack_args_within(event, vec![payload], wait).await
    }

    /// Emits now and returns the wait for the ack (so that a test can send many events at a
    /// pace of its own before any ack comes).
    pub fn ack_later(
        &self,
        event: &str,
        payload: Value,
    ) -> impl std::future::Future<Output = Value> + 'static {
        let answer = self.inner.emit_with_ack(event, vec![payload]);
        let event = event.to_owned();
        async move {
            let args = tokio::time::timeout(WAIT, answer)
                .await
                .unwrap_or_else(|_| panic!("no ack for {event} within {WAIT:?}"))
                .expect("ack");
            first_arg(args)
        }
    }

    async fn ack_args_within(&self, event: &str, args: Vec<Value>, wait: Duration) -> Value {
        let answer = self.inner.emit_with_ack(event, args);
        let args = tokio::time::timeout(wait, answer)
            .await
            .unwrap_or_else(|_| panic!("no ack for {event} within {wait:?}"))
            .expect("ack");
        first_arg(args)
    }

    /// Emits without an ack.
    pub async fn emit(&self, event: &str, payload: Value) {
        self.inner.emit(event, vec![payload]);
    }

    /// Every payload received so far for an event.
    pub fn events(&self, name: &str) -> Vec<Value> {
        self.recorded
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.clone())
            .collect()
    }

    /// The `error` events received so far (the client library reports them apart).
    pub async fn wait_for_error(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            let found = self
                .recorded
                .lock()
                .unwrap()
                .errors
                .iter()
                .find(|e| pred(e))
                .cloned();
            if let Some(e) = found {
                return e;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("no matching error event within {WAIT:?}");
            }
        }
    }

    /// Every payload received so far for an event, with its arrival time.
    pub fn timed_events(&self, name: &str) -> Vec<(Value, std::time::Instant)> {
        self.recorded
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, v, t)| (v.clone(), *t))
            .collect()
    }

    /// Waits until an event matching `pred` has arrived and returns it.
    pub async fn wait_for(&self, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if let Some(v) = self.events(name).into_iter().find(|v| pred(v)) {
                return v;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no matching {name} within {WAIT:?}; got {:?}",
                    self.events(name)
                );
            }
        }
    }

    /// Waits until `count` events `name` have arrived and returns them (and any more).
    pub async fn wait_for_count(&self, name: &str, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            let got = self.events(name);
            if got.len() >= count {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("{} of {count} {name} within {WAIT:?}: {got:?}", got.len());
            }
        }
    }

    /// Waits until the server has ended this connection.
    pub async fn wait_for_disconnect(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.changed.notified();
            if self.recorded.lock().unwrap().closed {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("still connected after {WAIT:?}");
            }
        }
    }

    pub async fn disconnect(self) {
        self.inner.disconnect().await;
    }
}

/// Sends a message and returns the ack.
pub async fn send(client: &Client, channel: &str, text: &str) -> Value {
    client
        .ack(
            "message.send",
            json!({ "channel": channel, "text": text, "client_message_id": Uuid::new_v4() }),
        )
        .await
}

/// `POST /api/upload/upload` with the multipart field `file`.
pub async fn multipart(
    cluster: &Cluster,
    on: &Instance,
    user: &User,
    name: &str,
    kind: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(kind)
        .expect("mime");
    let form = reqwest::multipart::Form::new().part("file", part);
    let resp = cluster
        .http
        .post(format!("{}/api/upload/upload", on.url()))
        .header("cookie", user.cookie())
        .multipart(form)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The error code of a failed ack.
pub fn code(ack: &Value) -> &str {
    assert_eq!(ack["ok"], false, "expected a failed ack, got {ack}");
    ack["error"]["code"].as_str().unwrap_or_default()
}

/// Sleeps a little so that what should not happen has had the chance to.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

/// A Redis server of the test's own, which it may kill and start again (the shared one must
/// stay up for the other tests).
pub struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("banter-redis-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut redis = PrivateRedis {
            port,
            dir,
            child: None,
        };
        redis.launch();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            // BANTER_TEST_LOGS=1 shows the process's logs (with its RUST_LOG, if given).
            .stdout(test_logs())
            .stderr(test_logs())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL): its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): it keeps its data but answers nothing.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused server.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own (three masters, three replicas, on loopback; from
/// `scripts/redis-cluster.sh`), for tests that fail its masters over. Stopped on drop.
pub struct PrivateRedisCluster {
    dir: std::path::PathBuf,
    nodes: String,
}

impl PrivateRedisCluster {
    pub fn start() -> PrivateRedisCluster {
        let dir = std::env::temp_dir().join(format!("banter-redis-cluster-{}", Uuid::new_v4()));
        let out = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/redis-cluster.sh"
        ))
        .arg("start")
        .arg(&dir)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("scripts/redis-cluster.sh");
        assert!(out.status.success(), "the Redis Cluster did not start");
        let nodes = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        PrivateRedisCluster { dir, nodes }
    }

    /// The node URLs, comma-separated (`REDIS_CLUSTER_NODES`).
    pub fn nodes(&self) -> &str {
        &self.nodes
    }

    fn ports(&self) -> Vec<u16> {
        self.nodes
            .split(',')
            .filter_map(|u| u.rsplit(':').next()?.parse().ok())
            .collect()
    }

    /// `redis-cli` on the first node that answers.
    fn cli(&self, args: &[&str]) -> String {
        for port in self.ports() {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(args)
                .output()
                .expect("redis-cli");
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !text.is_empty() && !text.starts_with("Could not connect") {
                return text;
            }
        }
        panic!("no Redis Cluster node answers {args:?}");
    }

    /// The port of the master that serves `key`.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot: u32 = self
            .cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("slot");
        for line in self.cli(&["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                match (lo.parse::<u32>(), hi.parse::<u32>()) {
                    (Ok(lo), Ok(hi)) => (lo..=hi).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                let addr = fields[1].split('@').next().expect("address");
                return addr.rsplit(':').next().unwrap().parse().expect("port");
            }
        }
        panic!("no master serves slot {slot}");
    }

    /// Kills the node on `port` (SIGKILL): its replica takes over after the node timeout.
    pub fn kill(&self, port: u16) {
        let pid = std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid"))
            .expect("pid file");
        let status = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Whether every slot is served again (as a surviving node sees it).
    pub fn healthy(&self) -> bool {
        self.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok")
    }
}

impl Drop for PrivateRedisCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/redis-cluster.sh"
        ))
        .arg("stop")
        .arg(&self.dir)
        .status();
    }
}
