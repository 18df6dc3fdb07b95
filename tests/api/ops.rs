//! Operating a cluster (SCALING.md "Balancing, draining and the cluster page"): the cluster
//! view is for administrators and counts what is there; a drain moves every socket of an
//! instance to the others, nothing missed, and the drained instance takes no new session until
//! the drain is called off; every metric the dashboards and alerts name is exported.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

const ADMIN: &str = "opsadmin";

/// The cluster view, polled until `ready` holds for it (instances report every 2 s).
async fn view_until(
    cluster: &Cluster,
    on: &Instance,
    admin: &User,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, view) = cluster.get(on, "/api/admin/cluster", admin).await;
        assert_eq!(status, 200, "{view}");
        if ready(&view) {
            return view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the cluster view never showed what was expected: {view:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn sockets_of(view: &Value, id: &str) -> Option<u64> {
    view["instances"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)?["sockets"]
        .as_u64()
}

/// Which instance answered a request (the cluster view says).
async fn id_of(cluster: &Cluster, on: &Instance, admin: &User) -> String {
    let (status, view) = cluster.get(on, "/api/admin/cluster", admin).await;
    assert_eq!(status, 200, "{view}");
    view["answered_by"]
        .as_str()
        .expect("answered_by")
        .to_owned()
}

/// A new Engine.IO session on an instance (polling handshake): its status and body.
async fn new_session(cluster: &Cluster, on: &Instance) -> (u16, String) {
    let resp = cluster
        .http
        .get(format!("{}/socket.io/?EIO=4&transport=polling", on.url()))
        .send()
        .await
        .expect("handshake request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn administrators_see_the_cluster_and_nobody_else_does() {
    let cluster = Cluster::start(&["--admin-users", ADMIN]).await;
    let admin = cluster.register(cluster.a(), ADMIN).await;
    let member = cluster.register(cluster.a(), "opsmember").await;
    let guest = cluster.guest("opsguest").await;
    let troll = cluster.guest("opstroll").await;

    // Nobody but an administrator reads the view or drains an instance.
    let anonymous = cluster
        .http
        .get(format!("{}/api/admin/cluster", cluster.a().url()))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
    let a_id = id_of(&cluster, cluster.a(), &admin).await;
    for who in [&member, &guest] {
        let (status, body) = cluster.get(cluster.b(), "/api/admin/cluster", who).await;
        assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
        let path = format!("/api/admin/instances/{a_id}/drain");
        let (status, _) = cluster.post(cluster.a(), &path, who, json!({})).await;
        assert_eq!(status, 403);
        let (status, _) = cluster
            .call(reqwest::Method::DELETE, cluster.a(), &path, who, None)
            .await;
        assert_eq!(status, 403);
    }
    // An instance that does not exist, or an id built to be long.
    for id in ["nosuchinstance".to_owned(), "x".repeat(5000)] {
        let path = format!("/api/admin/instances/{id}/drain");
        let (status, body) = cluster.post(cluster.a(), &path, &admin, json!({})).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    }

    // Three sockets on a, two on b, all in the default channel; a message stored on b.
    let on_a = [
        Client::connect(cluster.a(), &member).await,
        Client::connect(cluster.a(), &member).await,
        Client::connect(cluster.a(), &admin).await,
    ];
    let on_b = [
        Client::connect(cluster.b(), &guest).await,
        Client::connect(cluster.b(), &troll).await,
    ];
    let ack = send(&on_b[0], "general", "counted").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/admin/users/opstroll/ban",
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    on_b[1].wait_for_disconnect().await;

    let b_id = id_of(&cluster, cluster.b(), &admin).await;
    let view = view_until(&cluster, cluster.b(), &admin, |v| {
        sockets_of(v, &a_id) == Some(3) && sockets_of(v, &b_id) == Some(1)
    })
    .await;
    assert_eq!(view["sockets"], 4, "{view:#}");
    assert_eq!(
        view["online"], 3,
        "the member, the admin and the guest: {view:#}"
    );
    let a = view["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["id"] == a_id.as_str()))
        .expect("a listed");
    assert_eq!(a["users"], 2, "{a}");
    assert_eq!(a["draining"], false);
    assert!(a["rss_bytes"].as_u64().is_some_and(|b| b > 1 << 20), "{a}");
    assert!(
        (1..=100).contains(&a["weight"].as_u64().unwrap_or(0)),
        "{a}"
    );
    let general = view["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "general"))
        .unwrap_or_else(|| panic!("general listed: {view:#}"));
    assert_eq!(general["sockets"], 4, "{general}");
    assert_eq!(general["online"], 3, "{general}");
    let deps: Vec<(&str, bool)> = view["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .map(|d| (d["name"].as_str().unwrap_or(""), d["ok"] == true))
        .collect();
    assert_eq!(deps, [("postgres", true), ("redis", true)]);
    assert_eq!(view["moderation"][0]["action"], "user.ban", "{view:#}");
    assert_eq!(view["moderation"][0]["target"], "opstroll");

    drop(on_a);
    drop(on_b);
    cluster.finish().await;
}

#[tokio::test]
async fn a_drain_moves_every_socket_away_nothing_missed_and_takes_no_new_session() {
    let cluster = Cluster::start(&["--admin-users", ADMIN, "--drain-grace-secs", "0"]).await;
    let admin = cluster.register(cluster.a(), ADMIN).await;
    let sender = cluster.guest("drain_sender").await;
    let mut people = Vec::new();
    for i in 0..4 {
        people.push(cluster.guest(&format!("drain_p{i}")).await);
    }
    let writer = Client::connect(cluster.a(), &sender).await;
    let mut on_b = Vec::new();
    for p in &people {
        on_b.push(Client::connect(cluster.b(), p).await);
    }
    let first = send(&writer, "general", "before the drain").await;
    for c in &on_b {
        c.wait_for("message.new", |m| m["seq"] == first["message"]["seq"])
            .await;
    }
    let b_id = id_of(&cluster, cluster.b(), &admin).await;
    let recover: Vec<(String, Option<String>)> = on_b
        .iter()
        .map(|c| (c.pid().expect("a pid"), c.offset()))
        .collect();

    // Asked on a, carried to b.
    let path = format!("/api/admin/instances/{b_id}/drain");
    let (status, body) = cluster.post(cluster.a(), &path, &admin, json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"instance": b_id, "draining": true}));
    for c in &on_b {
        c.wait_for("instance.draining", |d| d["reconnect"] == true)
            .await;
        c.wait_for_disconnect().await;
    }
    assert_eq!(cluster.health(cluster.b()).await, 200, "alive");
    let ready = cluster
        .http
        .get(format!("{}/ready", cluster.b().url()))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let (status, body) = new_session(&cluster, cluster.b()).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"unavailable\""), "{body}");
    // A session b does not hold (moved, its next request hashed to b again): 503, so that
    // nginx tries the next instance; outside a drain it is Engine.IO's 400.
    let unknown = |on: &Instance| {
        cluster
            .http
            .get(format!(
                "{}/socket.io/?EIO=4&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
                on.url()
            ))
            .send()
    };
    assert_eq!(unknown(cluster.b()).await.expect("poll").status(), 503);
    assert_eq!(unknown(cluster.a()).await.expect("poll").status(), 400);

    // Sent while they were away; they come back on a with their sessions.
    let missed = send(&writer, "general", "while they moved").await;
    assert_eq!(missed["ok"], true, "{missed}");
    for (p, recover) in people.iter().zip(recover) {
        let back = Client::resume(cluster.a(), p, recover.clone()).await;
        assert_eq!(back.pid(), Some(recover.0), "recovered");
        back.wait_for("message.new", |m| m["seq"] == missed["message"]["seq"])
            .await;
        settle().await;
        let seqs: Vec<Value> = back
            .events("message.new")
            .iter()
            .map(|m| m["seq"].clone())
            .collect();
        assert_eq!(
            seqs,
            [missed["message"]["seq"].clone()],
            "once, nothing else"
        );
    }
    assert_eq!(
        cluster
            .metric(cluster.b(), "banter_sockets_moved_total")
            .await,
        4.0
    );
    assert_eq!(cluster.metric(cluster.b(), "banter_draining").await, 1.0);
    let view = view_until(&cluster, cluster.a(), &admin, |v| {
        sockets_of(v, &b_id) == Some(0)
    })
    .await;
    let b = view["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["id"] == b_id.as_str()))
        .expect("b listed");
    assert_eq!(
        (b["draining"].clone(), b["moved"].clone()),
        (json!(true), json!(4))
    );

    // a is the last instance taking sessions: it is not drained.
    let a_id = id_of(&cluster, cluster.a(), &admin).await;
    let (status, body) = cluster
        .post(
            cluster.a(),
            &format!("/api/admin/instances/{a_id}/drain"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert_eq!(new_session(&cluster, cluster.a()).await.0, 200);

    // Called off: b takes sessions again.
    let (status, body) = cluster
        .call(reqwest::Method::DELETE, cluster.a(), &path, &admin, None)
        .await;
    assert_eq!((status, body["draining"].clone()), (202, json!(false)));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while new_session(&cluster, cluster.b()).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "b serves again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = Client::connect(cluster.b(), &people[0]).await;
    assert!(again.pid().is_some());
    assert_eq!(cluster.metric(cluster.b(), "banter_draining").await, 0.0);
    cluster.finish().await;
}

/// Every metric that deploy/observability's dashboard and alert rules name is exported.
#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_name_is_exported() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.guest("metrics_user").await;
    let c = Client::connect(cluster.a(), &user).await;
    let ack = send(&c, "general", "observed").await;
    assert_eq!(ack["ok"], true, "{ack}");
    // The first sample of the process figures.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let body = cluster
        .http
        .get(format!("{}/metrics", cluster.a().url()))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let names = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/observability/metrics.txt"),
    )
    .expect("deploy/observability/metrics.txt");
    let mut missing = Vec::new();
    for name in names.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        let sampled = body.lines().any(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{']))
        });
        let declared = body.lines().any(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|r| r.split_whitespace().next())
                == Some(family)
        });
        if !(sampled || declared) {
            missing.push(name.to_owned());
        }
    }
    assert!(missing.is_empty(), "not in /metrics: {missing:?}\n{body}");
    drop(c);
    cluster.finish().await;
}

#[tokio::test]
async fn an_instance_well_above_the_mean_sheds_down_to_it_then_serves_again() {
    let cluster = Cluster::start(&[
        "--admin-users",
        ADMIN,
        "--rebalance",
        "true",
        "--rebalance-interval-secs",
        "1",
        "--rebalance-sockets-per-sec",
        "100",
    ])
    .await;
    let admin = cluster.register(cluster.b(), ADMIN).await;
    let (one, two) = (
        cluster.guest("reb_one").await,
        cluster.guest("reb_two").await,
    );
    // 30 sockets on a, 1 on b (the administrator's): the mean is 15.5, a sheds 14 or 15.
    let mut on_a = Vec::new();
    for i in 0..30 {
        on_a.push(Client::connect(cluster.a(), if i % 2 == 0 { &one } else { &two }).await);
    }
    let _watching = Client::connect(cluster.b(), &admin).await;
    let a_id = id_of(&cluster, cluster.a(), &admin).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let moved = cluster
            .metric(cluster.a(), "banter_sockets_moved_total")
            .await;
        let serving = new_session(&cluster, cluster.a()).await.0 == 200;
        if moved >= 14.0 && serving {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a rebalanced and serves again: moved {moved}, serving {serving}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let told = on_a
        .iter()
        .filter(|c| !c.events("instance.draining").is_empty())
        .count();
    assert!((14..=15).contains(&told), "{told} sockets moved");
    settle().await;
    let moved = cluster
        .metric(cluster.a(), "banter_sockets_moved_total")
        .await;
    assert!(
        (14.0..=15.0).contains(&moved),
        "moved down to the mean, no further: {moved}"
    );
    let view = view_until(&cluster, cluster.b(), &admin, |v| {
        sockets_of(v, &a_id).is_some_and(|n| n <= 16)
    })
    .await;
    assert_eq!(view["instances"].as_array().map(Vec::len), Some(2));
    cluster.finish().await;
}

/// One line from HAProxy's agent check at `addr`.
async fn agent_says(addr: std::net::SocketAddr) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the agent answers");
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut line))
        .await
        .expect("the agent closes after its line")
        .expect("read");
    line
}

/// A free loopback address for a listener of the process under test.
fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_drains_the_process_after_its_grace_and_its_agent_says_drain() {
    // The Kubernetes preStop step: `kill -USR1 1`. The process keeps running; it refuses new
    // sessions at once and moves its sockets after DRAIN_GRACE_SECS.
    let cluster = Cluster::start(&[]).await;
    let agent = free_addr();
    let mut env = cluster.process_env();
    env.push(("AGENT_CHECK_ADDR", agent.to_string()));
    env.push(("DRAIN_GRACE_SECS", "2".to_owned()));
    let mut process = Instance::spawn_process(&env).await;
    let line = agent_says(agent).await;
    let weight: u32 = line
        .strip_prefix("up ready ")
        .and_then(|w| w.strip_suffix("%\n"))
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("`up ready <weight>%`, got {line:?}"));
    assert!((1..=100).contains(&weight), "{line:?}");

    let user = cluster.guest("preStop").await;
    let client = Client::connect(&process, &user).await;
    let signalled = tokio::time::Instant::now();
    process.signal("-USR1");
    let deadline = signalled + Duration::from_secs(10);
    loop {
        let ready = cluster
            .http
            .get(format!("{}/ready", process.url()))
            .send()
            .await
            .expect("/ready")
            .status();
        if ready == 503 && agent_says(agent).await == "drain\n" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after SIGUSR1, /ready stays {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(new_session(&cluster, &process).await.0, 503);
    client
        .wait_for("instance.draining", |d| d["reconnect"] == true)
        .await;
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "the socket was moved before DRAIN_GRACE_SECS: after {:?}",
        signalled.elapsed()
    );
    client.wait_for_disconnect().await;
    assert!(
        process.running(),
        "SIGUSR1 drains; it does not stop the process"
    );
    let status = process.terminate().await;
    assert!(status.success(), "clean exit after the drain, got {status}");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_agent_check_addr_starts_without_an_agent() {
    // Compose and Kubernetes pass every setting, an unset one as an empty value.
    let cluster = Cluster::start(&[]).await;
    let mut env = cluster.process_env();
    env.push(("AGENT_CHECK_ADDR", String::new()));
    let process = Instance::spawn_process(&env).await;
    let ready = cluster
        .http
        .get(format!("{}/ready", process.url()))
        .send()
        .await
        .expect("/ready")
        .status();
    assert_eq!(ready, 200);
    let status = process.terminate().await;
    assert!(status.success(), "{status}");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigusr1_while_the_process_starts_drains_it_once_it_is_up() {
    // A preStop can come while the instance is still starting (here: its Postgres is slow to
    // answer). It must not kill the process (SIGUSR1's default action); the drain begins once
    // the instance is up.
    const SIGUSR1: u32 = 10;
    let cluster = Cluster::start(&[]).await;
    let slow_postgres = Proxy::to_postgres_held().await;
    let mut env = cluster.process_env();
    for (name, value) in env.iter_mut() {
        if *name == "DATABASE_URL" {
            *value = through_port(value, slow_postgres.port);
        }
    }
    let mut process = Instance::spawn_process_starting(&env);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !process.catches(SIGUSR1) {
        assert!(
            process.running() && tokio::time::Instant::now() < deadline,
            "the process does not take SIGUSR1 while it starts: a preStop then would kill it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    process.signal("-USR1");
    slow_postgres.release();
    process.healthy().await;
    let ready = cluster
        .http
        .get(format!("{}/ready", process.url()))
        .send()
        .await
        .expect("/ready")
        .status();
    assert_eq!(ready, 503, "the drain asked for at start-up holds");
    assert_eq!(new_session(&cluster, &process).await.0, 503);
    assert!(process.running());
    let status = process.terminate().await;
    assert!(status.success(), "{status}");
    cluster.finish().await;
}
