//! Attachments: SocketChat's multipart upload and the presigned (signed-URL) upload with local
//! storage, who may read a stored file, how it is served, and the limits.

use std::io::Cursor;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, 200])
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

/// A stored file as `user` (or nobody) gets it: status, headers, body.
pub(crate) async fn fetch(
    cluster: &Cluster,
    on: &Instance,
    path: &str,
    user: Option<&User>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = cluster.http.get(format!("{}{path}", on.url()));
    if let Some(user) = user {
        req = req.header("cookie", user.cookie());
    }
    let resp = req.send().await.expect("get file");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.expect("body").to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn send_file(client: &Client, channel: &str, text: &str, file: Value) -> Value {
    client
        .ack(
            "message.send",
            json!({ "channel": channel, "text": text, "client_message_id": Uuid::new_v4(), "file": file }),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_becomes_a_file_another_user_opens() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let ben = cluster.register(cluster.b(), "ben").await;
    let picture = png(800, 400);

    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &ann,
        "sunset.png",
        "image/png",
        picture.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["filename"], "sunset.png");
    assert_eq!(body["type"], "image/png");
    assert_eq!(
        (body["width"].as_i64(), body["height"].as_i64()),
        (Some(800), Some(400))
    );
    let url = body["url"].as_str().expect("url").to_owned();
    assert!(url.starts_with("/uploads/"), "{url}");
    // The key is banter's, never the client's file name.
    assert!(!url.contains("sunset"));

    let sender = Client::connect(cluster.a(), &ann).await;
    let reader = Client::connect(cluster.b(), &ben).await;
    // SocketChat sends the answer's url with the name and type.
    let ack = send_file(
        &sender,
        "general",
        "look",
        json!({"url": url, "name": "sunset.png", "type": "image/png"}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let file = &ack["message"]["file"];
    assert_eq!(file["size"], picture.len());
    assert_eq!(file["thumbnail"], format!("{url}/thumbnail"));
    let live = reader
        .wait_for("message.new", |m| m["text"] == "look")
        .await;
    assert_eq!(live["file"], *file);

    // History carries the same file; the other user opens it on the other instance.
    let (status, history) = cluster
        .get(cluster.b(), "/api/channels/general/messages", &ben)
        .await;
    assert_eq!(status, 200);
    assert_eq!(history[0]["file"], *file);
    let (status, headers, bytes) = fetch(&cluster, cluster.b(), &url, Some(&ben)).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, picture);
    assert_eq!(header(&headers, "content-type"), "image/png");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert!(header(&headers, "content-security-policy").starts_with("sandbox"));
    assert!(header(&headers, "content-disposition").starts_with("inline"));
    let (status, headers, thumb) = fetch(
        &cluster,
        cluster.b(),
        &format!("{url}/thumbnail"),
        Some(&ben),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "image/jpeg");
    let thumb = image::load_from_memory(&thumb).expect("a thumbnail image");
    assert_eq!((thumb.width(), thumb.height()), (320, 160));
    // Nobody signed in gets nothing.
    assert_eq!(fetch(&cluster, cluster.b(), &url, None).await.0, 401);
    // An unknown key or a path that is no key is not found.
    assert_eq!(
        fetch(
            &cluster,
            cluster.b(),
            &format!("/uploads/{}", Uuid::now_v7()),
            Some(&ben)
        )
        .await
        .0,
        404
    );
    assert_eq!(
        fetch(
            &cluster,
            cluster.b(),
            "/uploads/..%2F..%2Fetc%2Fpasswd",
            Some(&ben)
        )
        .await
        .0,
        404
    );

    // Someone else's upload is not yours to send.
    let ack = send_file(
        &reader,
        "general",
        "mine now",
        json!({"url": url, "name": "x.png", "type": "image/png"}),
    )
    .await;
    assert_eq!(code(&ack), "invalid_payload", "{ack}");
    assert_eq!(ack["error"]["errors"][0]["field"], "file.url");
    // A link to elsewhere stays a link, without the stored extras.
    let ack = send_file(
        &reader,
        "general",
        "link",
        json!({"url": "https://example.com/a.pdf", "name": "a.pdf", "type": "application/pdf"}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        ack["message"]["file"],
        json!({"url": "https://example.com/a.pdf", "name": "a.pdf", "type": "application/pdf"})
    );

    sender.disconnect().await;
    reader.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_a_private_channel_is_for_its_members_only() {
    let cluster = Cluster::start(&[]).await;
    let owner = cluster.register(cluster.a(), "owner").await;
    let outsider = cluster.register(cluster.b(), "outsider").await;
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &owner,
            json!({"name": "vault", "password": "open-sesame"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &owner,
        "plan.txt",
        "text/plain",
        b"the plan\n".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = body["url"].as_str().expect("url").to_owned();

    let inside = Client::connect(cluster.a(), &owner).await;
    assert_eq!(inside.ack("channel.join", "vault".into()).await["ok"], true);
    let ack = send_file(
        &inside,
        "vault",
        "the plan",
        json!({"url": url, "name": "plan.txt", "type": "text/plain"}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Not a member: as if the file did not exist.
    assert_eq!(
        fetch(&cluster, cluster.b(), &url, Some(&outsider)).await.0,
        404
    );
    // The owner reads it; after joining with the password, so does the former outsider.
    assert_eq!(
        fetch(&cluster, cluster.b(), &url, Some(&owner)).await.0,
        200
    );
    let joiner = Client::connect(cluster.b(), &outsider).await;
    let ack = joiner
        .ack(
            "channel.join",
            json!({"channel": "vault", "password": "open-sesame"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, headers, bytes) = fetch(&cluster, cluster.b(), &url, Some(&outsider)).await;
    assert_eq!((status, bytes.as_slice()), (200, b"the plan\n".as_slice()));
    assert!(header(&headers, "content-disposition").starts_with("attachment"));

    inside.disconnect().await;
    joiner.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_html_file_is_plain_text_to_download() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let ben = cluster.register(cluster.b(), "ben").await;
    let page =
        b"<!doctype html><script>fetch('/api/auth/me').then(r=>r.text()).then(alert)</script>"
            .to_vec();
    for (name, kind) in [("evil.html", "text/html"), ("evil.svg", "image/svg+xml")] {
        let (status, body) = multipart(&cluster, cluster.a(), &ann, name, kind, page.clone()).await;
        assert_eq!(status, 200, "{body}");
        // What the bytes are, not what the client said.
        assert_eq!(body["type"], "text/plain; charset=utf-8");
        let url = body["url"].as_str().expect("url").to_owned();
        let sender = Client::connect(cluster.a(), &ann).await;
        let ack = send_file(
            &sender,
            "general",
            name,
            json!({"url": url, "name": name, "type": kind}),
        )
        .await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["message"]["file"]["type"], "text/plain; charset=utf-8");
        sender.disconnect().await;

        let (status, headers, bytes) = fetch(&cluster, cluster.b(), &url, Some(&ben)).await;
        assert_eq!(status, 200);
        assert_eq!(bytes, page);
        assert_eq!(
            header(&headers, "content-type"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert!(
            header(&headers, "content-security-policy").starts_with("sandbox"),
            "{headers:?}"
        );
        assert!(
            header(&headers, "content-disposition")
                .starts_with(&format!("attachment; filename=\"{name}\"")),
            "{headers:?}"
        );
    }
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_goes_to_its_signed_url_once() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let ben = cluster.register(cluster.b(), "ben").await;
    let notes = b"line one\nline two\n".to_vec();

    let (status, ticket) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "notes.txt", "type": "text/plain", "size": notes.len()}),
        )
        .await;
    assert_eq!(status, 201, "{ticket}");
    assert_eq!(ticket["upload"]["method"], "PUT");
    assert!(ticket["upload"]["expires_at"].is_string());
    let target = ticket["upload"]["url"].as_str().expect("url").to_owned();
    let file = ticket["file"].clone();
    assert_eq!(
        (file["name"].as_str(), file["size"].as_u64()),
        (Some("notes.txt"), Some(notes.len() as u64))
    );

    // Not sendable before its bytes arrive.
    let sender = Client::connect(cluster.a(), &ann).await;
    let ack = send_file(&sender, "general", "early", file.clone()).await;
    assert_eq!(code(&ack), "invalid_payload", "{ack}");

    // A tampered signature, another key: refused. A plain HTTP client with no session PUTs
    // the bytes to the signed URL (on the other instance: the URL is the credential).
    let tampered = format!("{}0", target);
    let put = |url: String, body: Vec<u8>| {
        let http = cluster.http.clone();
        let base = cluster.b().url();
        async move {
            let resp = http
                .put(format!("{base}{url}"))
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .await
                .expect("put");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(put(tampered, notes.clone()).await.0, 403);
    let other_key = target.replacen(
        &file["url"].as_str().unwrap()["/uploads/".len()..],
        &Uuid::now_v7().to_string(),
        1,
    );
    assert_eq!(put(other_key, notes.clone()).await.0, 403);
    let (status, stored) = put(target.clone(), notes.clone()).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["file"]["type"], "text/plain; charset=utf-8");
    assert_eq!(stored["file"]["url"], file["url"]);
    // Only that one object, once.
    assert_eq!(put(target.clone(), b"replaced".to_vec()).await.0, 409);

    let ack = send_file(&sender, "general", "notes", file.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let url = file["url"].as_str().unwrap();
    let (status, headers, bytes) = fetch(&cluster, cluster.b(), url, Some(&ben)).await;
    assert_eq!((status, bytes), (200, notes));
    assert!(header(&headers, "content-disposition").starts_with("attachment"));
    sender.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_have_a_size_limit_an_allowlist_a_rate_and_a_quota() {
    let cluster = Cluster::start(&[
        "--upload-max-bytes",
        "4000",
        "--upload-quota-bytes",
        "10000",
        "--uploads-per-user-per-hour",
        "5",
    ])
    .await;
    let ann = cluster.register(cluster.a(), "ann").await;
    // Refused before any byte is sent: too large (saying the limit), a type not allowed.
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "big.zip", "type": "application/zip", "size": 4001}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str(), body["max_bytes"].as_u64()),
        (413, Some("too_large"), Some(4000)),
        "{body}"
    );
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "setup.exe", "type": "application/x-msdownload", "size": 10}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_type")),
        "{body}"
    );
    let (status, body) = cluster
        .post(cluster.a(), "/api/uploads", &ann, json!({"name": "x"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_payload")),
        "{body}"
    );

    // The bytes decide: an executable named like a picture, a body over the limit.
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    let (status, body) = multipart(&cluster, cluster.a(), &ann, "cat.png", "image/png", exe).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_type")),
        "{body}"
    );
    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &ann,
        "big.txt",
        "text/plain",
        vec![b'a'; 4001],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    // Nothing of a refused file stays.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(rows, 0);

    // The quota: 10000 bytes in all.
    for _ in 0..2 {
        let (status, body) = multipart(
            &cluster,
            cluster.a(),
            &ann,
            "a.txt",
            "text/plain",
            vec![b'a'; 4000],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &ann,
        "a.txt",
        "text/plain",
        vec![b'a'; 2001],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );
    // Another user has a quota of their own.
    let ben = cluster.register(cluster.a(), "ben").await;
    let (status, _) = multipart(
        &cluster,
        cluster.a(),
        &ben,
        "b.txt",
        "text/plain",
        vec![b'b'; 100],
    )
    .await;
    assert_eq!(status, 200);

    // The hourly rate: five uploads counted when they started (the refused executable, the
    // file over the size limit, two stored, the quota refusal), then refused.
    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &ann,
        "d.txt",
        "text/plain",
        vec![b'd'; 10],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    cluster.finish().await;
}

/// The S3-compatible server `scripts/test.sh` starts (moto), and a fresh bucket on it.
async fn s3_bucket(http: &reqwest::Client) -> (String, String) {
    let endpoint = std::env::var("S3_TEST_ENDPOINT").expect(
        "S3_TEST_ENDPOINT names an S3-compatible server for this test (scripts/test.sh starts one)",
    );
    // Credentials for the storage (the server accepts any); the environment's win.
    for (name, value) in [
        ("AWS_ACCESS_KEY_ID", "banter-test"),
        ("AWS_SECRET_ACCESS_KEY", "banter-test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        if std::env::var_os(name).is_none() {
            std::env::set_var(name, value);
        }
    }
    let bucket = format!("banter-{}", Uuid::new_v4().simple());
    let resp = http
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(
        resp.status().is_success(),
        "create bucket: {}",
        resp.status()
    );
    (endpoint, bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_s3_upload_goes_straight_to_the_bucket() {
    let http = reqwest::Client::new();
    let (endpoint, bucket) = s3_bucket(&http).await;
    let cluster = Cluster::start(&[
        "--storage-url",
        &format!("s3://{bucket}/chat"),
        "--storage-endpoint",
        &endpoint,
    ])
    .await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let ben = cluster.register(cluster.b(), "ben").await;
    let picture = png(640, 480);

    let (status, ticket) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "photo.png", "type": "image/png", "size": picture.len()}),
        )
        .await;
    assert_eq!(status, 201, "{ticket}");
    let target = ticket["upload"]["url"].as_str().expect("url").to_owned();
    // A real presigned S3 URL: the bytes go to the bucket, not through banter.
    assert!(
        target.starts_with(&format!("{endpoint}/{bucket}/chat/uploads/")),
        "{target}"
    );
    assert!(target.contains("X-Amz-Signature="), "{target}");
    let file = ticket["file"].clone();

    // A plain HTTP client, no session, with the headers the answer gave.
    let mut put = http.put(&target).body(picture.clone());
    for (name, value) in ticket["upload"]["headers"].as_object().expect("headers") {
        put = put.header(name.as_str(), value.as_str().expect("header value"));
    }
    let resp = put.send().await.expect("presigned put");
    assert!(
        resp.status().is_success(),
        "presigned PUT: {}",
        resp.status()
    );

    // The first send that carries it checks the bytes (type, size, thumbnail).
    let sender = Client::connect(cluster.a(), &ann).await;
    let ack = send_file(&sender, "general", "from the bucket", file.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let stored = &ack["message"]["file"];
    assert_eq!(
        (stored["width"].as_i64(), stored["height"].as_i64()),
        (Some(640), Some(480))
    );
    assert_eq!(stored["type"], "image/png");

    // Another user opens it through banter, on the other instance.
    let url = file["url"].as_str().unwrap();
    let (status, headers, bytes) = fetch(&cluster, cluster.b(), url, Some(&ben)).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, picture);
    assert_eq!(header(&headers, "content-type"), "image/png");
    let (status, _, thumb) = fetch(
        &cluster,
        cluster.b(),
        &format!("{url}/thumbnail"),
        Some(&ben),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        image::load_from_memory(&thumb).expect("thumbnail").width(),
        320
    );

    // Bytes that are not what may be shared fail the send, and are removed from the bucket.
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".to_vec();
    let (status, ticket) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "doc.pdf", "type": "application/pdf", "size": exe.len()}),
        )
        .await;
    assert_eq!(status, 201, "{ticket}");
    let target = ticket["upload"]["url"].as_str().unwrap().to_owned();
    assert!(http
        .put(&target)
        .body(exe)
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let ack = send_file(&sender, "general", "not a pdf", ticket["file"].clone()).await;
    assert_eq!(code(&ack), "unsupported_type", "{ack}");
    let key = ticket["file"]["url"]
        .as_str()
        .unwrap()
        .trim_start_matches("/uploads/")
        .to_owned();
    let object = format!("{endpoint}/{bucket}/chat/uploads/{key}");
    assert_eq!(
        http.get(&object).send().await.unwrap().status(),
        404,
        "removed from the bucket"
    );

    sender.disconnect().await;
    cluster.finish().await;
}

/// `UPLOAD_ALLOWED_TYPES`: by default a video is shared (and downloaded, never shown inline);
/// an instance that allows only PNG refuses a PDF when it is announced and when its bytes come,
/// and says what it does take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_allowlist_is_a_setting_and_takes_video_by_default() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08free".to_vec();
    let (status, body) = multipart(&cluster, cluster.a(), &ann, "clip.mp4", "video/mp4", mp4).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "video/mp4");
    let url = body["url"].as_str().expect("url").to_owned();
    let (status, headers, _) = fetch(&cluster, cluster.b(), &url, Some(&ann)).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-disposition").starts_with("attachment"));
    assert!(header(&headers, "content-security-policy").contains("sandbox"));
    cluster.finish().await;

    let cluster = Cluster::start(&["--upload-allowed-types", "image/png"]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/uploads",
            &ann,
            json!({"name": "a.pdf", "type": "application/pdf", "size": 100}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_type"))
    );
    let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n".to_vec();
    let (status, body) =
        multipart(&cluster, cluster.a(), &ann, "a.pdf", "application/pdf", pdf).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_type")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("image/png")),
        "{body}"
    );
    let (status, body) = multipart(
        &cluster,
        cluster.a(),
        &ann,
        "dot.png",
        "image/png",
        png(8, 8),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    cluster.finish().await;
}
