//! Sending, idempotency, ordering, history and sync, private channels.

use std::collections::HashSet;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_reaches_both_instances_after_it_is_stored() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let sender = Client::connect(cluster.a(), &alice).await;
    let receiver = Client::connect(cluster.b(), &bob).await;

    let cmid = Uuid::new_v4();
    let ack = sender
        .ack(
            "message.send",
            json!({ "channel": "general", "text": "  hi there  ", "client_message_id": cmid }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["duplicate"], false);
    // The row is committed by the time the ack arrives.
    let stored: (String, i64) =
        sqlx::query_as("SELECT text, seq FROM messages WHERE client_message_id = $1")
            .bind(cmid)
            .fetch_one(&cluster.db)
            .await
            .expect("row present at ack time");
    assert_eq!(stored, ("hi there".to_owned(), 1));

    for client in [&sender, &receiver] {
        let m = client
            .wait_for("message.new", |m| m["client_message_id"] == json!(cmid))
            .await;
        assert_eq!(m["channel"], "general");
        assert_eq!(m["seq"], 1);
        assert_eq!(m["text"], "hi there");
        assert_eq!(m["sender"], "alice");
        assert_eq!(m["sender_id"], alice.id.as_str());
        assert_eq!(m["id"], ack["message"]["id"]);
    }
    sender.disconnect().await;
    receiver.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_predecessor_never_comes_is_released() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let sender = Client::connect(cluster.a(), &alice).await;
    let receiver = Client::connect(cluster.b(), &bob).await;
    assert_eq!(send(&sender, "general", "one").await["ok"], true);
    receiver.wait_for("message.new", |m| m["seq"] == 1).await;
    // Stage an instance that died between commit and publish: the fan-out last saw seq 0,
    // so seq 2 waits for a seq 1 that will never be published again.
    cluster
        .redis_set(&cluster.keys().fanout_last("general"), "0")
        .await;
    let ack = send(&sender, "general", "two").await;
    assert_eq!(ack["ok"], true, "{ack}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !receiver.events("message.new").iter().any(|m| m["seq"] == 2),
        "seq 2 is parked behind its missing predecessor"
    );
    // Released after about a second, on every instance.
    for client in [&receiver, &sender] {
        let m = client.wait_for("message.new", |m| m["seq"] == 2).await;
        assert_eq!(m["text"], "two");
    }
    sender.disconnect().await;
    receiver.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sends_commits_and_deliveries() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let carol = cluster.guest("carol").await;
    let a1 = Client::connect(cluster.a(), &alice).await;
    let a2 = Client::connect(cluster.a(), &bob).await;
    let b1 = Client::connect(cluster.b(), &carol).await;
    for n in 0..3 {
        assert_eq!(send(&a1, "general", &format!("m{n}")).await["ok"], true);
    }
    for client in [&a1, &a2, &b1] {
        client.wait_for("message.new", |m| m["seq"] == 3).await;
    }
    // Each instance counts its own: the sends (one at a time, so one transaction each) were
    // handled by a; each message went to two sockets on a and one on b.
    let (a, b) = (cluster.a(), cluster.b());
    let sends = r#"banter_events_in_total{event="message.send",outcome="ok"}"#;
    assert_eq!(cluster.metric(a, sends).await, 3.0);
    assert_eq!(cluster.metric(a, "banter_commit_batch_size_sum").await, 3.0);
    assert_eq!(
        cluster.metric(a, "banter_commit_batch_size_count").await,
        3.0
    );
    assert_eq!(
        cluster.metric(a, "banter_send_ack_seconds_count").await,
        3.0
    );
    assert_eq!(
        cluster.metric(a, "banter_message_deliveries_total").await,
        6.0
    );
    assert_eq!(
        cluster.metric(b, "banter_message_deliveries_total").await,
        3.0
    );
    assert_eq!(
        cluster.metric(b, "banter_commit_batch_size_count").await,
        0.0
    );
    assert_eq!(cluster.metric(a, "banter_sockets").await, 2.0);
    assert_eq!(cluster.metric(b, "banter_sockets").await, 1.0);
    for client in [a1, a2, b1] {
        client.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_store_and_broadcast_once() {
    // Fifty tabs of one user: more than the default socket cap.
    let cluster = Cluster::start(&[
        "--rate-limit-messages",
        "1000",
        "--max-sockets-per-user",
        "100",
    ])
    .await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let mut tabs = Vec::new();
    for i in 0..50 {
        let on = if i % 2 == 0 { cluster.a() } else { cluster.b() };
        tabs.push(Client::connect(on, &alice).await);
    }
    let watchers = [
        Client::connect(cluster.a(), &bob).await,
        Client::connect(cluster.b(), &bob).await,
    ];

    let cmid = Uuid::new_v4();
    let payload = json!({ "channel": "general", "text": "once", "client_message_id": cmid });
    let acks: Vec<Value> =
        futures_util::future::join_all(tabs.iter().map(|t| t.ack("message.send", payload.clone())))
            .await;
    let ids: HashSet<String> = acks
        .iter()
        .map(|a| {
            assert_eq!(a["ok"], true, "{a}");
            a["message"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every ack carries the same message");
    assert_eq!(acks.iter().filter(|a| a["duplicate"] == false).count(), 1);

    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE client_message_id = $1")
            .bind(cmid)
            .fetch_one(&cluster.db)
            .await
            .unwrap();
    assert_eq!(rows, 1);
    let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM channels WHERE name = 'general'")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(last_seq, 1, "duplicates consume no seq");

    settle().await;
    for receiver in tabs.iter().chain(watchers.iter()) {
        let copies = receiver
            .events("message.new")
            .iter()
            .filter(|m| m["client_message_id"] == json!(cmid))
            .count();
        assert_eq!(copies, 1, "exactly one message.new per socket");
    }
    for c in tabs.into_iter().chain(watchers) {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_get_gap_free_seqs() {
    let cluster = Cluster::start(&["--rate-limit-messages", "1000"]).await;
    let mut senders = Vec::new();
    for i in 0..4 {
        let user = cluster.guest(&format!("sender{i}")).await;
        let on = if i % 2 == 0 { cluster.a() } else { cluster.b() };
        senders.push(Client::connect(on, &user).await);
    }
    let watcher_user = cluster.guest("watcher").await;
    let watcher = Client::connect(cluster.b(), &watcher_user).await;

    futures_util::future::join_all(senders.iter().enumerate().map(|(i, s)| async move {
        for n in 0..100 {
            let ack = send(s, "general", &format!("{i}-{n}")).await;
            assert_eq!(ack["ok"], true, "{ack}");
        }
    }))
    .await;

    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT m.seq FROM messages m JOIN channels c ON c.id = m.channel_id
         WHERE c.name = 'general' ORDER BY m.seq",
    )
    .fetch_all(&cluster.db)
    .await
    .unwrap();
    assert_eq!(seqs, (1..=400).collect::<Vec<i64>>());

    watcher.wait_for("message.new", |m| m["seq"] == 400).await;
    settle().await;
    let seen: Vec<i64> = watcher
        .events("message.new")
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seen,
        (1..=400).collect::<Vec<i64>>(),
        "each message delivered once, in seq order"
    );
    for c in senders.into_iter().chain([watcher]) {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_and_sync_meet_exactly() {
    let cluster = Cluster::start(&["--rate-limit-messages", "1000"]).await;
    let user = cluster.guest("writer").await;
    let client = Client::connect(cluster.a(), &user).await;
    for n in 1..=120 {
        assert_eq!(send(&client, "general", &format!("m{n}")).await["ok"], true);
    }

    // Backwards from the newest page.
    let mut backwards = Vec::new();
    let (status, page) = cluster
        .get(
            cluster.b(),
            "/api/channels/general/messages?limit=50",
            &user,
        )
        .await;
    assert_eq!(status, 200);
    let mut page = page.as_array().unwrap().clone();
    while !page.is_empty() {
        let oldest = page[0]["seq"].as_i64().unwrap();
        let mut seqs: Vec<i64> = page.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        seqs.append(&mut backwards);
        backwards = seqs;
        let (_, next) = cluster
            .get(
                cluster.b(),
                &format!("/api/channels/general/messages?before={oldest}&limit=50"),
                &user,
            )
            .await;
        page = next.as_array().unwrap().clone();
    }
    assert_eq!(backwards, (1..=120).collect::<Vec<i64>>());

    // Forwards from the start.
    let mut forwards = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = cluster
            .get(
                cluster.a(),
                &format!("/api/channels/general/messages?after={after}&limit=33"),
                &user,
            )
            .await;
        let page = page.as_array().unwrap();
        if page.is_empty() {
            break;
        }
        forwards.extend(page.iter().map(|m| m["seq"].as_i64().unwrap()));
        after = *forwards.last().unwrap();
    }
    assert_eq!(forwards, backwards);
    let (_, latest) = cluster
        .get(cluster.a(), "/api/channels/general/messages?limit=3", &user)
        .await;
    let texts: Vec<&str> = latest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["m118", "m119", "m120"], "newest page, oldest first");

    // Sync after a seq returns exactly what came later.
    let ack = client
        .ack(
            "messages.sync",
            json!({ "channel": "general", "after_seq": 100 }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let seqs: Vec<i64> = ack["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (101..=120).collect::<Vec<i64>>());
    assert_eq!(ack["has_more"], false);
    let ack = client
        .ack(
            "messages.sync",
            json!({ "channel": "general", "after_seq": 10, "limit": 5 }),
        )
        .await;
    let seqs: Vec<i64> = ack["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        (seqs, ack["has_more"].clone()),
        ((11..=15).collect::<Vec<i64>>(), json!(true))
    );
    client.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_channel_needs_password_then_membership() {
    let cluster = Cluster::start(&[]).await;
    let owner = cluster.register(cluster.a(), "owner").await;
    let guest = cluster.register(cluster.a(), "visitor").await;
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &owner,
            json!({ "name": "Secret", "password": "open-sesame" }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["private"].as_bool()),
        (Some("secret"), Some(true))
    );

    let visitor = Client::connect(cluster.b(), &guest).await;
    let ack = visitor
        .ack("channel.join", json!({ "channel": "secret" }))
        .await;
    assert_eq!(code(&ack), "forbidden");
    let ack = visitor
        .ack(
            "channel.join",
            json!({ "channel": "secret", "password": "wrong-pass" }),
        )
        .await;
    assert_eq!(code(&ack), "forbidden");
    let (status, _) = cluster
        .get(cluster.b(), "/api/channels/secret/messages", &guest)
        .await;
    assert_eq!(status, 403);

    let ack = visitor
        .ack(
            "channel.join",
            json!({ "channel": "secret", "password": "open-sesame" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["channel"]["name"], "secret");
    visitor.wait_for("channel.joined", |v| v == "secret").await;
    // One active channel per socket: it left general.
    assert_eq!(
        code(&send(&visitor, "general", "x").await),
        "not_in_channel"
    );
    assert_eq!(send(&visitor, "secret", "inside").await["ok"], true);
    visitor.disconnect().await;

    // Membership stays: later joins need no password.
    let again = Client::connect(cluster.a(), &guest).await;
    let ack = again.ack("channel.join", "secret".into()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, history) = cluster
        .get(cluster.a(), "/api/channels/secret/messages", &guest)
        .await;
    assert_eq!(status, 200);
    assert_eq!(history[0]["text"], "inside");
    again.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_words_are_masked_before_storing() {
    let list = std::env::temp_dir().join(format!("banter-words-{}.txt", Uuid::new_v4()));
    std::fs::write(&list, "darn\nheck it\n").unwrap();
    let cluster = Cluster::start(&["--word-filter-file", list.to_str().unwrap()]).await;
    let user = cluster.guest("potty").await;
    let client = Client::connect(cluster.a(), &user).await;
    let ack = send(&client, "general", "Darn, HECK IT, darning").await;
    assert_eq!(ack["message"]["text"], "****, *******, darning");
    let stored: String = sqlx::query_scalar("SELECT text FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(stored, "****, *******, darning");
    client.disconnect().await;
    cluster.finish().await;
    std::fs::remove_file(list).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_the_channel_only_and_is_throttled() {
    let cluster = Cluster::start(&[]).await;
    let typist = cluster.guest("typist").await;
    let reader = cluster.guest("reader").await;
    let outsider = cluster.guest("outsider").await;
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &outsider,
            json!({ "name": "side" }),
        )
        .await;
    assert_eq!(status, 201);
    let t = Client::connect(cluster.a(), &typist).await;
    let r = Client::connect(cluster.b(), &reader).await;
    let o = Client::connect(cluster.b(), &outsider).await;
    assert_eq!(o.ack("channel.join", "side".into()).await["ok"], true);

    let ack = t
        .ack(
            "user.typing",
            json!({ "channel": "general", "isTyping": true }),
        )
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    let ack = t
        .ack(
            "user.typing",
            json!({ "channel": "general", "isTyping": true }),
        )
        .await;
    assert_eq!(ack["throttled"], true, "a second one at once is throttled");
    let seen = r.wait_for("user.typing", |e| e["isTyping"] == true).await;
    assert_eq!(seen["userId"], typist.id.as_str());
    assert_eq!(seen["username"], "typist");
    assert_eq!(seen["channel"], "general");
    let ack = t
        .ack(
            "user.typing",
            json!({ "channel": "general", "isTyping": false }),
        )
        .await;
    assert_eq!(ack["ok"], true);
    r.wait_for("user.typing", |e| e["isTyping"] == false).await;
    settle().await;
    assert_eq!(r.events("user.typing").len(), 2);
    assert!(t.events("user.typing").is_empty(), "the sender is excluded");
    assert!(
        o.events("user.typing").is_empty(),
        "other channels hear nothing"
    );
    for c in [t, r, o] {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_history_without_a_limit_has_history_default_limit_messages() {
    let cluster = Cluster::start(&["--history-default-limit", "3"]).await;
    let ann = cluster.guest("ann").await;
    let client = Client::connect(cluster.a(), &ann).await;
    for i in 1..=5 {
        assert_eq!(send(&client, "general", &format!("m{i}")).await["ok"], true);
    }
    let (status, page) = cluster
        .get(cluster.b(), "/api/channels/general/messages", &ann)
        .await;
    assert_eq!(status, 200, "{page}");
    let texts: Vec<&str> = page
        .as_array()
        .expect("a page")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["m3", "m4", "m5"]);
    // An explicit limit still wins.
    let (_, page) = cluster
        .get(cluster.b(), "/api/channels/general/messages?limit=5", &ann)
        .await;
    assert_eq!(page.as_array().map(Vec::len), Some(5));
    client.disconnect().await;
    cluster.finish().await;
}
