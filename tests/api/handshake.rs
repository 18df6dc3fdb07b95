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
        &EncodingKey::from_secret(secret.as_bytes()),
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
