//! The handshake: who is let in, and the `connect_error` message of those who are not.

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::*;

fn token(secret: &str, sub: &str, exp_offset: i64) -> String {
    let now = chrono::Utc::now().timestamp();
    encode(
        &Header::default(),
        &json!({
            "sub": sub, "username": "someone", "jti": Uuid::new_v4(),
            "iat": now, "exp": now + exp_offset,
        }),
        &EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key"),
    )
    .unwrap()
}

async fn refused(on: &Instance, hello: Hello) -> String {
    match Client::handshake(on, hello).await {
        Handshake::Refused(m) => m,
        Handshake::Connected(_) => panic!("handshake should have been refused"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_handshakes_say_why() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.register(cluster.a(), "alice").await;

    assert_eq!(refused(cluster.a(), Hello::default()).await, "unauthorized");

    let forged = token(
        "another-secret-another-secret-another-secret",
        &user.id,
        3600,
    );
    let hello = Hello {
        cookie: Some(format!("token={forged}")),
        ..Hello::default()
    };
    assert_eq!(refused(cluster.a(), hello).await, "unauthorized");

    let expired = token(SECRET, &user.id, -5);
    let hello = Hello {
        cookie: Some(format!("token={expired}")),
        ..Hello::default()
    };
    assert_eq!(refused(cluster.b(), hello).await, "unauthorized");

    let foreign = Hello {
        origin: Some("https://evil.example".into()),
        ..Hello::cookie(&user)
    };
    assert_eq!(refused(cluster.a(), foreign).await, "forbidden_origin");

    // Logging out on A revokes the token on B too.
    let resp = cluster
        .http
        .post(format!("{}/api/auth/logout", cluster.a().url()))
        .header("cookie", user.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cleared = session_cookie(&resp).unwrap_or_default();
    assert!(cleared.is_empty(), "logout clears the cookie");
    assert_eq!(
        refused(cluster.b(), Hello::cookie(&user)).await,
        "unauthorized"
    );
    let (status, body) = cluster.get(cluster.b(), "/api/auth/me", &user).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_and_auth_token_are_accepted() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.register(cluster.a(), "bob").await;

    let by_cookie = Hello {
        origin: Some(GOOD_ORIGIN.into()),
        ..Hello::cookie(&user)
    };
    let Handshake::Connected(c1) = Client::handshake(cluster.a(), by_cookie).await else {
        panic!("cookie refused")
    };
    let by_auth = Hello {
        auth_token: Some(user.token.clone()),
        ..Hello::default()
    };
    let Handshake::Connected(c2) = Client::handshake(cluster.b(), by_auth).await else {
        panic!("auth.token refused")
    };
    let by_polling = Hello {
        polling: true,
        ..Hello::cookie(&user)
    };
    let Handshake::Connected(c3) = Client::handshake(cluster.a(), by_polling).await else {
        panic!("polling refused")
    };
    // Each is a working socket in the default channel.
    for c in [&c1, &c2, &c3] {
        let ack = send(c, "general", "hello").await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    for c in [c1, c2, c3] {
        c.disconnect().await;
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_credentials_are_refused_with_a_known_message() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.guest("genuine").await;
    let parts: Vec<String> = user.token.split('.').map(str::to_owned).collect();
    let mut seed: u64 = 0x00c0_ffee_1234_5678;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let junk = |n: u64| -> String {
        let alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=;, ";
        (0..(n % 300))
            .map(|i| alphabet[((n >> (i % 50)) as usize + i as usize * 7) % alphabet.len()] as char)
            .collect()
    };
    for case in 0..40u64 {
        let r = next();
        let token = match case % 5 {
            0 => junk(r),
            // A real header and signature around a tampered payload.
            1 => format!("{}.{}x.{}", parts[0], parts[1], parts[2]),
            2 => format!("{}.{}", parts[0], parts[1]),
            3 => format!("eyJhbGciOiJub25lIn0.{}.", parts[1]),
            _ => "x".repeat((r % 5000) as usize),
        };
        let hello = match case % 3 {
            0 => Hello {
                cookie: Some(format!("token={token}")),
                ..Hello::default()
            },
            1 => Hello {
                auth_token: Some(token.clone()),
                ..Hello::default()
            },
            _ => Hello {
                cookie: Some(format!("{}; token={token}", junk(r >> 3))),
                origin: Some(format!(
                    "http://{}",
                    junk(r >> 5).replace([' ', ';', ','], "")
                )),
                ..Hello::default()
            },
        };
        match Client::handshake(cluster.a(), hello).await {
            Handshake::Refused(m) => {
                assert!(
                    ["unauthorized", "forbidden_origin"].contains(&m.as_str()),
                    "case {case}: {m}"
                )
            }
            Handshake::Connected(_) => panic!("case {case}: forged credentials accepted"),
        }
    }
    // The genuine session still works.
    let client = Client::connect(cluster.a(), &user).await;
    assert_eq!(send(&client, "general", "fine").await["ok"], true);
    client.disconnect().await;
    cluster.finish().await;
}
