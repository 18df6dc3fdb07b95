//! Changes to stored messages: edits, deletes (tombstones), reactions and replies, across two
//! instances, and the change cursor that lets an offline client converge.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// Sends a message and returns the stored message.
/// Twenty-four different emoji.
const EMOJI: [&str; 24] = [
    "👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀", "✅", "🔥", "💯", "🚀", "👏", "🤔", "😎", "🙌",
    "🍕", "🌈", "⭐", "🎈", "🐱", "🐶", "🍀", "👍🏽",
];

async fn sent(client: &Client, channel: &str, text: &str) -> Value {
    let ack = send(client, channel, text).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack["message"].clone()
}

/// History of a channel as `user` reads it, with the `X-Last-Change` header.
async fn history(cluster: &Cluster, user: &User, channel: &str) -> (Vec<Value>, i64) {
    let resp = cluster
        .http
        .get(format!(
            "{}/api/channels/{channel}/messages",
            cluster.b().url()
        ))
        .header("cookie", user.cookie())
        .send()
        .await
        .expect("history");
    assert_eq!(resp.status(), 200);
    let last_change = resp
        .headers()
        .get("x-last-change")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("X-Last-Change");
    let body: Value = resp.json().await.expect("json");
    (body.as_array().cloned().unwrap_or_default(), last_change)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_deletes_reach_both_instances_and_history_shows_the_current_state() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let first = sent(&a, "general", "helo").await;
    let second = sent(&a, "general", "second").await;
    let id = first["id"].clone();

    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": id, "text": " hello "}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["text"], "hello");
    assert_eq!(ack["message"]["seq"], first["seq"]);
    assert!(ack["message"]["edited_at"].is_string(), "{ack}");
    assert_eq!(ack["message"]["change"], 1);
    for client in [&a, &b] {
        let u = client.wait_for("message.updated", |u| u["id"] == id).await;
        assert_eq!(u["text"], "hello");
        assert_eq!(u["change"], 1);
        assert_eq!(u["channel"], "general");
        assert_eq!(u["seq"], first["seq"]);
    }

    // Only the sender edits; nobody but the sender (or a moderator) deletes.
    let ack = b
        .ack(
            "message.edit",
            json!({"channel": "general", "id": id, "text": "mine now"}),
        )
        .await;
    assert_eq!(code(&ack), "forbidden");
    let ack = b
        .ack("message.delete", json!({"channel": "general", "id": id}))
        .await;
    assert_eq!(code(&ack), "forbidden");
    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": Uuid::new_v4(), "text": "x"}),
        )
        .await;
    assert_eq!(code(&ack), "not_found");
    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": id, "text": "   "}),
        )
        .await;
    assert_eq!(code(&ack), "invalid_payload");

    let ack = a
        .ack("message.delete", json!({"channel": "general", "id": id}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["deleted"], true);
    assert_eq!(ack["message"]["text"], "");
    for client in [&a, &b] {
        let d = client.wait_for("message.deleted", |d| d["id"] == id).await;
        assert_eq!(d["change"], 2);
        assert_eq!(d["seq"], first["seq"]);
    }
    // A tombstone can be neither edited nor reacted to; deleting it again changes nothing.
    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": id, "text": "back"}),
        )
        .await;
    assert_eq!(code(&ack), "not_found");
    let ack = a
        .ack(
            "reaction.add",
            json!({"channel": "general", "id": id, "emoji": "👍"}),
        )
        .await;
    assert_eq!(code(&ack), "not_found");
    let ack = a
        .ack("message.delete", json!({"channel": "general", "id": id}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    settle().await;
    assert_eq!(b.events("message.deleted").len(), 1, "no second delete");

    // History keeps the seq (no hole) and shows the tombstone.
    let (messages, last_change) = history(&cluster, &bob, "general").await;
    assert_eq!(last_change, 2);
    let seqs: Vec<i64> = messages.iter().filter_map(|m| m["seq"].as_i64()).collect();
    assert_eq!(seqs, vec![1, 2]);
    assert_eq!(messages[0]["deleted"], true);
    assert_eq!(messages[0]["text"], "");
    assert_eq!(messages[1]["text"], second["text"]);
    assert!(messages[1].get("deleted").is_none());
    a.disconnect().await;
    b.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_was_offline_syncs_the_edits_and_deletes_it_missed() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let one = sent(&a, "general", "one").await;
    let two = sent(&a, "general", "two").await;
    let three = sent(&a, "general", "three").await;
    // Bob saw seqs 1..=3 and change 0, then went away.
    let b = Client::connect(cluster.b(), &bob).await;
    let ack = b
        .ack(
            "messages.sync",
            json!({"channel": "general", "after_seq": 0, "after_change": 0}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["messages"].as_array().map(Vec::len), Some(3));
    assert_eq!(ack["last_change"], 0);
    b.disconnect().await;

    let edit = |id: &Value, text: &str| json!({"channel": "general", "id": id, "text": text});
    assert_eq!(
        a.ack("message.edit", edit(&one["id"], "one!")).await["ok"],
        true
    );
    assert_eq!(
        a.ack(
            "message.delete",
            json!({"channel": "general", "id": two["id"]})
        )
        .await["ok"],
        true
    );
    assert_eq!(
        a.ack("message.edit", edit(&one["id"], "one!!")).await["ok"],
        true
    );
    let r = a
        .ack(
            "reaction.add",
            json!({"channel": "general", "id": three["id"], "emoji": "🎉"}),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let four = sent(&a, "general", "four").await;
    assert_eq!(
        a.ack("message.edit", edit(&four["id"], "four!")).await["ok"],
        true
    );

    let b = Client::connect(cluster.b(), &bob).await;
    let sync = |after_change: i64, limit: i64| json!({"channel": "general", "after_seq": 3, "after_change": after_change, "limit": limit});
    let ack = b.ack("messages.sync", sync(0, 100)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    // The new message, as it is now.
    let new: Vec<&Value> = ack["messages"].as_array().unwrap().iter().collect();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["text"], "four!");
    // Each changed message once, in its current state, by its last change.
    let changes = ack["changes"].as_array().unwrap();
    let seen: Vec<(i64, i64)> = changes
        .iter()
        .map(|m| (m["seq"].as_i64().unwrap(), m["change"].as_i64().unwrap()))
        .collect();
    assert_eq!(seen, vec![(2, 2), (1, 3), (3, 4)], "{ack}");
    assert_eq!(changes[0]["deleted"], true);
    assert_eq!(changes[1]["text"], "one!!");
    assert_eq!(
        changes[2]["reactions"],
        json!([{"emoji": "🎉", "count": 1}])
    );
    assert_eq!(ack["changes_has_more"], false);
    assert_eq!(ack["last_change"], 5);

    // Paged: the cursor stops at the last change given.
    let ack = b.ack("messages.sync", sync(0, 2)).await;
    assert_eq!(ack["changes"].as_array().map(Vec::len), Some(2));
    assert_eq!(ack["changes_has_more"], true);
    assert_eq!(ack["last_change"], 3);
    let ack = b.ack("messages.sync", sync(3, 2)).await;
    let seqs: Vec<i64> = ack["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["seq"].as_i64())
        .collect();
    assert_eq!(seqs, vec![3]);
    assert_eq!(ack["changes_has_more"], false);
    assert_eq!(ack["last_change"], 5);
    // Up to date: nothing more.
    let ack = b.ack("messages.sync", sync(5, 100)).await;
    assert_eq!(ack["changes"], json!([]));
    assert_eq!(ack["last_change"], 5);
    let bad = b
        .ack(
            "messages.sync",
            json!({"channel": "general", "after_seq": 0, "after_change": -1}),
        )
        .await;
    assert_eq!(code(&bad), "invalid_payload");
    a.disconnect().await;
    b.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_one_per_user_and_emoji_and_bounded_per_message() {
    let cluster = Cluster::start(&["--rate-limit-messages", "1000"]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let m = sent(&a, "general", "react to me").await;
    let react = |event: &'static str, emoji: &str| {
        (
            event,
            json!({"channel": "general", "id": m["id"], "emoji": emoji}),
        )
    };

    let (e, p) = react("reaction.add", "👍");
    let ack = a.ack(e, p.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["message"]["reactions"],
        json!([{"emoji": "👍", "count": 1, "me": true}])
    );
    // Twice is once.
    let again = a.ack(e, p).await;
    assert_eq!(again["message"]["reactions"][0]["count"], 1);
    let (e, p) = react("reaction.add", " 👍 ");
    let ack = b.ack(e, p).await;
    assert_eq!(
        ack["message"]["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}])
    );
    for client in [&a, &b] {
        let r = client
            .wait_for("message.reactions", |r| r["reactions"][0]["count"] == 2)
            .await;
        assert_eq!(r["user_id"], bob.id.as_str());
        assert_eq!(r["emoji"], "👍");
        assert_eq!(r["added"], true);
        assert!(r["reactions"][0].get("me").is_none(), "{r}");
    }
    settle().await;
    let changes: Vec<i64> = a
        .events("message.reactions")
        .iter()
        .filter_map(|r| r["change"].as_i64())
        .collect();
    assert_eq!(changes, vec![1, 2], "the repeat changed nothing");

    // History marks the reader's own.
    let (messages, _) = history(&cluster, &alice, "general").await;
    assert_eq!(
        messages[0]["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}])
    );
    let (e, p) = react("reaction.remove", "👍");
    let ack = a.ack(e, p).await;
    assert_eq!(
        ack["message"]["reactions"],
        json!([{"emoji": "👍", "count": 1}])
    );
    b.wait_for("message.reactions", |r| r["added"] == false)
        .await;

    // At most 20 distinct emoji on one message; one already there can still be given.
    // (👍 is on it already: nineteen more.)
    for e in &EMOJI[5..24] {
        let (e, p) = react("reaction.add", e);
        assert_eq!(a.ack(e, p).await["ok"], true);
    }
    let (e, p) = react("reaction.add", "🆕");
    assert_eq!(code(&b.ack(e, p).await), "conflict");
    let (e, p) = react("reaction.add", EMOJI[6]);
    assert_eq!(b.ack(e, p).await["ok"], true);

    // Only emoji: no letters or mentions, nothing invisible or that turns text around.
    for bad in [
        json!(""),
        json!("a b"),
        json!("x".repeat(33)),
        json!(7),
        json!("a"),
        json!("@everyone"),
        json!("\u{200B}"),
        json!("\u{202E}"),
        json!("\u{FEFF}"),
        json!("👍\u{202E}"),
        json!("👍👍"),
    ] {
        let ack = a
            .ack(
                "reaction.add",
                json!({"channel": "general", "id": m["id"], "emoji": bad}),
            )
            .await;
        assert_eq!(ack["ok"], false, "{bad}: {ack}");
        assert!(
            ["invalid_payload", "too_long"].contains(&code(&ack)),
            "{ack}"
        );
    }
    a.disconnect().await;
    b.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_quotes_its_message_as_it_now_is() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let question = sent(&a, "general", &format!("why {}", "?".repeat(300))).await;
    let ack = b
        .ack(
            "message.send",
            json!({"channel": "general", "text": "because", "client_message_id": Uuid::new_v4(),
                   "reply_to": question["id"]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let quote = &ack["message"]["reply_to"];
    assert_eq!(quote["id"], question["id"]);
    assert_eq!(quote["seq"], question["seq"]);
    assert_eq!(quote["sender"], "alice");
    let text = quote["text"].as_str().unwrap();
    assert_eq!(text.chars().count(), 201, "200 chars and an ellipsis");
    let new = a.wait_for("message.new", |m| m["text"] == "because").await;
    assert_eq!(new["reply_to"], *quote);

    // Only a message of the same channel.
    assert_eq!(
        cluster
            .post(
                cluster.a(),
                "/api/channels",
                &alice,
                json!({"name": "other"})
            )
            .await
            .0,
        201
    );
    let ack = a.ack("channel.join", json!("other")).await;
    assert_eq!(ack["ok"], true);
    let ack = a
        .ack(
            "message.send",
            json!({"channel": "other", "text": "x", "client_message_id": Uuid::new_v4(),
                   "reply_to": question["id"]}),
        )
        .await;
    assert_eq!(code(&ack), "invalid_payload");
    assert_eq!(ack["error"]["errors"][0]["field"], "reply_to", "{ack}");
    assert_eq!(a.ack("channel.join", json!("general")).await["ok"], true);

    // The quote follows its message: edited, then deleted.
    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": question["id"], "text": "why not"}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let (messages, _) = history(&cluster, &bob, "general").await;
    assert_eq!(messages[1]["reply_to"]["text"], "why not");
    let ack = a
        .ack(
            "message.delete",
            json!({"channel": "general", "id": question["id"]}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    let (messages, _) = history(&cluster, &bob, "general").await;
    let quote = &messages[1]["reply_to"];
    assert_eq!(quote["deleted"], true);
    assert!(quote.get("text").is_none(), "{quote}");
    // A deleted message cannot be answered.
    let ack = b
        .ack(
            "message.send",
            json!({"channel": "general", "text": "late", "client_message_id": Uuid::new_v4(),
                   "reply_to": question["id"]}),
        )
        .await;
    assert_eq!(code(&ack), "invalid_payload");
    a.disconnect().await;
    b.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_administrators_delete_others_messages_and_the_log_records_it() {
    let cluster = Cluster::start(&["--admin-users", "ann"]).await;
    let owner = cluster.guest("owner").await;
    let bob = cluster.guest("bob").await;
    let carol = cluster.guest("carol").await;
    let ann = cluster.register(cluster.a(), "ann").await;
    assert_eq!(
        cluster
            .post(
                cluster.a(),
                "/api/channels",
                &owner,
                json!({"name": "club"})
            )
            .await
            .0,
        201
    );
    let o = Client::connect(cluster.a(), &owner).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let c = Client::connect(cluster.b(), &carol).await;
    let admin = Client::connect(cluster.a(), &ann).await;
    for client in [&o, &b, &c, &admin] {
        assert_eq!(client.ack("channel.join", json!("club")).await["ok"], true);
    }
    // The channel names its owner.
    let (_, list) = cluster.get(cluster.b(), "/api/channels", &carol).await;
    let club = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "club"))
        .cloned()
        .expect("club listed");
    assert_eq!(club["created_by"], owner.id.as_str());
    let first = sent(&b, "club", "spam").await;
    let second = sent(&b, "club", "more spam").await;
    // Another member may not.
    let ack = c
        .ack(
            "message.delete",
            json!({"channel": "club", "id": first["id"]}),
        )
        .await;
    assert_eq!(code(&ack), "forbidden");
    // The owner may, and so may an administrator.
    let ack = o
        .ack(
            "message.delete",
            json!({"channel": "club", "id": first["id"]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = admin
        .ack(
            "message.delete",
            json!({"channel": "club", "id": second["id"]}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    b.wait_for("message.deleted", |d| d["id"] == second["id"])
        .await;
    // The owner may not edit it, though.
    let third = sent(&b, "club", "fine").await;
    let ack = o
        .ack(
            "message.edit",
            json!({"channel": "club", "id": third["id"], "text": "changed"}),
        )
        .await;
    assert_eq!(code(&ack), "forbidden");

    let log: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
        "SELECT action, actor_name, target_username, message_seq FROM moderation_log ORDER BY id",
    )
    .fetch_all(&cluster.db)
    .await
    .expect("log");
    assert_eq!(
        log,
        vec![
            (
                "message.delete".into(),
                "owner".into(),
                Some("bob".into()),
                1
            ),
            ("message.delete".into(), "ann".into(), Some("bob".into()), 2),
        ]
    );
    for client in [o, b, c, admin] {
        client.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_from_two_instances_arrive_in_change_order_without_gaps() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let carol = cluster.guest("carol").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let watcher = Client::connect(cluster.b(), &carol).await;
    let m = sent(&a, "general", "count on me").await;
    async fn react_ten(client: &Client, id: &Value, emoji: &[&str]) {
        for e in emoji {
            let ack = client
                .ack(
                    "reaction.add",
                    json!({"channel": "general", "id": id, "emoji": e}),
                )
                .await;
            assert_eq!(ack["ok"], true, "{ack}");
        }
    }
    tokio::join!(
        react_ten(&a, &m["id"], &EMOJI[..10]),
        react_ten(&b, &m["id"], &EMOJI[10..20])
    );
    let got = watcher.wait_for_count("message.reactions", 20).await;
    let changes: Vec<i64> = got.iter().filter_map(|r| r["change"].as_i64()).collect();
    assert_eq!(changes, (1..=20).collect::<Vec<_>>());
    assert_eq!(
        got.last().unwrap()["reactions"].as_array().map(Vec::len),
        Some(20)
    );
    for client in [a, b, watcher] {
        client.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_reach_users_outside_the_channel_and_read_markers_clear_unread_on_every_tab() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let carol = cluster.guest("carol").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let b1 = Client::connect(cluster.b(), &bob).await;
    let b2 = Client::connect(cluster.a(), &bob).await;
    let c = Client::connect(cluster.b(), &carol).await;
    // Bob has been in general (his read position starts there), then moves on.
    assert_eq!(b1.ack("channel.join", json!("general")).await["ok"], true);
    assert_eq!(
        cluster
            .post(
                cluster.b(),
                "/api/channels",
                &bob,
                json!({"name": "elsewhere"})
            )
            .await
            .0,
        201
    );
    for client in [&b1, &b2] {
        assert_eq!(
            client.ack("channel.join", json!("elsewhere")).await["ok"],
            true
        );
    }

    let first = sent(&a, "general", "hey @Bob, and @nobody; mail bob@example.com").await;
    assert_eq!(first["mentions"], json!([bob.id]));
    for client in [&b1, &b2] {
        let m = client.wait_for("mention", |_| true).await;
        assert_eq!(m["channel"], "general");
        assert_eq!(m["message"]["id"], first["id"]);
    }
    sent(&a, "general", "plain").await;
    let third = sent(&a, "general", "and @carol").await;
    c.wait_for("mention", |m| m["message"]["id"] == third["id"])
        .await;
    // An edit that adds a mention tells the newly mentioned only.
    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": third["id"], "text": "and @carol and @alice and @bob"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    b1.wait_for("mention", |m| m["message"]["id"] == third["id"])
        .await;
    settle().await;
    assert_eq!(c.events("mention").len(), 1, "carol was mentioned already");
    assert!(a.events("mention").is_empty(), "no mention of oneself");

    // A private channel's messages mention its members only.
    assert_eq!(
        cluster
            .post(
                cluster.a(),
                "/api/channels",
                &alice,
                json!({"name": "secret", "password": "password123"})
            )
            .await
            .0,
        201
    );
    assert_eq!(a.ack("channel.join", json!("secret")).await["ok"], true);
    let hidden = sent(&a, "secret", "psst @carol").await;
    assert!(hidden.get("mentions").is_none(), "{hidden}");
    settle().await;
    assert_eq!(c.events("mention").len(), 1);

    let general = |list: &Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == "general").cloned())
            .expect("general listed")
    };
    let (status, list) = cluster.get(cluster.a(), "/api/channels", &bob).await;
    assert_eq!(status, 200);
    let g = general(&list);
    assert_eq!(
        (g["read_seq"].clone(), g["unread"].clone()),
        (json!(0), json!(3))
    );
    assert_eq!(g["unread_mentions"], 2);
    // Carol never opened general: no read position, no counts.
    let (_, list) = cluster.get(cluster.a(), "/api/channels", &carol).await;
    assert!(general(&list).get("unread").is_none());

    // Reading on one tab clears the badge on the other.
    let ack = b1
        .ack("channel.read", json!({"channel": "general", "seq": 2}))
        .await;
    assert_eq!(ack["read_seq"], 2, "{ack}");
    let told = b2.wait_for("channel.read", |_| true).await;
    assert_eq!(told, json!({"channel": "general", "read_seq": 2}));
    let (_, list) = cluster.get(cluster.b(), "/api/channels", &bob).await;
    let g = general(&list);
    assert_eq!(
        (g["unread"].clone(), g["unread_mentions"].clone()),
        (json!(1), json!(1))
    );
    // Never backwards; never past the newest message.
    let ack = b2
        .ack("channel.read", json!({"channel": "general", "seq": 1}))
        .await;
    assert_eq!(ack["read_seq"], 2);
    let ack = b2
        .ack("channel.read", json!({"channel": "general", "seq": 999}))
        .await;
    assert_eq!(ack["read_seq"], 3);
    let (_, list) = cluster.get(cluster.b(), "/api/channels", &bob).await;
    assert_eq!(general(&list)["unread"], 0);
    settle().await;
    // Two moves (to 2, to 3), told to both tabs; the step back was not.
    for tab in [&b1, &b2] {
        let told: Vec<Value> = tab
            .events("channel.read")
            .iter()
            .map(|e| e["read_seq"].clone())
            .collect();
        assert_eq!(told, vec![json!(2), json!(3)]);
    }
    let ack = b2
        .ack("channel.read", json!({"channel": "secret", "seq": 1}))
        .await;
    assert_eq!(code(&ack), "forbidden");
    let ack = b2
        .ack("channel.read", json!({"channel": "general", "seq": -1}))
        .await;
    assert_eq!(code(&ack), "invalid_payload");
    for client in [a, b1, b2, c] {
        client.disconnect().await;
    }
    cluster.finish().await;
}

/// Logs in with the password `Cluster::register` gives; the status.
async fn login(cluster: &Cluster, name: &str) -> u16 {
    cluster
        .http
        .post(format!("{}/api/auth/login", cluster.a().url()))
        .json(&json!({"username": name, "password": "password123"}))
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_user_is_out_of_every_instance_at_once_and_cannot_sign_in() {
    let cluster = Cluster::start(&["--admin-users", "ann"]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let bob = cluster.register(cluster.a(), "bob").await;
    let carol = cluster.guest("carol").await;
    let on_a = Client::connect(cluster.a(), &bob).await;
    let on_b = Client::connect(cluster.b(), &bob).await;
    let ban = "/api/admin/users/bob/ban";

    // Only administrators ban; administrators are not banned.
    let (status, _) = cluster
        .call(reqwest::Method::POST, cluster.a(), ban, &carol, None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = cluster
        .call(
            reqwest::Method::POST,
            cluster.b(),
            "/api/admin/users/ann/ban",
            &ann,
            None,
        )
        .await;
    assert_eq!(status, 403);

    let started = std::time::Instant::now();
    // The web app learns who administers from /api/auth/me.
    let (_, me) = cluster.get(cluster.a(), "/api/auth/me", &ann).await;
    assert_eq!(me["admin"], true);
    let (_, me) = cluster.get(cluster.a(), "/api/auth/me", &carol).await;
    assert!(me.get("admin").is_none(), "{me}");
    let (status, body) = cluster
        .call(reqwest::Method::POST, cluster.a(), ban, &ann, None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["banned"], true);
    on_a.wait_for_disconnect().await;
    on_b.wait_for_disconnect().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(1),
        "out of both instances in {:?}",
        started.elapsed()
    );
    // The session no longer works, anywhere; nor does signing in again.
    let (status, _) = cluster.get(cluster.b(), "/api/auth/me", &bob).await;
    assert_eq!(status, 401);
    match Client::handshake(cluster.b(), Hello::cookie(&bob)).await {
        Handshake::Refused(m) => assert_eq!(m, "unauthorized"),
        Handshake::Connected(_) => panic!("a banned user connected"),
    }
    assert_eq!(login(&cluster, "bob").await, 403);

    // Administrators read what was done.
    let (status, log) = cluster
        .get(cluster.b(), "/api/admin/moderation-log", &ann)
        .await;
    assert_eq!(status, 200);
    assert_eq!(log[0]["action"], "user.ban");
    assert_eq!(log[0]["actor"], "ann");
    assert_eq!(log[0]["target"], "bob");
    let (status, _) = cluster
        .get(cluster.b(), "/api/admin/moderation-log", &carol)
        .await;
    assert_eq!(status, 403);

    let (status, _) = cluster
        .call(reqwest::Method::DELETE, cluster.b(), ban, &ann, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(login(&cluster, "bob").await, 200);
    // The sessions the ban ended stay ended.
    let (status, _) = cluster.get(cluster.a(), "/api/auth/me", &bob).await;
    assert_eq!(status, 401);
    let (_, log) = cluster
        .get(cluster.b(), "/api/admin/moderation-log?limit=1", &ann)
        .await;
    assert_eq!(log[0]["action"], "user.unban");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_are_private_to_the_pair_and_reach_the_other_outside_it() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let carol = cluster.guest("carol").await;
    let (status, opened) = cluster
        .post(cluster.a(), "/api/dms", &alice, json!({"username": "Bob"}))
        .await;
    assert_eq!(status, 200, "{opened}");
    let name = opened["channel"]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("dm-"), "{name}");
    assert_eq!(opened["channel"]["dm"], true);
    assert_eq!(opened["channel"]["private"], true);
    assert_eq!(opened["user"]["username"], "bob");
    assert_eq!(opened["user"]["online"], false);
    // One channel per pair, whoever opens it.
    let (_, again) = cluster
        .post(cluster.b(), "/api/dms", &bob, json!({"username": "alice"}))
        .await;
    assert_eq!(again["channel"]["name"], name.as_str());
    for (body, status) in [
        (json!({"username": "alice"}), 400),
        (json!({"username": "nobody"}), 404),
        (json!({}), 400),
    ] {
        let (got, _) = cluster.post(cluster.a(), "/api/dms", &alice, body).await;
        assert_eq!(got, status);
    }

    let a = Client::connect(cluster.a(), &alice).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let c = Client::connect(cluster.b(), &carol).await;
    assert_eq!(a.ack("channel.join", json!(name)).await["ok"], true);
    let ack = c.ack("channel.join", json!(name)).await;
    assert_eq!(code(&ack), "forbidden");
    let ack = c
        .ack(
            "channel.join",
            json!({"channel": name, "password": "password123"}),
        )
        .await;
    assert_eq!(code(&ack), "forbidden");
    let (status, _) = cluster
        .get(
            cluster.b(),
            &format!("/api/channels/{name}/messages"),
            &carol,
        )
        .await;
    assert_eq!(status, 403);
    // Not listed among the channels; not a name anyone may take.
    let (_, list) = cluster.get(cluster.a(), "/api/channels", &alice).await;
    assert!(!list.to_string().contains(&name), "{list}");
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &carol,
            json!({"name": "dm-mine"}),
        )
        .await;
    assert_eq!(status, 400);

    // Bob is in general; the message reaches him as a mention, and counts as unread.
    let m = sent(&a, &name, "psst").await;
    // Whoever opened it has no say over the other's messages.
    assert_eq!(b.ack("channel.join", json!(name)).await["ok"], true);
    let bobs = sent(&b, &name, "mine").await;
    let ack = a
        .ack("message.delete", json!({"channel": name, "id": bobs["id"]}))
        .await;
    assert_eq!(code(&ack), "forbidden");
    assert!(opened["channel"].get("created_by").is_none(), "{opened}");
    assert_eq!(b.ack("channel.join", json!("general")).await["ok"], true);
    let told = b.wait_for("mention", |_| true).await;
    assert_eq!(told["message"]["id"], m["id"]);
    assert_eq!(told["channel"], name.as_str());
    let (status, dms) = cluster.get(cluster.b(), "/api/dms", &bob).await;
    assert_eq!(status, 200);
    assert_eq!(dms[0]["channel"]["name"], name.as_str());
    assert_eq!(dms[0]["channel"]["unread"], 1);
    assert_eq!(dms[0]["channel"]["unread_mentions"], 1);
    assert_eq!(dms[0]["user"]["username"], "alice");
    assert_eq!(dms[0]["user"]["online"], true);
    settle().await;
    assert!(c.events("mention").is_empty());

    // Last seen: once alice is gone.
    a.disconnect().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, who) = cluster.get(cluster.b(), "/api/users/alice", &bob).await;
        if who["online"] == false {
            assert!(who["last_seen"].is_string(), "{who}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alice still online: {who}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    b.disconnect().await;
    c.disconnect().await;
    cluster.finish().await;

    // Guests may be kept out of direct messages.
    let cluster = Cluster::start(&["--dm-guests", "false"]).await;
    let guest = cluster.guest("gus").await;
    let dora = cluster.register(cluster.a(), "dora").await;
    let (status, _) = cluster
        .post(cluster.a(), "/api/dms", &dora, json!({"username": "gus"}))
        .await;
    assert_eq!(status, 403);
    let (status, _) = cluster
        .post(cluster.a(), "/api/dms", &guest, json!({"username": "dora"}))
        .await;
    assert_eq!(status, 403);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_leaves_the_channel_on_every_instance() {
    let cluster = Cluster::start(&[]).await;
    let owner = cluster.guest("owner").await;
    let bob = cluster.guest("bob").await;
    assert_eq!(
        cluster
            .post(
                cluster.a(),
                "/api/channels",
                &owner,
                json!({"name": "club", "password": "password123"})
            )
            .await
            .0,
        201
    );
    let o = Client::connect(cluster.a(), &owner).await;
    let b1 = Client::connect(cluster.a(), &bob).await;
    let b2 = Client::connect(cluster.b(), &bob).await;
    assert_eq!(o.ack("channel.join", json!("club")).await["ok"], true);
    for b in [&b1, &b2] {
        let ack = b
            .ack(
                "channel.join",
                json!({"channel": "club", "password": "password123"}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // Only the owner (or an administrator).
    let (status, _) = cluster
        .call(
            reqwest::Method::DELETE,
            cluster.b(),
            "/api/channels/club/members/owner",
            &bob,
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, body) = cluster
        .call(
            reqwest::Method::DELETE,
            cluster.b(),
            "/api/channels/club/members/bob",
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removed"], true);
    for b in [&b1, &b2] {
        let r = b.wait_for("channel.removed", |_| true).await;
        assert_eq!(r["channel"], "club");
    }
    sent(&o, "club", "after bob").await;
    let ack = b2
        .ack(
            "message.send",
            json!({"channel": "club", "text": "still here?", "client_message_id": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(code(&ack), "not_in_channel", "out of the channel: {ack}");
    settle().await;
    for b in [&b1, &b2] {
        assert!(
            !b.events("message.new")
                .iter()
                .any(|m| m["text"] == "after bob"),
            "a removed member still receives the channel"
        );
    }
    let ack = b1.ack("channel.join", json!("club")).await;
    assert_eq!(code(&ack), "forbidden");
    for client in [o, b1, b2] {
        client.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_new_direct_messages_is_capped_per_hour_and_reopening_is_not() {
    let cluster = Cluster::start(&["--channels-per-user-per-hour", "2"]).await;
    let alice = cluster.guest("alice").await;
    for name in ["bob", "carol", "dave"] {
        cluster.guest(name).await;
    }
    let open =
        |name: &str| cluster.post(cluster.a(), "/api/dms", &alice, json!({ "username": name }));
    assert_eq!(open("bob").await.0, 200);
    assert_eq!(open("carol").await.0, 200);
    let (status, body) = open("dave").await;
    assert_eq!(status, 429, "{body}");
    assert!(body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0));
    // The ones already open are returned as they are.
    assert_eq!(open("bob").await.0, 200);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_count_toward_the_send_limit_and_edits_pass_the_word_filter() {
    let words = std::env::temp_dir().join(format!("banter-words-{}", Uuid::new_v4()));
    std::fs::write(&words, "darn\n").expect("word list");
    let words = words.display().to_string();
    // Without the hold, the action over the limit is refused at once.
    let cluster = Cluster::start(&[
        "--rate-limit-messages",
        "3",
        "--rate-limit-hold-secs",
        "0",
        "--word-filter-file",
        &words,
    ])
    .await;
    let alice = cluster.guest("alice").await;
    let a = Client::connect(cluster.a(), &alice).await;
    let m = sent(&a, "general", "fine").await;
    let ack = a
        .ack(
            "message.edit",
            json!({"channel": "general", "id": m["id"], "text": "darn it"}),
        )
        .await;
    assert_eq!(ack["message"]["text"], "**** it", "{ack}");
    let ack = a
        .ack(
            "reaction.add",
            json!({"channel": "general", "id": m["id"], "emoji": "👍"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // The fourth action in the window, whatever it is, is over the limit.
    let ack = a
        .ack(
            "reaction.remove",
            json!({"channel": "general", "id": m["id"], "emoji": "👍"}),
        )
        .await;
    assert_eq!(code(&ack), "rate_limited");
    assert!(ack["error"]["retry_after_ms"]
        .as_u64()
        .is_some_and(|ms| ms > 0));
    a.wait_for("rate_limited", |_| true).await;
    assert_eq!(code(&send(&a, "general", "blocked").await), "rate_limited");
    a.disconnect().await;
    cluster.finish().await;
    let _ = std::fs::remove_file(&words);
}

/// A channel created on one instance appears at once in every client's list, on every
/// instance: `channel.created` with the channel as `GET /api/channels` shows it (never its
/// password); a direct message is not announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_channel_is_announced_to_every_socket() {
    let cluster = Cluster::start(&[]).await;
    let maker = cluster.register(cluster.a(), "maker").await;
    let viewer = cluster.guest("viewer").await;
    let far = Client::connect(cluster.b(), &viewer).await;
    let near = Client::connect(cluster.a(), &viewer).await;
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &maker,
            json!({"name": "lounge", "description": "sit down"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    for client in [&far, &near] {
        let created = client
            .wait_for("channel.created", |c| c["channel"]["name"] == "lounge")
            .await;
        assert_eq!(created["channel"]["description"], "sit down");
        assert_eq!(created["channel"]["private"], false);
    }
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &maker,
            json!({"name": "vault", "password": "open-sesame"}),
        )
        .await;
    assert_eq!(status, 201);
    let created = far
        .wait_for("channel.created", |c| c["channel"]["name"] == "vault")
        .await;
    assert_eq!(created["channel"]["private"], true);
    assert!(!created.to_string().contains("open-sesame"));
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/dms",
            &maker,
            json!({"username": "viewer"}),
        )
        .await;
    assert_eq!(status, 200);
    settle().await;
    let announced: Vec<Value> = far.events("channel.created");
    assert_eq!(announced.len(), 2, "{announced:?}");
    far.disconnect().await;
    near.disconnect().await;
    cluster.finish().await;
}
