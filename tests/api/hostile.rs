//! A hostile client must not hurt another: poisoned batches, removed accounts, revoked
//! sessions, floods and caps.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn send_body(text: &str, file: Option<Value>) -> Value {
    let mut body =
        json!({ "channel": "general", "text": text, "client_message_id": Uuid::new_v4() });
    if let Some(file) = file {
        body["file"] = file;
    }
    body
}

/// The field an `invalid_payload` answer names.
fn field(error: &Value) -> &str {
    error["errors"][0]["field"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_naming_the_field() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.guest("plain").await;
    let client = Client::connect(cluster.a(), &user).await;
    let png = |name: &str, kind: &str| json!({ "url": "/a.png", "name": name, "type": kind });
    for (body, expected) in [
        (send_body("nul\u{0}here", None), "text"),
        (send_body("bell\u{7}", None), "text"),
        (
            send_body("ok", Some(png("a\u{0}.png", "image/png"))),
            "file.name",
        ),
        (
            send_body("ok", Some(png("a.png", "image/\u{0}png"))),
            "file.type",
        ),
    ] {
        let ack = client.ack("message.send", body).await;
        assert_eq!(code(&ack), "invalid_payload", "{ack}");
        assert_eq!(field(&ack["error"]), expected, "{ack}");
    }
    // Newlines and tabs are text.
    let ack = client
        .ack("message.send", send_body("two\n\tlines", None))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let url = |path: &str| format!("{}{path}", cluster.a().url());
    for (path, body, expected) in [
        (
            "/api/auth/register",
            json!({ "username": "nul", "email": "a\u{0}@b.io", "password": "password123" }),
            "email",
        ),
        (
            "/api/auth/register",
            json!({ "username": "nul2", "email": "n@b.io", "password": "password\u{0}123" }),
            "password",
        ),
        (
            "/api/auth/guest",
            json!({ "username": "gu\u{0}est" }),
            "username",
        ),
        (
            "/api/auth/login",
            json!({ "email": "a\u{0}@b.io", "password": "password123" }),
            "email",
        ),
    ] {
        let resp = cluster
            .http
            .post(url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path} {body}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["code"], "invalid_payload", "{error}");
        assert_eq!(field(&error), expected, "{error}");
    }
    let (status, error) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &user,
            json!({ "name": "clean", "description": "about\u{0}" }),
        )
        .await;
    assert_eq!((status, field(&error)), (400, "description"), "{error}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the clean message is stored");
    client.disconnect().await;
    cluster.finish().await;
}

/// A message that passes validation but that Postgres refuses (here: a rule the test adds to
/// the table) fails alone; the sends committed in the same batch are stored and acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_message_does_not_fail_its_batch() {
    let cluster = Cluster::start(&["--rate-limit-messages", "1000"]).await;
    sqlx::query("ALTER TABLE messages ADD CONSTRAINT no_poison CHECK (text NOT LIKE '%poison%')")
        .execute(&cluster.db)
        .await
        .unwrap();
    let mut clients = Vec::new();
    for n in 0..6 {
        let user = cluster.guest(&format!("batch{n}")).await;
        clients.push(Client::connect(cluster.a(), &user).await);
    }
    for round in 0..3 {
        let sends = clients.iter().enumerate().flat_map(|(n, c)| {
            (0..5).map(move |k| {
                let poisoned = k % 2 == 0;
                let text = if poisoned {
                    format!("poison {round}-{n}-{k}")
                } else {
                    format!("fine {round}-{n}-{k}")
                };
                async move {
                    (
                        poisoned,
                        c.ack("message.send", send_body(&text, None)).await,
                    )
                }
            })
        });
        let acks = futures_util::future::join_all(sends).await;
        for (poisoned, ack) in &acks {
            if *poisoned {
                assert_eq!(code(ack), "invalid_payload", "{ack}");
            } else {
                assert_eq!(ack["ok"], true, "a clean send failed with its batch: {ack}");
            }
        }
    }
    let stored: Vec<i64> = sqlx::query_scalar("SELECT seq FROM messages ORDER BY seq")
        .fetch_all(&cluster.db)
        .await
        .unwrap();
    assert_eq!(
        stored,
        (1..=36).collect::<Vec<i64>>(),
        "clean ones, gap-free"
    );
    for c in clients {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_user_is_refused_and_disconnected() {
    let cluster = Cluster::start(&[]).await;
    let gone = cluster.guest("gone").await;
    let live_a = Client::connect(cluster.a(), &gone).await;
    let live_b = Client::connect(cluster.b(), &gone).await;
    let stays = cluster.guest("stays").await;
    let other = Client::connect(cluster.b(), &stays).await;
    sqlx::query("DELETE FROM users WHERE id = $1::uuid")
        .bind(&gone.id)
        .execute(&cluster.db)
        .await
        .unwrap();
    // Its live sockets are disconnected on both instances.
    for live in [&live_a, &live_b] {
        live.wait_for_disconnect().await;
    }
    let (status, _) = cluster.get(cluster.a(), "/api/auth/me", &gone).await;
    assert_eq!(status, 401);
    match Client::handshake(cluster.b(), Hello::cookie(&gone)).await {
        Handshake::Refused(m) => assert_eq!(m, "unauthorized"),
        Handshake::Connected(_) => panic!("a removed user's session connected"),
    }
    assert_eq!(send(&other, "general", "still here").await["ok"], true);
    other.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_sessions_live_sockets_everywhere() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.register(cluster.a(), "leaver").await;
    let tab_a = Client::connect(cluster.a(), &user).await;
    let tab_b = Client::connect(cluster.b(), &user).await;
    // Another session of the same user stays.
    let resp = cluster
        .http
        .post(format!("{}/api/auth/login", cluster.a().url()))
        .json(&json!({ "username": "leaver", "password": "password123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let second = User {
        id: user.id.clone(),
        token: session_cookie(&resp).unwrap(),
    };
    let other_session = Client::connect(cluster.b(), &second).await;

    let started = std::time::Instant::now();
    let (status, _) = cluster
        .post(cluster.b(), "/api/auth/logout", &user, json!({}))
        .await;
    assert_eq!(status, 200);
    for tab in [&tab_a, &tab_b] {
        tab.wait_for_disconnect().await;
    }
    let elapsed = started.elapsed();
    println!("logout closed both live sockets in {elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(
        send(&other_session, "general", "still in").await["ok"],
        true
    );
    other_session.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_and_look_alike_names_and_foreign_links_are_refused() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.register(cluster.a(), "alice").await;
    let url = format!("{}/api/auth/guest", cluster.a().url());
    for name in ["admin", "Administrator", "r00t", "aIice", "ALICE"] {
        let resp = cluster
            .http
            .post(&url)
            .json(&json!({ "username": name }))
            .send()
            .await
            .unwrap();
        assert!(
            resp.status() == 400 || resp.status() == 409,
            "{name}: {}",
            resp.status()
        );
    }
    let resp = cluster
        .http
        .post(format!("{}/api/auth/register", cluster.b().url()))
        .json(&json!({ "username": "aIice", "email": "other@example.com", "password": "password123" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409, "a look-alike of alice is refused");

    let client = Client::connect(cluster.a(), &alice).await;
    for url in [
        "/\\evil.example/x",
        "http:///evil.example",
        "https:evil.example",
        "//evil.example/a",
    ] {
        let file = json!({ "url": url, "name": "x.png", "type": "image/png" });
        let ack = client
            .ack("message.send", send_body("link", Some(file)))
            .await;
        assert_eq!(code(&ack), "invalid_payload", "{url}: {ack}");
        assert_eq!(field(&ack["error"]), "file.url", "{ack}");
    }
    let file = json!({ "url": "https://example.com/x.png", "name": "x.png", "type": "image/png" });
    let ack = client
        .ack("message.send", send_body("link", Some(file)))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    client.disconnect().await;
    cluster.finish().await;
}
