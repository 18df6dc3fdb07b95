//! Malformed and hostile payloads on every client event: a clear error code each time, and the
//! same connection keeps working.

use banter::contract::client;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn big_text() -> String {
    "x".repeat(1_000_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_refuses_bad_payloads_and_the_socket_survives() {
    let cluster = Cluster::start(&["--rate-limit-messages", "1000"]).await;
    let owner = cluster.register(cluster.a(), "owner").await;
    for body in [
        json!({ "name": "elsewhere" }),
        json!({ "name": "vault", "password": "vault-pass" }),
    ] {
        let (status, _) = cluster
            .post(cluster.a(), "/api/channels", &owner, body)
            .await;
        assert_eq!(status, 201);
    }
    let user = cluster.guest("fuzzer").await;
    let client = Client::connect(cluster.b(), &user).await;

    let uuid = Uuid::new_v4().to_string();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("channel.join", Value::Null, "invalid_payload"),
        ("channel.join", json!(42), "invalid_payload"),
        ("channel.join", json!([]), "invalid_payload"),
        ("channel.join", json!({}), "invalid_payload"),
        ("channel.join", json!({ "channel": 7 }), "invalid_payload"),
        (
            "channel.join",
            json!({ "channel": "general", "password": 5 }),
            "invalid_payload",
        ),
        ("channel.join", json!("Not A Name!"), "invalid_payload"),
        ("channel.join", json!(big_text()), "invalid_payload"),
        ("channel.join", json!("no-such-channel"), "not_found"),
        ("channel.join", json!("vault"), "forbidden"),
        ("channel.leave", Value::Null, "invalid_payload"),
        ("channel.leave", json!(1), "invalid_payload"),
        ("channel.leave", json!([]), "invalid_payload"),
        ("channel.leave", json!("no-such-channel"), "not_found"),
        ("channel.leave", json!("elsewhere"), "not_in_channel"),
        ("message.send", Value::Null, "invalid_payload"),
        ("message.send", json!(3), "invalid_payload"),
        ("message.send", json!(["general", "hi"]), "invalid_payload"),
        ("message.send", json!({}), "invalid_payload"),
        (
            "message.send",
            json!({ "channel": "general", "text": "hi" }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": 5, "client_message_id": uuid }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": 5, "text": "hi", "client_message_id": uuid }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": "hi", "client_message_id": "not-a-uuid" }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": "hi", "client_message_id": 12 }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": "   ", "client_message_id": uuid }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": big_text(), "client_message_id": uuid }),
            "too_long",
        ),
        (
            "message.send",
            json!({ "channel": "no-such-channel", "text": "hi", "client_message_id": uuid }),
            "not_found",
        ),
        (
            "message.send",
            json!({ "channel": "elsewhere", "text": "hi", "client_message_id": uuid }),
            "not_in_channel",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": "hi", "client_message_id": uuid,
            "file": { "url": "javascript:alert(1)", "name": "a", "type": "text/html" } }),
            "invalid_payload",
        ),
        (
            "message.send",
            json!({ "channel": "general", "text": "hi", "client_message_id": uuid, "file": "x" }),
            "invalid_payload",
        ),
        ("user.typing", Value::Null, "invalid_payload"),
        ("user.typing", json!(true), "invalid_payload"),
        ("user.typing", json!([]), "invalid_payload"),
        (
            "user.typing",
            json!({ "channel": "general" }),
            "invalid_payload",
        ),
        (
            "user.typing",
            json!({ "channel": "general", "isTyping": "yes" }),
            "invalid_payload",
        ),
        (
            "user.typing",
            json!({ "channel": "no-such-channel", "isTyping": true }),
            "not_found",
        ),
        (
            "user.typing",
            json!({ "channel": "elsewhere", "isTyping": true }),
            "not_in_channel",
        ),
        ("messages.sync", Value::Null, "invalid_payload"),
        ("messages.sync", json!("general"), "invalid_payload"),
        ("messages.sync", json!([]), "invalid_payload"),
        (
            "messages.sync",
            json!({ "channel": "general" }),
            "invalid_payload",
        ),
        (
            "messages.sync",
            json!({ "channel": "general", "after_seq": -1 }),
            "invalid_payload",
        ),
        (
            "messages.sync",
            json!({ "channel": "general", "after_seq": "0" }),
            "invalid_payload",
        ),
        (
            "messages.sync",
            json!({ "channel": "general", "after_seq": 0, "limit": 0 }),
            "invalid_payload",
        ),
        (
            "messages.sync",
            json!({ "channel": "general", "after_seq": 0, "limit": 501 }),
            "invalid_payload",
        ),
        (
            "messages.sync",
            json!({ "channel": "no-such-channel", "after_seq": 0 }),
            "not_found",
        ),
        (
            "messages.sync",
            json!({ "channel": "vault", "after_seq": 0 }),
            "forbidden",
        ),
        ("message.edit", Value::Null, "invalid_payload"),
        (
            "message.edit",
            json!({ "channel": "general" }),
            "invalid_payload",
        ),
        (
            "message.edit",
            json!({ "channel": "general", "id": "not-an-id", "text": "x" }),
            "invalid_payload",
        ),
        (
            "message.edit",
            json!({ "channel": "general", "id": uuid, "text": big_text() }),
            "too_long",
        ),
        (
            "message.edit",
            json!({ "channel": "general", "id": uuid, "text": "x" }),
            "not_found",
        ),
        (
            "message.edit",
            json!({ "channel": "elsewhere", "id": uuid, "text": "x" }),
            "not_in_channel",
        ),
        ("message.delete", json!("general"), "invalid_payload"),
        (
            "message.delete",
            json!({ "channel": "general", "id": 7 }),
            "invalid_payload",
        ),
        (
            "message.delete",
            json!({ "channel": "general", "id": uuid }),
            "not_found",
        ),
        ("reaction.add", json!({}), "invalid_payload"),
        (
            "reaction.add",
            json!({ "channel": "general", "id": uuid, "emoji": "@everyone" }),
            "invalid_payload",
        ),
        (
            "reaction.add",
            json!({ "channel": "general", "id": uuid, "emoji": "\u{202e}" }),
            "invalid_payload",
        ),
        (
            "reaction.add",
            json!({ "channel": "general", "id": uuid, "emoji": "👍" }),
            "not_found",
        ),
        ("reaction.remove", json!([]), "invalid_payload"),
        (
            "reaction.remove",
            json!({ "channel": "general", "id": uuid, "emoji": "a" }),
            "invalid_payload",
        ),
        ("channel.read", Value::Null, "invalid_payload"),
        (
            "channel.read",
            json!({ "channel": "general", "seq": -1 }),
            "invalid_payload",
        ),
        (
            "channel.read",
            json!({ "channel": "general", "seq": "1" }),
            "invalid_payload",
        ),
        (
            "channel.read",
            json!({ "channel": "no-such-channel", "seq": 1 }),
            "not_found",
        ),
        (
            "channel.read",
            json!({ "channel": "vault", "seq": 1 }),
            "forbidden",
        ),
    ];
    // Every client event is attacked here: a new event needs its cases.
    for event in client::ALL {
        assert!(
            cases.iter().any(|(e, _, _)| *e == event),
            "no bad-input cases for {event}"
        );
    }
    for (i, (event, payload, expected)) in cases.into_iter().enumerate() {
        let ack = client.ack(event, payload.clone()).await;
        let shown: String = payload.to_string().chars().take(80).collect();
        assert_eq!(code(&ack), expected, "{event} {shown}");
        assert!(ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        // The same connection still sends a valid message.
        let ok = send(&client, "general", &format!("still here {i}")).await;
        assert_eq!(ok["ok"], true, "after {event} {shown}: {ok}");
    }
    for event in client::ALL {
        assert_eq!(
            code(&client.ack_empty(event).await),
            "invalid_payload",
            "{event} without payload"
        );
    }

    // Without an ack, the failure arrives as an `error` event.
    client.emit("message.send", json!({ "text": 1 })).await;
    let error = client
        .wait_for_error(|e| e.contains("invalid_payload"))
        .await;
    let error: Value = serde_json::from_str(&error).expect("error event is JSON");
    assert_eq!(error["code"], "invalid_payload");
    assert!(error["message"].is_string());

    // Nothing half-stored: only the valid messages are in Postgres.
    settle().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    let valid = client.events("message.new").len() as i64;
    assert_eq!(stored, valid);
    assert!(stored >= 40);
    let ok = send(&client, "general", "final").await;
    assert_eq!(ok["ok"], true);
    client.disconnect().await;
    cluster.finish().await;
}

/// A small deterministic generator of arbitrary JSON, biased towards the field names and
/// values the events use, so that many cases get past the first checks.
struct Arbitrary(u64);

impl Arbitrary {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }

    fn string(&mut self) -> Value {
        let s = match self.next() % 9 {
            0 => "general".to_owned(),
            1 => Uuid::new_v4().to_string(),
            2 => String::new(),
            3 => "x".repeat((self.next() % 5000) as usize),
            4 => "ünï©ødé 🎉 \u{0} \u{202e}".to_owned(),
            5 => "javascript:alert(1)".to_owned(),
            6 => "https://example.com/a.png".to_owned(),
            7 => "GENERAL ".to_owned(),
            _ => format!("{}", self.next()),
        };
        Value::String(s)
    }

    fn value(&mut self, depth: u32) -> Value {
        let choice = if depth == 0 {
            self.next() % 6
        } else {
            self.next() % 8
        };
        match choice {
            0 => Value::Null,
            1 => json!(self.next().is_multiple_of(2)),
            2 => json!((self.next() as i64) >> (self.next() % 64)),
            3 => json!(-1.5e300),
            4 | 5 => self.string(),
            6 => Value::Array(
                (0..self.next() % 4)
                    .map(|_| self.value(depth - 1))
                    .collect(),
            ),
            _ => {
                let keys = [
                    "channel",
                    "text",
                    "client_message_id",
                    "password",
                    "isTyping",
                    "after_seq",
                    "after_change",
                    "limit",
                    "id",
                    "emoji",
                    "seq",
                    "reply_to",
                    "file",
                    "url",
                    "name",
                    "type",
                    "__proto__",
                    "constructor",
                ];
                let mut object = serde_json::Map::new();
                for _ in 0..self.next() % 6 {
                    let key = self.pick(&keys).to_owned();
                    object.insert(key, self.value(depth - 1));
                }
                Value::Object(object)
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_payloads_get_a_known_answer_on_every_event() {
    // Not a test of the budget: 600 events in a second would be past it.
    let cluster = Cluster::start(&["--rate-limit-messages", "100000", "--event-budget", "0"]).await;
    let user = cluster.guest("arbitrary").await;
    let client = Client::connect(cluster.b(), &user).await;
    let known = [
        "invalid_payload",
        "too_long",
        "not_found",
        "forbidden",
        "not_in_channel",
        "rate_limited",
        "unavailable",
        "conflict",
    ];
    let events = client::ALL;
    let mut gen = Arbitrary(0x5eed_ba17_e400_0001);
    let mut answers = std::collections::BTreeMap::<String, usize>::new();
    for case in 0..600 {
        let event = events[case % events.len()];
        let payload = gen.value(3);
        let ack = client.ack(event, payload.clone()).await;
        let shown: String = payload.to_string().chars().take(120).collect();
        match ack["ok"].as_bool() {
            Some(true) => *answers.entry(format!("{event} ok")).or_default() += 1,
            Some(false) => {
                let code = ack["error"]["code"].as_str().unwrap_or_default();
                assert!(
                    known.contains(&code),
                    "{event} {shown}: unknown answer {ack}"
                );
                assert!(ack["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()));
                *answers.entry(format!("{event} {code}")).or_default() += 1;
            }
            None => panic!("{event} {shown}: not an ack of the contract: {ack}"),
        }
        // Whatever the payload did (even a join elsewhere), the socket still works.
        if case % 25 == 24 {
            assert_eq!(
                client.ack("channel.join", json!("general")).await["ok"],
                true
            );
            assert_eq!(send(&client, "general", "still fine").await["ok"], true);
        }
    }
    println!("answers: {answers:?}");
    assert_eq!(cluster.health(cluster.b()).await, 200);
    client.disconnect().await;
    cluster.finish().await;
}
