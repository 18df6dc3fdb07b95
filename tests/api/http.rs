//! The REST API: accounts, sessions, channels, history and presence parameters, health.

use serde_json::{json, Value};

use crate::helpers::*;

async fn post_json(
    cluster: &Cluster,
    path: &str,
    body: Value,
) -> (u16, Value, Option<String>, reqwest::header::HeaderMap) {
    let resp = cluster
        .http
        .post(format!("{}{path}", cluster.a().url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("token="))
        .map(str::to_owned);
    (
        status,
        resp.json().await.unwrap_or(Value::Null),
        cookie,
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_sessions() {
    let cluster = Cluster::start(&[]).await;
    let (status, body, cookie, _) = post_json(
        &cluster,
        "/api/auth/register",
        json!({ "username": "Carol", "email": " carol@example.com ", "password": "password123" }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["user"]["username"], "Carol");
    assert_eq!(body["user"]["email"], "carol@example.com");
    let cookie = cookie.unwrap();
    for flag in ["HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=86400"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"));

    let (status, body, _, _) = post_json(
        &cluster,
        "/api/auth/register",
        json!({ "username": "carol", "email": "other@example.com", "password": "password123" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "usernames are unique case-insensitively"
    );
    let (status, body, _, _) = post_json(
        &cluster,
        "/api/auth/register",
        json!({ "username": "x", "email": "nope", "password": "short" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_payload"))
    );
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "email", "password"]);

    // Login by email (any case) and by username.
    for body in [
        json!({ "email": "CAROL@example.com", "password": "password123" }),
        json!({ "username": "carol", "password": "password123" }),
    ] {
        let (status, resp, cookie, _) = post_json(&cluster, "/api/auth/login", body).await;
        assert_eq!(status, 200, "{resp}");
        assert_eq!(resp["user"]["username"], "Carol");
        assert!(cookie.is_some());
    }
    let (status, body, _, _) = post_json(
        &cluster,
        "/api/auth/login",
        json!({ "username": "carol", "password": "wrong-password" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, body, _, _) = post_json(
        &cluster,
        "/api/auth/login",
        json!({ "username": "nobody", "password": "password123" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );

    // Guests: a generated name, no email.
    let (status, body, cookie, _) = post_json(&cluster, "/api/auth/guest", json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["user"]["username"]
        .as_str()
        .unwrap()
        .starts_with("guest-"));
    assert_eq!(body["user"]["email"], Value::Null);
    let guest_cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    let resp = cluster
        .http
        .get(format!("{}/api/auth/me", cluster.b().url()))
        .header("cookie", &guest_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["username"], body["user"]["username"]);
    // Guests cannot log in with a password.
    let (status, _, _, _) = post_json(
        &cluster,
        "/api/auth/login",
        json!({ "username": me["username"], "password": "password123" }),
    )
    .await;
    assert_eq!(status, 401);
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_throttled() {
    let cluster = Cluster::start(&[]).await;
    cluster.register(cluster.a(), "target").await;
    for _ in 0..10 {
        let (status, _, _, _) = post_json(
            &cluster,
            "/api/auth/login",
            json!({ "username": "target", "password": "guess-guess" }),
        )
        .await;
        assert_eq!(status, 401);
    }
    // Even the right password waits now.
    let (status, body, _, headers) = post_json(
        &cluster,
        "/api/auth/login",
        json!({ "username": "TARGET", "password": "password123" }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(headers.contains_key("retry-after"));
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_history_and_presence_parameters() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.guest("dana").await;

    let (status, list) = cluster.get(cluster.a(), "/api/channels", &user).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["name"], "general");
    assert_eq!(list[0]["private"], false);
    assert!(list[0]["createdAt"].is_string());
    let resp = cluster
        .http
        .get(format!("{}/api/channels", cluster.a().url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let (status, created) = cluster
        .post(
            cluster.b(),
            "/api/channels",
            &user,
            json!({ "name": " Rust-Talk ", "description": "all things rust" }),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "rust-talk");
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &user,
            json!({ "name": "rust-talk" }),
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));
    for bad in [
        json!({ "name": "bad name" }),
        json!({}),
        json!({ "name": "" }),
        json!({ "name": 5 }),
    ] {
        let (status, body) = cluster
            .post(cluster.a(), "/api/channels", &user, bad.clone())
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_payload")),
            "{bad}"
        );
    }

    for (query, expected) in [
        ("?before=5&after=1", 400),
        ("?limit=0", 400),
        ("?limit=201", 400),
        ("?before=abc", 400),
        ("?after=-1", 400),
        ("?limit=200", 200),
    ] {
        let (status, _) = cluster
            .get(
                cluster.a(),
                &format!("/api/channels/general/messages{query}"),
                &user,
            )
            .await;
        assert_eq!(status, expected, "{query}");
    }
    let (status, body) = cluster
        .get(cluster.a(), "/api/channels/missing/messages", &user)
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, _) = cluster
        .get(cluster.a(), "/api/presence/online?limit=0", &user)
        .await;
    assert_eq!(status, 400);
    let (status, _) = cluster
        .get(cluster.a(), "/api/presence/online?channel=missing", &user)
        .await;
    assert_eq!(status, 404);

    // A malformed body is an invalid_payload, never a crash or a plain-text error.
    let resp = cluster
        .http
        .post(format!("{}/api/channels", cluster.a().url()))
        .header("cookie", user.cookie())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "invalid_payload");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_headers_and_csrf() {
    let cluster = Cluster::start(&[]).await;
    let resp = cluster
        .http
        .get(format!("{}/health", cluster.a().url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({ "status": "ok" })
    );
    let resp = cluster
        .http
        .get(format!("{}/ready", cluster.b().url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // A cross-site POST riding on the cookie is refused.
    let user = cluster.guest("erin").await;
    let resp = cluster
        .http
        .post(format!("{}/api/channels", cluster.a().url()))
        .header("cookie", user.cookie())
        .header("origin", "https://evil.example")
        .json(&json!({ "name": "csrf" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "forbidden_origin"
    );
    // The allowed origin gets CORS with credentials.
    let resp = cluster
        .http
        .post(format!("{}/api/channels", cluster.a().url()))
        .header("cookie", user.cookie())
        .header("origin", GOOD_ORIGIN)
        .json(&json!({ "name": "fine" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["access-control-allow-origin"], GOOD_ORIGIN);
    assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
    // A page of history exposes where history begins; an upload's PUT may be preflighted.
    let resp = cluster
        .http
        .get(format!("{}/api/channels/fine/messages", cluster.a().url()))
        .header("cookie", user.cookie())
        .header("origin", GOOD_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-first-seq"], "1");
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-first-seq"), "{exposed}");
    let resp = cluster
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/uploads/x", cluster.a().url()),
        )
        .header("origin", GOOD_ORIGIN)
        .header("access-control-request-method", "PUT")
        .send()
        .await
        .unwrap();
    let allowed = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(allowed.contains("PUT"), "{allowed}");
    let resp = cluster
        .http
        .get(format!("{}/nope", cluster.a().url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");
    let resp = cluster
        .http
        .delete(format!("{}/api/channels", cluster.a().url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );
    cluster.finish().await;
}

/// Every error answer is JSON of the contract, also a rejection that is not banter's own: a
/// path that is not UTF-8, an Engine.IO polling body over the payload limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_json_of_the_contract() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.guest("ann").await;
    let json_answer = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        (status, kind, body)
    };
    let resp = cluster
        .http
        .get(format!(
            "{}/api/channels/%ff%fe/messages",
            cluster.a().url()
        ))
        .header("cookie", ann.cookie())
        .send()
        .await
        .expect("get");
    let (status, kind, body) = json_answer(resp).await;
    assert_eq!(status, 400);
    assert!(kind.starts_with("application/json"), "{kind}");
    assert_eq!(body["code"], "invalid_payload", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    let open = cluster
        .http
        .get(format!(
            "{}/socket.io/?EIO=4&transport=polling",
            cluster.a().url()
        ))
        .send()
        .await
        .expect("open")
        .text()
        .await
        .expect("open packet");
    let open: Value = serde_json::from_str(open.trim_start_matches('0')).expect("open json");
    let sid = open["sid"].as_str().expect("sid");
    let resp = cluster
        .http
        .post(format!(
            "{}/socket.io/?EIO=4&transport=polling&sid={sid}",
            cluster.a().url()
        ))
        .body(vec![b'4'; 3 * 1024 * 1024])
        .send()
        .await
        .expect("post");
    let (status, kind, body) = json_answer(resp).await;
    assert_eq!(status, 413);
    assert!(kind.starts_with("application/json"), "{kind}");
    assert_eq!(body["code"], "too_large", "{body}");
    cluster.finish().await;
}

/// A body refused before it was read ends its connection, and the answer says so
/// (`Connection: close`), so that a proxy does not send its next request on a connection banter
/// is closing (nginx answered that request 502); an answer to a request without a body keeps
/// the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_to_a_request_with_a_body_closes_the_connection() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.guest("ann").await;
    let padded = format!(
        "{{\"name\": \"a.txt\", \"type\": \"text/plain\", \"size\": 1000}}{}",
        " ".repeat(1024 * 1024)
    );
    let resp = cluster
        .http
        .post(format!("{}/api/uploads", cluster.a().url()))
        .header("cookie", ann.cookie())
        .header("content-type", "application/json")
        .body(padded)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let resp = cluster
        .http
        .get(format!(
            "{}/api/channels/no-such-channel/messages",
            cluster.a().url()
        ))
        .header("cookie", ann.cookie())
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
    assert!(resp.headers().get("connection").is_none());
    cluster.finish().await;
}

/// A body refused before it was read: banter closes with a linger (it shuts its side, then
/// reads and drops what the client still sends for a while), so a client (a proxy) that is
/// still sending the body can finish sending and then read the answer. Closed at once, the
/// unread bytes make the kernel reset the connection, the client's next write fails, and nginx
/// then gives up on the answer and reports 502 instead of banter's 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_body_refused_unread_reaches_a_client_still_sending_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.guest("ann").await;
    let addr = cluster.a().url().trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/uploads HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        ann.cookie(),
        8 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b' '; 64 * 1024];
    // More than the REST body limit: banter answers without reading the rest, and closes.
    for _ in 0..4 {
        tcp.write_all(&chunk).await.expect("body");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The client goes on sending, as a proxy does, before it reads the answer.
    for _ in 0..8 {
        if let Err(e) = tcp.write_all(&chunk).await {
            panic!("the connection was reset while the body was still being sent: {e}");
        }
    }
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.expect("the answer");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.1 413"),
        "{text:?}"
    );
    cluster.finish().await;
}
