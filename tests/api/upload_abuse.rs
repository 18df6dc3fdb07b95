//! Uploads under a hostile client: more bytes than announced, a JSON body far over the REST
//! limit, a signed URL kept past a ban, bodies that trickle to hold every turn, and an image
//! whose header promises a canvas of gigabytes.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The error code of a REST answer.
fn rest_code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or_default()
}

/// Announces an upload of `size` bytes; the signed URL its bytes go to.
async fn announce(cluster: &Cluster, user: &User, size: usize) -> String {
    let (status, ticket) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            user,
            json!({"name": "notes.txt", "type": "text/plain", "size": size}),
        )
        .await;
    assert_eq!(status, 201, "{ticket}");
    ticket["upload"]["url"].as_str().expect("url").to_owned()
}

async fn put(cluster: &Cluster, url: &str, body: Vec<u8>, chunked: bool) -> (u16, Value) {
    let req = cluster
        .http
        .put(format!("{}{url}", cluster.b().url()))
        .header("content-type", "text/plain");
    let req = if chunked {
        // No Content-Length: the bytes are counted as they come.
        let stream = futures_util::stream::iter(
            body.chunks(1000)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
                .collect::<Vec<_>>(),
        );
        req.body(reqwest::Body::wrap_stream(stream))
    } else {
        req.body(body)
    };
    let resp = req.send().await.expect("put");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_put_stores_at_most_the_announced_size() {
    let cluster = Cluster::start(&["--upload-quota-bytes", "3000"]).await;
    let ann = cluster.guest("ann").await;
    for chunked in [false, true] {
        let url = announce(&cluster, &ann, 1000).await;
        let (status, body) = put(&cluster, &url, vec![b'a'; 20_000], chunked).await;
        assert_eq!(status, 413, "chunked {chunked}: {body}");
        assert_eq!(rest_code(&body), "too_large", "{body}");
        assert_eq!(body["max_bytes"], 1000, "{body}");
        // Nothing was stored: the announced bytes still go through.
        let (status, body) = put(&cluster, &url, vec![b'a'; 1000], chunked).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["file"]["size"], 1000, "{body}");
    }
    // The quota counted what was announced and stored: 2,000 of 3,000 bytes.
    let url = announce(&cluster, &ann, 1000).await;
    let (status, body) = put(&cluster, &url, vec![b'a'; 1000], false).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "more.txt", "type": "text/plain", "size": 1}),
        )
        .await;
    assert_eq!(
        (status, rest_code(&body)),
        (403, "quota_exceeded"),
        "{body}"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_is_a_small_json_body_like_every_rest_request() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.guest("ann").await;
    // A valid announcement padded to 1 MiB: 16 times the REST limit.
    let mut body = br#"{"name": "notes.txt", "type": "text/plain", "size": 10}"#.to_vec();
    body.extend(std::iter::repeat_n(b' ', 1024 * 1024));
    let resp = cluster
        .http
        .post(format!("{}/api/uploads", cluster.a().url()))
        .header("cookie", ann.cookie())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    let answer: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_payload", "{answer}");
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_revokes_the_signed_upload_urls_already_given() {
    let cluster = Cluster::start(&["--admin-users", "ann"]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let bob = cluster.register(cluster.a(), "bob").await;
    let url = announce(&cluster, &bob, 10).await;
    let (status, _) = cluster
        .call(
            reqwest::Method::POST,
            cluster.a(),
            "/api/admin/users/bob/ban",
            &ann,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = put(&cluster, &url, b"0123456789".to_vec(), false).await;
    assert_eq!(status, 403, "{body}");
    cluster.finish().await;
}

/// Opens a multipart upload on a raw connection and sends all but the file's last bytes.
async fn held_upload(cluster: &Cluster, user: &User) -> TcpStream {
    let addr = cluster.a().url().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    let boundary = "xyzzy";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.txt\"\r\nContent-Type: text/plain\r\n\r\n"
    );
    let total = head.len() + 100_000 + format!("\r\n--{boundary}--\r\n").len();
    let request = format!(
        "POST /api/upload/upload HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\n\r\n{head}slow",
        user.cookie()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    stream
}

async fn small_upload(cluster: &Cluster, user: &User) -> (u16, Value) {
    multipart(
        cluster,
        cluster.a(),
        user,
        "quick.txt",
        "text/plain",
        b"quick\n".to_vec(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_trickling_bodies_cannot_hold_the_uploads_of_others() {
    let cluster = Cluster::start(&["--uploads-per-user-per-hour", "2"]).await;
    let mal = cluster.guest("mal").await;
    let ben = cluster.register(cluster.a(), "ben").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(held_upload(&cluster, &mal).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Mal's share is taken, at once; everyone else uploads as usual.
    let started = std::time::Instant::now();
    let (status, body) = small_upload(&cluster, &mal).await;
    assert_eq!((status, rest_code(&body)), (429, "rate_limited"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let (status, body) = small_upload(&cluster, &ben).await;
    assert_eq!(status, 200, "{body}");

    // A body that stops arriving is answered `too slowly` and gives its turn back.
    for stream in &mut held {
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a stalled upload is still held");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("too slowly"), "{answer}");
    }
    // Both counted toward the hourly cap when they started, though neither finished.
    let (status, body) = small_upload(&cluster, &mal).await;
    assert_eq!((status, rest_code(&body)), (429, "rate_limited"), "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap_or_default()
        .contains("try again"));
    cluster.finish().await;
}

/// A GIF of 35 bytes whose screen is 8000 × 8000 pixels.
const SCREEN_BOMB: &[u8] = b"GIF89a\x40\x1f\x40\x1f\x80\x00\x00\xff\xff\xff\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_over_the_pixel_cap_is_refused_before_it_is_decoded() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.guest("ann").await;
    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &ann,
        "tiny.gif",
        "image/gif",
        SCREEN_BOMB.to_vec(),
    )
    .await;
    assert_eq!((status, rest_code(&body)), (413, "too_large"), "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("8000×8000"),
        "{body}"
    );
    cluster.finish().await;
}
