//! Failures of the services banter depends on, with live clients on both instances.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

async fn ready_status(cluster: &Cluster, on: &Instance) -> u16 {
    cluster
        .http
        .get(format!("{}/ready", on.url()))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing_and_recovers_without_a_restart() {
    let mut redis = PrivateRedis::start();
    let cluster = Cluster::start_on_redis(redis.url(), &["--rate-limit-messages", "1000"]).await;
    let alpha = cluster.guest("alpha").await;
    let beta = cluster.guest("beta").await;
    let on_a = Client::connect(cluster.a(), &alpha).await;
    let on_b = Client::connect(cluster.b(), &beta).await;
    let first = send(&on_a, "general", "before").await;
    on_b.wait_for("message.new", |m| m["id"] == first["message"]["id"])
        .await;

    redis.kill();
    eventually("/ready 503 on both", || async {
        ready_status(&cluster, cluster.a()).await == 503
            && ready_status(&cluster, cluster.b()).await == 503
    })
    .await;
    // Sends are still stored and acked, and reach this instance's sockets.
    let during = send(&on_a, "general", "while redis is away").await;
    assert_eq!(during["ok"], true, "{during}");
    on_a.wait_for("message.new", |m| m["id"] == during["message"]["id"])
        .await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(stored, 2);

    redis.restart();
    let returned = Instant::now();
    // Cross-instance delivery resumes without restarting either instance.
    let mut recovered = None;
    while recovered.is_none() {
        assert!(
            returned.elapsed() < WAIT,
            "cross-instance delivery did not resume"
        );
        let ack = send(&on_b, "general", "after").await;
        assert_eq!(ack["ok"], true, "{ack}");
        let id = ack["message"]["id"].clone();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if on_a.events("message.new").iter().any(|m| m["id"] == id) {
            recovered = Some(returned.elapsed());
        }
    }
    println!(
        "cross-instance delivery resumed {:?} after Redis returned",
        recovered.unwrap()
    );

    // B's client missed the message sent while Redis was away; sync by seq fills the gap.
    let sync = on_b
        .ack(
            "messages.sync",
            json!({ "channel": "general", "after_seq": 1, "limit": 1 }),
        )
        .await;
    assert_eq!(sync["messages"][0]["id"], during["message"]["id"]);

    // Presence converges to the live connections again, and the instances are ready.
    eventually("presence rebuilt", || async {
        let ids = cluster
            .online(cluster.a(), &alpha, "?channel=general")
            .await
            .unwrap_or_default();
        ids.contains(&alpha.id) && ids.contains(&beta.id)
    })
    .await;
    assert_eq!(ready_status(&cluster, cluster.a()).await, 200);
    assert_eq!(ready_status(&cluster, cluster.b()).await, 200);
    on_a.disconnect().await;
    on_b.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_refuses_sends_promptly_and_recovers() {
    let proxy = Proxy::to_postgres().await;
    let cluster = Cluster::start_behind_proxy(&proxy, &[]).await;
    let alpha = cluster.guest("alpha").await;
    let beta = cluster.guest("beta").await;
    let sender = Client::connect(cluster.a(), &alpha).await;
    let watcher = Client::connect(cluster.b(), &beta).await;
    assert_eq!(send(&sender, "general", "before").await["ok"], true);

    proxy.cut();
    let started = Instant::now();
    let refused = send(&sender, "general", "during the outage").await;
    let waited = started.elapsed();
    assert_eq!(code(&refused), "unavailable", "{refused}");
    println!("send refused after {waited:?} with Postgres away");
    let (status, body) = cluster.get(cluster.b(), "/api/channels", &beta).await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    assert!(
        !body.to_string().to_lowercase().contains("sql"),
        "no internals in {body}"
    );
    assert_eq!(ready_status(&cluster, cluster.a()).await, 503);
    settle().await;
    assert!(
        !watcher
            .events("message.new")
            .iter()
            .any(|m| m["text"] == "during the outage"),
        "nothing broadcast that was not stored"
    );

    proxy.restore();
    // No manual step: the next sends succeed once the pool reconnects.
    let back = Instant::now();
    loop {
        let ack = send(&sender, "general", "after").await;
        if ack["ok"] == true {
            watcher
                .wait_for("message.new", |m| m["id"] == ack["message"]["id"])
                .await;
            break;
        }
        assert!(back.elapsed() < WAIT, "sends did not recover: {ack}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "sends recovered {:?} after Postgres returned",
        back.elapsed()
    );
    assert_eq!(ready_status(&cluster, cluster.a()).await, 200);
    let texts: Vec<String> = sqlx::query_scalar("SELECT text FROM messages ORDER BY seq")
        .fetch_all(&cluster.db)
        .await
        .unwrap();
    assert_eq!(texts, ["before", "after"]);
    sender.disconnect().await;
    watcher.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_missed_during_a_redis_stall_is_repaired() {
    let redis = PrivateRedis::start();
    let cluster = Cluster::start_on_redis(redis.url(), &[]).await;
    let stays = cluster.guest("stays").await;
    let leaves = cluster.guest("leaves").await;
    let watcher = Client::connect(cluster.b(), &stays).await;
    let leaving = Client::connect(cluster.a(), &leaves).await;
    eventually("both online", || async {
        cluster
            .online(cluster.b(), &stays, "?channel=general")
            .await
            .is_some_and(|ids| ids.contains(&leaves.id))
    })
    .await;

    // Redis stalls (keeping its data) while a user leaves: the decrement cannot be made.
    redis.pause();
    leaving.disconnect().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    redis.resume();

    // Once Redis answers again, the instance repairs its share of presence.
    eventually("the departed user no longer online", || async {
        cluster
            .online(cluster.b(), &stays, "?channel=general")
            .await
            .is_some_and(|ids| !ids.contains(&leaves.id) && ids.contains(&stays.id))
    })
    .await;
    watcher.disconnect().await;
    cluster.finish().await;
}

/// Every message id of `channel` as `messages.sync` returns them to `client`, page by page,
/// checking that seqs have no gap.
async fn synced_ids(client: &Client, channel: &str) -> Vec<String> {
    let (mut ids, mut after) = (Vec::new(), 0);
    loop {
        let page = client
            .ack(
                "messages.sync",
                json!({ "channel": channel, "after_seq": after, "limit": 500 }),
            )
            .await;
        assert_eq!(page["ok"], true, "{page}");
        for m in page["messages"].as_array().expect("messages") {
            assert_eq!(m["seq"], after + 1, "seqs are contiguous");
            after += 1;
            ids.push(m["id"].as_str().expect("id").to_owned());
        }
        if page["has_more"] != true {
            return ids;
        }
    }
}

/// On a Redis Cluster, the master that carries a channel's fan-out dies while both instances
/// keep sending: its replica takes over, delivery across instances resumes by itself, and
/// every acked message is there for every client (live, or through `messages.sync`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_master_failover_under_live_senders_loses_nothing_acked() {
    let redis = PrivateRedisCluster::start();
    let cluster =
        Cluster::start_on_redis_cluster(redis.nodes(), &["--rate-limit-messages", "100000"]).await;
    let alpha = cluster.guest("alpha").await;
    let beta = cluster.guest("beta").await;
    let on_a = Client::connect(cluster.a(), &alpha).await;
    let on_b = Client::connect(cluster.b(), &beta).await;
    let first = send(&on_a, "general", "before").await;
    on_b.wait_for("message.new", |m| m["id"] == first["message"]["id"])
        .await;
    let mut acked = vec![first["message"]["id"].clone()];

    let victim = redis.master_of(&cluster.keys().fanout_last("general"));
    redis.kill(victim);
    let killed = Instant::now();
    // Both instances keep sending through the failover; a send is acked once it is stored.
    let mut round = 0;
    let resumed = loop {
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "cross-instance delivery did not resume after the failover"
        );
        let mut probe = None;
        for (client, name) in [(&on_a, "a"), (&on_b, "b")] {
            let ack = send(client, "general", &format!("{name} {round}")).await;
            if ack["ok"] == true {
                acked.push(ack["message"]["id"].clone());
                if name == "a" {
                    probe = Some(ack["message"]["id"].clone());
                }
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Resumed: a message from A sent after the replica took over reaches B live.
        if let Some(id) = probe {
            if redis.healthy() && on_b.events("message.new").iter().any(|m| m["id"] == id) {
                break killed.elapsed();
            }
        }
    };
    println!("cross-instance delivery resumed {resumed:?} after the master died");

    // From now on every message crosses live, both ways.
    for i in 0..10 {
        for (from, to) in [(&on_a, &on_b), (&on_b, &on_a)] {
            let ack = send(from, "general", &format!("after {i}")).await;
            assert_eq!(ack["ok"], true, "{ack}");
            to.wait_for("message.new", |m| m["id"] == ack["message"]["id"])
                .await;
            acked.push(ack["message"]["id"].clone());
        }
    }

    // Nothing acked is lost: each client has every acked message, the gaps filled by sync.
    for client in [&on_a, &on_b] {
        let ids = synced_ids(client, "general").await;
        for id in &acked {
            assert!(ids.iter().any(|x| x == id), "acked message {id} is missing");
        }
    }
    assert!(acked.len() > 20 + round, "the senders kept being acked");

    // Presence and readiness come back too.
    eventually("presence after the failover", || async {
        let ids = cluster
            .online(cluster.a(), &alpha, "?channel=general")
            .await
            .unwrap_or_default();
        ids.contains(&alpha.id) && ids.contains(&beta.id)
    })
    .await;
    eventually("both instances ready", || async {
        ready_status(&cluster, cluster.a()).await == 200
            && ready_status(&cluster, cluster.b()).await == 200
    })
    .await;
    on_a.disconnect().await;
    on_b.disconnect().await;
    cluster.finish().await;
}
