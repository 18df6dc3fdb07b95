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
    // One send at a time per socket (the test client mixes up concurrent acks), many sockets.
    let mut clients = Vec::new();
    for n in 0..6 {
        let user = cluster.guest(&format!("batch{n}")).await;
        for _ in 0..5 {
            clients.push(Client::connect(cluster.a(), &user).await);
        }
    }
    for round in 0..3 {
        let sends = clients.iter().enumerate().map(|(n, c)| {
            let poisoned = n % 2 == 0;
            let text = if poisoned {
                format!("poison {round}-{n}")
            } else {
                format!("fine {round}-{n}")
            };
            async move {
                (
                    poisoned,
                    c.ack("message.send", send_body(&text, None)).await,
                )
            }
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
        (1..=45).collect::<Vec<i64>>(),
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

/// A login through the instance, as from `client` when a proxy reports it.
async fn login_from(cluster: &Cluster, client: Option<&str>, name: &str, password: &str) -> u16 {
    let mut request = cluster
        .http
        .post(format!("{}/api/auth/login", cluster.a().url()))
        .json(&json!({ "username": name, "password": password }));
    if let Some(ip) = client {
        request = request
            .header("x-forwarded-for", ip)
            .header("x-real-ip", ip);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Behind a trusted proxy, failures from one client address limit that address only: the
/// account's owner coming from another address still signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_from_one_address_never_lock_out_the_owner() {
    let cluster = Cluster::start(&["--trusted-proxies", "127.0.0.1/32"]).await;
    cluster.register(cluster.a(), "owner").await;
    let attacker = Some("203.0.113.5");
    // Random names until the address is limited, then the owner's name.
    let mut statuses = Vec::new();
    for n in 0..52 {
        statuses.push(login_from(&cluster, attacker, &format!("nobody{n}"), "guess-guess").await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        50,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2);
    assert_eq!(
        login_from(&cluster, attacker, "owner", "password123").await,
        429
    );
    // Another address: wrong guesses on the owner's account, then the owner.
    let other = Some("203.0.113.6");
    for _ in 0..12 {
        login_from(&cluster, other, "owner", "guess-guess").await;
    }
    assert_eq!(
        login_from(&cluster, other, "owner", "guess-guess").await,
        429
    );
    // Past the account's threshold its logins are paced (one a second), never locked.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        login_from(&cluster, Some("198.51.100.1"), "owner", "password123").await,
        200
    );
    cluster.finish().await;
}

/// Without a trusted proxy, what a client writes in X-Forwarded-For / X-Real-IP is ignored:
/// rotating it does not escape the per-address limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let cluster = Cluster::start(&[]).await;
    let mut limited = 0;
    for n in 0..55 {
        let ip = format!("198.51.100.{n}");
        if login_from(&cluster, Some(&ip), &format!("who{n}"), "guess-guess").await == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 5, "the peer address is limited after 50 attempts");
    cluster.finish().await;
}

/// The check and the count are one step before the hash: 60 concurrent wrong logins for one
/// account from one address run 10 password checks, not 60.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_cannot_pass_the_limit() {
    let cluster = Cluster::start(&[]).await;
    cluster.register(cluster.a(), "target").await;
    let attempts = (0..60).map(|_| login_from(&cluster, None, "target", "guess-guess"));
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((checked, limited), (10, 50), "{statuses:?}");
    cluster.finish().await;
}

/// Private channel passwords: guesses are capped per user, the right password still works for
/// someone else, and the memory of a guessing flood stays bounded (hashes run one per core).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_password_guesses_are_throttled() {
    let cluster = Cluster::start(&[]).await;
    let owner = cluster.guest("vaultowner").await;
    for name in ["vault", "vault2"] {
        let (status, _) = cluster
            .post(
                cluster.a(),
                "/api/channels",
                &owner,
                json!({ "name": name, "password": "vault-pass" }),
            )
            .await;
        assert_eq!(status, 201);
    }
    let guesser = cluster.guest("guesser").await;
    let mut tabs = Vec::new();
    for _ in 0..8 {
        tabs.push(Client::connect(cluster.a(), &guesser).await);
    }
    // Eight sockets guessing at once, five guesses each (one at a time per socket).
    let guesses = tabs.iter().enumerate().map(|(t, tab)| async move {
        let mut codes = Vec::new();
        for n in 0..5 {
            let ack = tab
                .ack(
                    "channel.join",
                    json!({ "channel": "vault", "password": format!("guess-{t}-{n}") }),
                )
                .await;
            codes.push(code(&ack).to_owned());
        }
        codes
    });
    let codes: Vec<String> = futures_util::future::join_all(guesses)
        .await
        .into_iter()
        .flatten()
        .collect();
    let checked = codes.iter().filter(|c| *c == "forbidden").count();
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    assert_eq!((checked, limited), (10, 30), "{codes:?}");
    // Another user: nine wrong guesses, then the right password, which still works and does
    // not count: one more wrong guess (elsewhere) is checked, the next one is over the cap.
    let friend = cluster.guest("friend").await;
    let friendly = Client::connect(cluster.b(), &friend).await;
    let join = |channel: &'static str, password: &'static str| {
        friendly.ack(
            "channel.join",
            json!({ "channel": channel, "password": password }),
        )
    };
    for _ in 0..9 {
        assert_eq!(code(&join("vault", "wrong-pass").await), "forbidden");
    }
    let ack = join("vault", "vault-pass").await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(code(&join("vault2", "wrong-pass").await), "forbidden");
    assert_eq!(code(&join("vault2", "wrong-pass").await), "rate_limited");
    // Twenty guesses on "vault" so far: its guesses are now paced, one a second.
    let pacer = cluster.guest("pacer").await;
    let paced = Client::connect(cluster.a(), &pacer).await;
    let guess = json!({ "channel": "vault", "password": "wrong-pass" });
    assert_eq!(
        code(&paced.ack("channel.join", guess.clone()).await),
        "forbidden"
    );
    let second = paced.ack("channel.join", guess).await;
    assert_eq!(code(&second), "rate_limited", "{second}");
    assert!(second["error"]["retry_after_ms"].as_u64().unwrap() <= 1000);
    paced.disconnect().await;
    for tab in tabs {
        tab.disconnect().await;
    }
    friendly.disconnect().await;
    cluster.finish().await;
}

/// New channels (the fan-out has no last published seq for them), concurrent sends from both
/// instances: every listener on either instance sees each channel in increasing seq order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_channels_are_delivered_in_seq_order() {
    const CHANNELS: usize = 25;
    const PER_SENDER: usize = 2;
    let cluster = Cluster::start(&["--rate-limit-messages", "1000"]).await;
    let names: Vec<String> = (0..CHANNELS).map(|n| format!("fresh{n}")).collect();
    for name in &names {
        sqlx::query("INSERT INTO channels (id, name) VALUES (gen_random_uuid(), $1)")
            .bind(name)
            .execute(&cluster.db)
            .await
            .unwrap();
    }
    let mut listeners = Vec::new();
    let mut senders = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let user = cluster.guest(&format!("member{n}")).await;
        for on in [cluster.a(), cluster.b()] {
            for role in 0..3 {
                let c = Client::connect(on, &user).await;
                let ack = c.ack("channel.join", json!(name)).await;
                assert_eq!(ack["ok"], true, "{ack}");
                if role == 0 {
                    listeners.push((name.clone(), c));
                } else {
                    senders.push((name.clone(), c));
                }
            }
        }
    }
    // Every sender at once, each one message at a time (the test client mixes up concurrent
    // acks on one socket).
    let sends = senders.iter().map(|(name, c)| async move {
        for k in 0..PER_SENDER {
            let ack = send(c, name, &format!("m{k}")).await;
            assert_eq!(ack["ok"], true, "{ack}");
        }
    });
    futures_util::future::join_all(sends).await;
    let expected = 4 * PER_SENDER;
    let mut out_of_order = Vec::new();
    for (name, listener) in &listeners {
        let got = listener
            .wait_for_count("message.new", expected)
            .await
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect::<Vec<_>>();
        if got != (1..=expected as i64).collect::<Vec<_>>() {
            out_of_order.push(format!("{name}: {got:?}"));
        }
    }
    assert!(
        out_of_order.is_empty(),
        "{} of {} listeners saw another order: {out_of_order:?}",
        out_of_order.len(),
        listeners.len()
    );
    for (_, c) in listeners.into_iter().chain(senders) {
        c.disconnect().await;
    }
    cluster.finish().await;
}

/// A typing flood (alternating states, no pauses) reaches a listener as at most ~2 changes a
/// second, and the listener still gets the messages sent meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typing_flood_is_relayed_as_state_changes_at_two_a_second() {
    let cluster = Cluster::start(&[]).await;
    let flooder = cluster.guest("flooder").await;
    let reader = cluster.guest("reader").await;
    let f = Client::connect(cluster.a(), &flooder).await;
    let r = Client::connect(cluster.b(), &reader).await;
    let started = std::time::Instant::now();
    let mut sent = 0;
    while started.elapsed() < std::time::Duration::from_secs(3) && sent < 20_000 {
        for _ in 0..100 {
            f.emit(
                "user.typing",
                json!({ "channel": "general", "isTyping": sent % 2 == 0 }),
            )
            .await;
            sent += 1;
        }
        tokio::task::yield_now().await;
    }
    // The send waits behind the flood on the same connection: how long the server takes to
    // work through it depends on the machine, so the ack gets a minute; the rate below is
    // measured against the time it took.
    let ack = f
        .ack_within(
            "message.send",
            json!({ "channel": "general", "text": "after the flood", "client_message_id": uuid::Uuid::new_v4() }),
            std::time::Duration::from_secs(60),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    r.wait_for("message.new", |m| m["text"] == "after the flood")
        .await;
    settle().await;
    // From the first typing event to the end of the flood's effects.
    let elapsed = started.elapsed().as_secs_f64();
    let relayed = r.events("user.typing").len();
    println!("{sent} typing events sent in {elapsed:.1} s, {relayed} relayed");
    assert!(sent > 1000, "a flood: {sent}");
    assert!(
        relayed as f64 <= elapsed * 2.0 + 3.0,
        "{relayed} relayed in {elapsed:.1} s"
    );
    f.disconnect().await;
    r.disconnect().await;
    cluster.finish().await;
}

/// How long the server keeps a TCP connection that does what `act` does, then nothing.
async fn held_for(addr: std::net::SocketAddr, act: &'static [u8]) -> std::time::Duration {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let started = std::time::Instant::now();
    tcp.write_all(act).await.unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("still open after 20 s"),
        }
    }
}

/// Slowloris, idle connections and Engine.IO sessions that never CONNECT are closed within a
/// few seconds; an unknown event asking for an ack gets `invalid_payload`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed() {
    let cluster = Cluster::start(&["--http-header-timeout-secs", "2"]).await;
    let addr = cluster.a().addr;
    let (idle, slow, kept_alive) = tokio::join!(
        held_for(addr, b""),
        held_for(addr, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "),
        held_for(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    println!("closed after: idle {idle:?}, slowloris {slow:?}, idle keep-alive {kept_alive:?}");
    for held in [idle, slow, kept_alive] {
        assert!(held >= std::time::Duration::from_millis(1500), "{held:?}");
        assert!(held < std::time::Duration::from_secs(6), "{held:?}");
    }
    // An Engine.IO session (polling handshake) that never sends a namespace CONNECT.
    let started = std::time::Instant::now();
    let open: String = cluster
        .http
        .get(format!(
            "{}/socket.io/?EIO=4&transport=polling",
            cluster.a().url()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a session id")
        .to_owned();
    // Long polls until the server ends the session.
    let closed = loop {
        let resp = cluster
            .http
            .get(format!(
                "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
                cluster.a().url()
            ))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status != 200 || body.contains('1') && !body.contains('{') {
            break started.elapsed();
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    };
    println!("unauthenticated Engine.IO session closed after {closed:?}");
    assert!(closed < std::time::Duration::from_secs(10), "{closed:?}");

    let user = cluster.guest("asker").await;
    let client = Client::connect(cluster.a(), &user).await;
    let ack = client.ack("no.such.event", json!({})).await;
    assert_eq!(code(&ack), "invalid_payload", "{ack}");
    assert_eq!(send(&client, "general", "still fine").await["ok"], true);
    client.disconnect().await;
    cluster.finish().await;
}

/// Per-user and per-address caps answer with clear errors, and only the one over the cap is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_on_sockets_guests_channels_and_guest_sends() {
    let cluster = Cluster::start(&[
        "--max-sockets-per-user",
        "4",
        "--guests-per-address-per-hour",
        "3",
        "--channels-per-user-per-hour",
        "2",
        "--guest-messages-per-address",
        "5",
    ])
    .await;
    // A refused name does not use up the address's guests.
    let resp = cluster
        .http
        .post(format!("{}/api/auth/guest", cluster.a().url()))
        .json(&json!({ "username": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let first = cluster.guest("cap1").await;
    let second = cluster.guest("cap2").await;
    let third = cluster.guest("cap3").await;
    let resp = cluster
        .http
        .post(format!("{}/api/auth/guest", cluster.b().url()))
        .json(&json!({ "username": "cap4" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        429,
        "a fourth guest from one address within the hour"
    );

    // Sockets: four across both instances, the fifth refused; one closes, one more fits.
    let mut tabs = Vec::new();
    for n in 0..4 {
        let on = if n % 2 == 0 { cluster.a() } else { cluster.b() };
        tabs.push(Client::connect(on, &first).await);
    }
    // Presence counts each socket just after its connect.
    settle().await;
    for on in [cluster.a(), cluster.b()] {
        match Client::handshake(on, Hello::cookie(&first)).await {
            Handshake::Refused(m) => assert_eq!(m, "too_many_connections"),
            Handshake::Connected(_) => panic!("a fifth socket was accepted"),
        }
    }
    tabs.pop().unwrap().disconnect().await;
    settle().await;
    tabs.push(Client::connect(cluster.a(), &first).await);
    // Another user is not affected.
    let other = Client::connect(cluster.a(), &second).await;

    // Guest sends from one address share a budget of 5 per window.
    let third_tab = Client::connect(cluster.b(), &third).await;
    let mut codes = Vec::new();
    for n in 0..6 {
        let on = if n % 2 == 0 { &other } else { &third_tab };
        let ack = send(on, "general", &format!("g{n}")).await;
        codes.push(if ack["ok"] == true {
            "ok".to_owned()
        } else {
            code(&ack).to_owned()
        });
    }
    assert_eq!(codes, ["ok", "ok", "ok", "ok", "ok", "rate_limited"]);

    // Channels: two an hour per user; a refused request does not count.
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &second,
            json!({ "name": "mine0", "password": "short" }),
        )
        .await;
    assert_eq!(status, 400);
    for (n, expected) in [(0, 201), (1, 201), (2, 429)] {
        let (status, body) = cluster
            .post(
                cluster.a(),
                "/api/channels",
                &second,
                json!({ "name": format!("mine{n}") }),
            )
            .await;
        assert_eq!(status, expected, "{body}");
    }
    // Pagination of the channel list: general, mine0, mine1.
    let (status, page) = cluster
        .get(cluster.a(), "/api/channels?limit=2", &second)
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["general", "mine0"]);
    assert_eq!(
        next_after(cluster.a(), "/api/channels?limit=2", &second, &cluster).await,
        Some("mine0".to_owned()),
        "a full page names the next page's cursor"
    );
    assert_eq!(
        next_after(cluster.a(), "/api/channels?limit=3", &second, &cluster).await,
        Some("mine1".to_owned())
    );
    assert_eq!(
        next_after(cluster.a(), "/api/channels?limit=4", &second, &cluster).await,
        None,
        "a short page is the last"
    );
    let (_, rest) = cluster
        .get(cluster.a(), "/api/channels?limit=2&after=mine0", &second)
        .await;
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["name"], "mine1");
    let (status, _) = cluster
        .get(cluster.a(), "/api/channels?limit=0", &second)
        .await;
    assert_eq!(status, 400);

    for t in tabs {
        t.disconnect().await;
    }
    other.disconnect().await;
    third_tab.disconnect().await;
    cluster.finish().await;
}

/// Engine.IO sessions that have not completed an authenticated CONNECT are capped per client
/// address; a completed one frees its place at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_engine_io_sessions_are_capped_per_address() {
    let cluster = Cluster::start(&["--max-pending-sessions-per-address", "5"]).await;
    let user = cluster.guest("patient").await;
    // One completed handshake first: it does not stay pending.
    let client = Client::connect(cluster.a(), &user).await;
    let open = || async {
        cluster
            .http
            .get(format!(
                "{}/socket.io/?EIO=4&transport=polling",
                cluster.a().url()
            ))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(open().await);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
    // The other instance counts its own; and the connected client is unaffected.
    assert_eq!(send(&client, "general", "still here").await["ok"], true);
    // Once the pending ones are closed (5 s without CONNECT), the address may open again.
    tokio::time::sleep(std::time::Duration::from_millis(5500)).await;
    assert_eq!(open().await, 200);
    client.disconnect().await;
    cluster.finish().await;
}

/// The `X-Next-After` header of a channel page.
async fn next_after(on: &Instance, path: &str, user: &User, cluster: &Cluster) -> Option<String> {
    let resp = cluster
        .http
        .get(format!("{}{path}", on.url()))
        .header("cookie", user.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()
        .get("x-next-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A send whose sender's account was removed while it was on its way (here: the removal's
/// notification is switched off, so the socket lives on) fails alone with `unauthorized`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_of_a_removed_account_fails_alone() {
    let cluster = Cluster::start(&[]).await;
    let gone = cluster.guest("vanishing").await;
    let stays = cluster.guest("staying").await;
    let gone_tab = Client::connect(cluster.a(), &gone).await;
    let staying = Client::connect(cluster.a(), &stays).await;
    sqlx::query("ALTER TABLE users DISABLE TRIGGER users_removed")
        .execute(&cluster.db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM users WHERE id = $1::uuid")
        .bind(&gone.id)
        .execute(&cluster.db)
        .await
        .unwrap();
    let (refused, fine) = tokio::join!(
        send(&gone_tab, "general", "from nobody"),
        send(&staying, "general", "from somebody"),
    );
    assert_eq!(code(&refused), "unauthorized", "{refused}");
    assert_eq!(fine["ok"], true, "{fine}");
    gone_tab.disconnect().await;
    staying.disconnect().await;
    cluster.finish().await;
}

/// A successful login takes back its own attempt from its address: the address's cap counts
/// failures and refused attempts, not people signing in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_login_does_not_count_against_its_address() {
    let cluster = Cluster::start(&[]).await;
    cluster.register(cluster.a(), "regular").await;
    for n in 0..49 {
        let status = login_from(&cluster, None, &format!("nobody{n}"), "guess-guess").await;
        assert_eq!(status, 401, "attempt {n}");
    }
    // The 50th attempt from the address succeeds, and gives its place back.
    assert_eq!(
        login_from(&cluster, None, "regular", "password123").await,
        200
    );
    assert_eq!(
        login_from(&cluster, None, "nobody-a", "guess-guess").await,
        401
    );
    assert_eq!(
        login_from(&cluster, None, "nobody-b", "guess-guess").await,
        429
    );
    cluster.finish().await;
}
