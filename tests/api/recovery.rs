//! Connection state recovery (PROTOCOL.md "Connection state recovery"): a client that lost its
//! transport, or whose instance died, reconnects anywhere with its pid and offset and gets its
//! channel back and exactly what it missed, in order; others' pids, an expired window and a
//! client that asked to leave recover nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn sent(client: &Client, channel: &str, text: &str) -> Value {
    let ack = send(client, channel, text).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack["message"].clone()
}

/// Every event of the durable streams a client got, in arrival order: `new <seq>`, or the
/// change event's name with its change number.
fn durable(client: &Client) -> Vec<String> {
    let mut all: Vec<(std::time::Instant, String)> = Vec::new();
    for (v, at) in client.timed_events("message.new") {
        all.push((at, format!("new {}", v["seq"])));
    }
    for name in ["message.updated", "message.deleted", "message.reactions"] {
        for (v, at) in client.timed_events(name) {
            all.push((at, format!("{name} {}", v["change"])));
        }
    }
    all.sort_by_key(|(at, _)| *at);
    all.into_iter().map(|(_, e)| e).collect()
}

/// Waits until `client` got `count` durable events.
async fn wait_durable(client: &Client, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = durable(client);
        if got.len() >= count || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_dropped_transport_recovers_on_the_other_instance_with_exactly_what_was_missed() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "rec_ann").await;
    let bob = cluster.register(cluster.b(), "rec_bob").await;
    let a = Client::connect(cluster.a(), &ann).await;
    let b = Client::connect(cluster.b(), &bob).await;
    let pid = a.pid().expect("the CONNECT answer carries a pid");
    // The automatic join of the default channel is told with its offset.
    a.wait_for("channel.joined", |v| v == "general").await;
    let first = sent(&b, "general", "one").await;
    let second = sent(&b, "general", "two").await;
    a.wait_for("message.new", |m| m["seq"] == second["seq"])
        .await;
    let offset = a.offset().expect("an offset");
    assert!(offset.ends_with(".general"), "{offset}");

    // Ann's transport is lost; meanwhile Bob sends, edits, reacts.
    a.drop_transport();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = sent(&b, "general", "three").await;
    let ack = b
        .ack(
            "message.edit",
            json!({"channel": "general", "id": first["id"], "text": "one, edited"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = b
        .ack(
            "reaction.add",
            json!({"channel": "general", "id": second["id"], "emoji": "👍"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let fourth = sent(&b, "general", "four").await;

    // She comes back through the other instance, as socket.io-client does.
    let hello = Hello {
        recover: Some((pid.clone(), Some(offset))),
        ..Hello::cookie(&ann)
    };
    let again = match Client::handshake(cluster.b(), hello).await {
        Handshake::Connected(c) => c,
        Handshake::Refused(m) => panic!("refused: {m}"),
    };
    assert_eq!(again.pid().as_deref(), Some(pid.as_str()), "recovered");
    let got = wait_durable(&again, 4).await;
    assert_eq!(
        got,
        vec![
            format!("new {}", third["seq"]),
            format!("new {}", fourth["seq"]),
            "message.updated 1".to_owned(),
            "message.reactions 2".to_owned(),
        ]
    );
    let updated = again.events("message.updated");
    assert_eq!(updated[0]["text"], "one, edited");
    let reactions = again.events("message.reactions");
    assert_eq!(reactions[0]["emoji"], "👍");
    assert_eq!(reactions[0]["added"], true);
    // No channel.joined: the client is where it was. Its channel is back: live events come,
    // once each.
    assert!(again.events("channel.joined").is_empty());
    let fifth = sent(&b, "general", "five").await;
    again
        .wait_for("message.new", |m| m["seq"] == fifth["seq"])
        .await;
    settle().await;
    assert_eq!(durable(&again).len(), 5, "{:?}", durable(&again));
    // It can send in its channel again.
    sent(&again, "general", "back").await;
    cluster.finish().await;
}

#[tokio::test]
async fn a_session_of_a_crashed_instance_recovers_on_another_and_a_repeat_of_its_offset_replays_nothing_twice(
) {
    let mut cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "rec_cat").await;
    let bob = cluster.register(cluster.b(), "rec_dan").await;
    let a = Client::connect(cluster.a(), &ann).await;
    let b = Client::connect(cluster.b(), &bob).await;
    a.wait_for("channel.joined", |v| v == "general").await;
    let before = sent(&b, "general", "before").await;
    a.wait_for("message.new", |m| m["seq"] == before["seq"])
        .await;
    cluster.a.take().expect("a").crash().await;
    a.wait_for_disconnect().await;
    let missed = sent(&b, "general", "while down").await;
    let again = a.reconnect(cluster.b(), &ann).await;
    assert_eq!(again.pid(), a.pid(), "recovered after its instance died");
    again
        .wait_for("message.new", |m| m["seq"] == missed["seq"])
        .await;
    settle().await;
    assert_eq!(durable(&again), vec![format!("new {}", missed["seq"])]);

    // The recovered socket drops too; its offset is now the replayed message's: nothing is
    // replayed twice.
    let recover = (again.pid().expect("pid"), again.offset());
    again.drop_transport();
    settle().await;
    let third = Client::resume(cluster.b(), &ann, recover).await;
    assert_eq!(third.pid(), a.pid());
    settle().await;
    assert!(durable(&third).is_empty(), "{:?}", durable(&third));
    cluster.finish().await;
}

#[tokio::test]
async fn another_users_pid_a_client_disconnect_and_an_old_disconnect_recover_nothing() {
    let cluster = Cluster::start(&["--recovery-max-disconnect-secs", "2"]).await;
    let ann = cluster.register(cluster.a(), "rec_eve").await;
    let bob = cluster.register(cluster.b(), "rec_fay").await;
    let mallory = cluster.register(cluster.b(), "rec_gus").await;
    let a = Client::connect(cluster.a(), &ann).await;
    let b = Client::connect(cluster.b(), &bob).await;
    a.wait_for("channel.joined", |v| v == "general").await;
    let pid = a.pid().expect("pid");
    let offset = a.offset();
    a.drop_transport();
    settle().await;
    sent(&b, "general", "for ann only").await;

    // Someone else's pid: a fresh session, nothing replayed.
    let hello = Hello {
        recover: Some((pid.clone(), offset.clone())),
        ..Hello::cookie(&mallory)
    };
    let Handshake::Connected(m) = Client::handshake(cluster.b(), hello).await else {
        panic!("refused");
    };
    assert_ne!(m.pid().as_deref(), Some(pid.as_str()));
    settle().await;
    assert!(durable(&m).is_empty(), "{:?}", durable(&m));

    // Her own pid with a forged offset (another channel, a seq from the future, garbage, an
    // offset a thousand times too long): a fresh session each time, nothing replayed.
    for forged in [
        "0.0.secret-club".to_owned(),
        "999999.0.general".to_owned(),
        "not an offset".to_owned(),
        format!("0.0.{}", "g".repeat(200_000)),
    ] {
        let hello = Hello {
            recover: Some((pid.clone(), Some(forged))),
            ..Hello::cookie(&ann)
        };
        let Handshake::Connected(f) = Client::handshake(cluster.b(), hello).await else {
            panic!("refused");
        };
        assert_ne!(f.pid().as_deref(), Some(pid.as_str()));
        f.disconnect().await;
    }

    // Past the window: a fresh session.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let hello = Hello {
        recover: Some((pid.clone(), offset)),
        ..Hello::cookie(&ann)
    };
    let Handshake::Connected(late) = Client::handshake(cluster.b(), hello).await else {
        panic!("refused");
    };
    assert_ne!(late.pid().as_deref(), Some(pid.as_str()));
    assert!(durable(&late).is_empty());

    // A client that disconnected itself (socket.disconnect()) asked to leave.
    let pid = late.pid().expect("pid");
    let offset = late.offset();
    late.disconnect().await;
    settle().await;
    let hello = Hello {
        recover: Some((pid.clone(), offset)),
        ..Hello::cookie(&ann)
    };
    let Handshake::Connected(after) = Client::handshake(cluster.a(), hello).await else {
        panic!("refused");
    };
    assert_ne!(after.pid().as_deref(), Some(pid.as_str()));
    cluster.finish().await;
}

#[tokio::test]
async fn a_recovered_socket_is_back_in_the_channel_it_switched_to_and_not_in_one_it_left() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "rec_hal").await;
    let bob = cluster.register(cluster.b(), "rec_ivy").await;
    let b = Client::connect(cluster.b(), &bob).await;
    let (status, _) = cluster
        .post(
            cluster.b(),
            "/api/channels",
            &bob,
            json!({"name": "rec-side"}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status}");
    let a = Client::connect(cluster.a(), &ann).await;
    let ack = a.ack("channel.join", json!("rec-side")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    a.wait_for("channel.joined", |v| v == "rec-side").await;
    let ack = b.ack("channel.join", json!("rec-side")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let recover = (a.pid().expect("pid"), a.offset());
    a.drop_transport();
    settle().await;
    let missed = sent(&b, "rec-side", "in the side channel").await;
    let kim = cluster.register(cluster.b(), "rec_kim").await;
    let k = Client::connect(cluster.b(), &kim).await;
    sent(&k, "general", "elsewhere").await;
    let again = Client::resume(cluster.a(), &ann, recover).await;
    assert!(again.pid().is_some());
    again
        .wait_for("message.new", |m| m["seq"] == missed["seq"])
        .await;
    settle().await;
    let channels: Vec<Value> = again
        .events("message.new")
        .iter()
        .map(|m| m["channel"].clone())
        .collect();
    assert_eq!(channels, vec![json!("rec-side")]);
    // It is in rec-side: a send there works, one to general does not.
    sent(&again, "rec-side", "back").await;
    let ack = send(&again, "general", "not here").await;
    assert_eq!(code(&ack), "not_in_channel", "{ack}");

    // After leaving its channel, a recovered session is in none.
    let ack = again
        .ack("channel.leave", json!({"channel": "rec-side"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let recover = (again.pid().expect("pid"), again.offset());
    again.drop_transport();
    settle().await;
    let left = Client::resume(cluster.b(), &ann, recover.clone()).await;
    assert_eq!(left.pid(), Some(recover.0));
    sent(&b, "rec-side", "after she left").await;
    settle().await;
    assert!(left.events("message.new").is_empty());
    cluster.finish().await;
}

#[tokio::test]
async fn a_replay_larger_than_the_sockets_send_buffer_arrives_whole_and_in_order() {
    let cluster = Cluster::start(&["--rate-limit-messages", "100000"]).await;
    let ann = cluster.register(cluster.a(), "rec_jon").await;
    let bob = cluster.register(cluster.b(), "rec_kit").await;
    let a = Client::connect(cluster.a(), &ann).await;
    let b = Client::connect(cluster.b(), &bob).await;
    a.wait_for("channel.joined", |v| v == "general").await;
    let recover = (a.pid().expect("pid"), a.offset());
    a.drop_transport();
    settle().await;
    // Well over the 64 packets a socket's send buffer holds.
    let mut seqs = Vec::new();
    for n in 0..200 {
        seqs.push(sent(&b, "general", &format!("m{n}")).await["seq"].clone());
    }
    let again = Client::resume(cluster.b(), &ann, recover).await;
    let got = again.wait_for_count("message.new", 200).await;
    let got: Vec<Value> = got.iter().map(|m| m["seq"].clone()).collect();
    assert_eq!(got, seqs);
    cluster.finish().await;
}

#[tokio::test]
async fn a_recovery_while_messages_keep_coming_misses_none_and_repeats_none() {
    let cluster = Cluster::start(&["--rate-limit-messages", "100000"]).await;
    let ann = cluster.register(cluster.a(), "rec_lou").await;
    let bob = cluster.register(cluster.b(), "rec_max").await;
    let b = std::sync::Arc::new(Client::connect(cluster.b(), &bob).await);
    for round in 0..3 {
        let a = Client::connect(cluster.a(), &ann).await;
        a.wait_for("channel.joined", |v| v == "general").await;
        let first = sent(&b, "general", "start").await["seq"].as_i64().unwrap();
        a.wait_for("message.new", |m| m["seq"] == first).await;
        let recover = (a.pid().expect("pid"), a.offset());
        a.drop_transport();
        // Messages keep coming before, during and after the recovery.
        let sender = b.clone();
        let flood = tokio::spawn(async move {
            let mut last = 0;
            for n in 0..150 {
                last = sent(&sender, "general", &format!("r{round} m{n}")).await["seq"]
                    .as_i64()
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            last
        });
        tokio::time::sleep(Duration::from_millis(50 + 40 * round)).await;
        let again = Client::resume(cluster.b(), &ann, recover).await;
        let last = flood.await.expect("sender");
        again.wait_for("message.new", |m| m["seq"] == last).await;
        settle().await;
        let seqs: Vec<i64> = again
            .events("message.new")
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(
            seqs,
            ((first + 1)..=last).collect::<Vec<_>>(),
            "round {round}"
        );
    }
    cluster.finish().await;
}
