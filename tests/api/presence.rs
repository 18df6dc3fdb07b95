//! Presence: several tabs, several instances, who is told, and crashed instances.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

fn status_of(events: &[Value], user: &User, status: &str) -> usize {
    events
        .iter()
        .filter(|e| e["userId"] == user.id.as_str() && e["status"] == status)
        .count()
}

async fn online_ids(cluster: &Cluster, on: &Instance, viewer: &User, query: &str) -> Vec<String> {
    cluster
        .online(on, viewer, query)
        .await
        .expect("presence list")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_on_both_instances_are_one_presence() {
    let cluster = Cluster::start(&[]).await;
    let watcher_user = cluster.guest("watcher").await;
    let user = cluster.guest("multitab").await;
    let watcher = Client::connect(cluster.a(), &watcher_user).await;

    let tab1 = Client::connect(cluster.a(), &user).await;
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == user.id.as_str() && e["status"] == "online"
        })
        .await;
    let tab2 = Client::connect(cluster.b(), &user).await;
    settle().await;
    assert_eq!(
        status_of(&watcher.events("user.status"), &user, "online"),
        1,
        "second tab: no second online"
    );
    assert!(online_ids(&cluster, cluster.b(), &watcher_user, "")
        .await
        .contains(&user.id));
    assert!(
        online_ids(&cluster, cluster.a(), &watcher_user, "?channel=general")
            .await
            .contains(&user.id)
    );

    // A newly started instance does not wipe anybody's presence.
    let third = cluster.instance().await;
    assert!(online_ids(&cluster, &third, &watcher_user, "")
        .await
        .contains(&user.id));
    third.stop().await;
    assert!(online_ids(&cluster, cluster.a(), &watcher_user, "")
        .await
        .contains(&user.id));

    tab1.disconnect().await;
    settle().await;
    assert_eq!(
        status_of(&watcher.events("user.status"), &user, "offline"),
        0,
        "one tab left: still online"
    );
    tab2.disconnect().await;
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == user.id.as_str() && e["status"] == "offline"
        })
        .await;
    assert!(!online_ids(&cluster, cluster.a(), &watcher_user, "")
        .await
        .contains(&user.id));
    watcher.disconnect().await;
    cluster.finish().await;
}

/// A user on instance a whose socket moved from `general` to a new channel, `quiet`.
async fn in_a_channel_of_its_own(cluster: &Cluster) -> Client {
    let user = cluster.guest("elsewhere").await;
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &user,
            json!({ "name": "quiet" }),
        )
        .await;
    assert_eq!(status, 201);
    let client = Client::connect(cluster.a(), &user).await;
    assert_eq!(client.ack("channel.join", "quiet".into()).await["ok"], true);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_goes_only_to_the_users_channels() {
    let cluster = Cluster::start(&[]).await;
    let elsewhere = in_a_channel_of_its_own(&cluster).await;
    let general_user = cluster.guest("ingeneral").await;
    let in_general = Client::connect(cluster.b(), &general_user).await;

    let newcomer = cluster.guest("newcomer").await;
    let client = Client::connect(cluster.b(), &newcomer).await;
    in_general
        .wait_for("user.status", |e| e["userId"] == newcomer.id.as_str())
        .await;
    settle().await;
    assert_eq!(
        status_of(&elsewhere.events("user.status"), &newcomer, "online"),
        0
    );
    for c in [client, elsewhere, in_general] {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowded_channels_get_counts_not_statuses() {
    let cluster = Cluster::start(&["--presence-fanout-max", "1"]).await;
    let watcher_user = cluster.guest("watcher").await;
    let watcher = Client::connect(cluster.a(), &watcher_user).await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let user = cluster.guest(&format!("crowd{i}")).await;
        let on = if i % 2 == 0 { cluster.a() } else { cluster.b() };
        clients.push(Client::connect(on, &user).await);
    }
    watcher
        .wait_for("channel.presence", |e| {
            e["channel"] == "general" && e["online"] == 7
        })
        .await;
    // Only the watcher's own arrival (when general had one user) was announced.
    let about_others: Vec<Value> = watcher
        .events("user.status")
        .into_iter()
        .filter(|e| e["userId"] != watcher_user.id.as_str())
        .collect();
    assert!(about_others.is_empty(), "{about_others:?}");
    let times: Vec<_> = watcher
        .timed_events("channel.presence")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    for pair in times.windows(2) {
        assert!(
            pair[1].duration_since(pair[0]) >= Duration::from_millis(800),
            "channel.presence at most about once per second"
        );
    }
    for c in clients.into_iter().chain([watcher]) {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_crashed_instance_go_offline() {
    let mut cluster = Cluster::start(&[]).await;
    let watcher_user = cluster.guest("survivor").await;
    let watcher = Client::connect(cluster.b(), &watcher_user).await;
    let victim = cluster.guest("victim").await;
    let doomed = Client::connect(cluster.a(), &victim).await;
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == victim.id.as_str() && e["status"] == "online"
        })
        .await;
    assert!(
        online_ids(&cluster, cluster.b(), &watcher_user, "?channel=general")
            .await
            .contains(&victim.id)
    );

    cluster.a.take().unwrap().crash().await;
    // Heartbeat period 1 s: reaped within 3 periods plus one reaper period.
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == victim.id.as_str() && e["status"] == "offline"
        })
        .await;
    assert!(!online_ids(&cluster, cluster.b(), &watcher_user, "")
        .await
        .contains(&victim.id));
    assert!(
        !online_ids(&cluster, cluster.b(), &watcher_user, "?channel=general")
            .await
            .contains(&victim.id)
    );
    drop(doomed);
    watcher.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_scope_tells_everyone() {
    let cluster = Cluster::start(&["--presence-scope", "global"]).await;
    let elsewhere = in_a_channel_of_its_own(&cluster).await;
    let newcomer = cluster.guest("newcomer").await;
    let client = Client::connect(cluster.b(), &newcomer).await;
    elsewhere
        .wait_for("user.status", |e| {
            e["userId"] == newcomer.id.as_str() && e["status"] == "online"
        })
        .await;
    client.disconnect().await;
    elsewhere
        .wait_for("user.status", |e| {
            e["userId"] == newcomer.id.as_str() && e["status"] == "offline"
        })
        .await;
    elsewhere.disconnect().await;
    cluster.finish().await;
}

/// A reload (a tab closes and opens again) and a clean failover announce nothing; a user who
/// stays away is announced offline after the grace period; a client that looks meanwhile sees
/// the user online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_status_flicker_on_reload_or_clean_failover() {
    let mut cluster = Cluster::start(&["--presence-offline-grace-secs", "3"]).await;
    let watcher_user = cluster.guest("watcher").await;
    let watcher = Client::connect(cluster.b(), &watcher_user).await;
    let reloader = cluster.guest("reloader").await;
    let tab = Client::connect(cluster.a(), &reloader).await;
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == reloader.id.as_str() && e["status"] == "online"
        })
        .await;

    // A reload: the tab goes, and comes back on the other instance a moment later.
    tab.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let online = cluster
        .online(cluster.b(), &watcher_user, "")
        .await
        .unwrap();
    assert!(
        online.contains(&reloader.id),
        "online during the gap: {online:?}"
    );
    let tab = Client::connect(cluster.b(), &reloader).await;

    // A clean shutdown of an instance the user is on, and a reconnect to the other one.
    let tab_a = Client::connect(cluster.a(), &reloader).await;
    tab.disconnect().await;
    cluster.a.take().unwrap().stop().await;
    drop(tab_a);
    let tab = Client::connect(cluster.b(), &reloader).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let statuses: Vec<Value> = watcher
        .events("user.status")
        .into_iter()
        .filter(|e| e["userId"] == reloader.id.as_str())
        .collect();
    assert_eq!(statuses.len(), 1, "only the first online: {statuses:?}");

    // Gone for good: offline after the grace period, once.
    let left = std::time::Instant::now();
    tab.disconnect().await;
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == reloader.id.as_str() && e["status"] == "offline"
        })
        .await;
    let waited = left.elapsed();
    println!("offline announced {waited:?} after the last socket closed");
    assert!(waited >= Duration::from_millis(2500), "{waited:?}");
    settle().await;
    assert_eq!(
        status_of(&watcher.events("user.status"), &reloader, "offline"),
        1
    );
    let online = cluster
        .online(cluster.b(), &watcher_user, "")
        .await
        .unwrap();
    assert!(!online.contains(&reloader.id));
    watcher.disconnect().await;
    cluster.finish().await;
}
