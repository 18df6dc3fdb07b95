//! Who may read what: files of direct messages, unread counts of removed members, mentions
//! that an edit resolves. Every read of channel content asks one answer (`may_read` in
//! Postgres, `access` in the code); these tests hold the defects that answer closed.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;

/// `POST /api/upload/upload` of a small text file; its `/uploads/<key>` URL.
async fn upload_text(cluster: &Cluster, on: &Instance, user: &User, body: &[u8]) -> String {
    let (status, answer) =
        multipart(cluster, on, user, "note.txt", "text/plain", body.to_vec()).await;
    assert_eq!(status, 200, "{answer}");
    answer["url"].as_str().expect("url").to_owned()
}

async fn status_of(cluster: &Cluster, on: &Instance, path: &str, user: &User) -> u16 {
    cluster
        .http
        .get(format!("{}{path}", on.url()))
        .header("cookie", user.cookie())
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_messages_file_is_for_its_two_members_only() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.guest("alice").await;
    let bob = cluster.guest("bob").await;
    let carol = cluster.guest("carol").await;
    let (status, opened) = cluster
        .post(cluster.a(), "/api/dms", &alice, json!({"username": "bob"}))
        .await;
    assert_eq!(status, 200, "{opened}");
    let dm = opened["channel"]["name"].as_str().expect("name").to_owned();
    let url = upload_text(&cluster, cluster.a(), &alice, b"for bob only\n").await;
    let a = Client::connect(cluster.a(), &alice).await;
    assert_eq!(a.ack("channel.join", json!(dm)).await["ok"], true);
    let ack = a
        .ack(
            "message.send",
            json!({"channel": dm, "text": "here", "client_message_id": Uuid::new_v4(),
                   "file": {"url": url, "name": "note.txt", "type": "text/plain"}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    assert_eq!(status_of(&cluster, cluster.b(), &url, &bob).await, 200);
    assert_eq!(status_of(&cluster, cluster.b(), &url, &alice).await, 200);
    // A third party: as if the file did not exist, like the channel's history.
    assert_eq!(
        status_of(
            &cluster,
            cluster.b(),
            &format!("/api/channels/{dm}/messages"),
            &carol
        )
        .await,
        403
    );
    assert_eq!(status_of(&cluster, cluster.b(), &url, &carol).await, 404);
    assert_eq!(status_of(&cluster, cluster.a(), &url, &carol).await, 404);
    a.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_no_longer_sees_the_channels_unread_count_or_read_position() {
    let cluster = Cluster::start(&[]).await;
    let owner = cluster.guest("owner").await;
    let bob = cluster.guest("bob").await;
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &owner,
            json!({"name": "club", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 201);
    let o = Client::connect(cluster.a(), &owner).await;
    let b = Client::connect(cluster.b(), &bob).await;
    assert_eq!(o.ack("channel.join", json!("club")).await["ok"], true);
    let ack = b
        .ack(
            "channel.join",
            json!({"channel": "club", "password": "password123"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    send(&o, "club", "one").await;
    let club = |list: &Value| {
        list.as_array()
            .and_then(|l| l.iter().find(|c| c["name"] == "club").cloned())
            .expect("club is listed")
    };
    let (_, list) = cluster.get(cluster.b(), "/api/channels", &bob).await;
    assert_eq!(club(&list)["unread"], 1, "{list}");

    let (status, _) = cluster
        .call(
            reqwest::Method::DELETE,
            cluster.a(),
            "/api/channels/club/members/bob",
            &owner,
            None,
        )
        .await;
    assert_eq!(status, 200);
    b.wait_for("channel.removed", |_| true).await;
    send(&o, "club", "two").await;
    let (_, list) = cluster.get(cluster.b(), "/api/channels", &bob).await;
    let seen = club(&list);
    for field in ["read_seq", "unread", "unread_mentions"] {
        assert!(
            seen.get(field).is_none(),
            "{field} shown to a removed member: {seen}"
        );
    }
    let ack = b
        .ack("channel.read", json!({"channel": "club", "seq": 2}))
        .await;
    assert_eq!(code(&ack), "forbidden", "{ack}");
    o.disconnect().await;
    b.disconnect().await;
    cluster.finish().await;
}

/// An edit names a user who may read a public channel but not the private channel the message
/// is in, while its socket switches between the two: the mention is resolved in the message's
/// channel, so the outsider is never told. (The interleaving that leaked is narrower than the
/// gap between two client packets here; the rounds sweep the join's delay across it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_racing_a_join_never_mentions_an_outsider() {
    // Not a test of the budget: 50 rounds of joins and edits at once would be past it.
    let cluster = Cluster::start(&["--rate-limit-messages", "1000", "--event-budget", "0"]).await;
    let insider = cluster.guest("insider").await;
    let outsider = cluster.guest("outsider").await;
    let (status, _) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &insider,
            json!({"name": "vault", "password": "password123"}),
        )
        .await;
    assert_eq!(status, 201);
    let c = Client::connect(cluster.a(), &insider).await;
    let watcher = Client::connect(cluster.b(), &outsider).await;
    assert_eq!(c.ack("channel.join", json!("vault")).await["ok"], true);
    let m = send(&c, "vault", "the secret").await;
    let id = m["message"]["id"].clone();
    for round in 0..50 {
        assert_eq!(c.ack("channel.join", json!("general")).await["ok"], true);
        // Both in flight at once, the edit first: it names vault while the socket is still
        // in general, and finds it in vault when the change is made.
        let text = format!("@outsider the secret {round}");
        let (edit, join) = tokio::join!(
            c.ack(
                "message.edit",
                json!({"channel": "vault", "id": id, "text": text})
            ),
            async {
                // A little later each round (in microseconds: finer than tokio's timer).
                let pause = std::time::Duration::from_micros(40 * round);
                tokio::task::spawn_blocking(move || std::thread::sleep(pause))
                    .await
                    .expect("pause");
                c.ack("channel.join", json!("vault")).await
            }
        );
        assert_eq!(join["ok"], true, "{join}");
        assert!(
            edit["ok"] == true || code(&edit) == "not_in_channel",
            "{edit}"
        );
    }
    settle().await;
    let told = watcher.events("mention");
    assert!(
        told.is_empty(),
        "an outsider was told a private message: {told:?}"
    );
    c.disconnect().await;
    watcher.disconnect().await;
    cluster.finish().await;
}

/// Signs in a guest from client address `from` (through the trusted proxy); the status.
async fn guest_from(cluster: &Cluster, name: &str, from: &str) -> (u16, Option<User>) {
    let resp = cluster
        .http
        .post(format!("{}/api/auth/guest", cluster.a().url()))
        .header("x-forwarded-for", from)
        .json(&json!({ "username": name }))
        .send()
        .await
        .expect("guest");
    let status = resp.status().as_u16();
    if status == 201 {
        (status, Some(User::from_response(resp).await))
    } else {
        (status, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_user_is_not_back_at_once_as_a_guest_from_the_same_address() {
    let cluster =
        Cluster::start(&["--admin-users", "ann", "--trusted-proxies", "127.0.0.1/32"]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let (status, troll) = guest_from(&cluster, "troll", "203.0.113.7").await;
    assert_eq!(status, 201);
    assert!(troll.is_some());
    let (status, _) = cluster
        .call(
            reqwest::Method::POST,
            cluster.a(),
            "/api/admin/users/troll/ban",
            &ann,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = guest_from(&cluster, "troll2", "203.0.113.7").await;
    assert_eq!(status, 403, "a guest from the banned user's address");
    // Other addresses are not affected; a lifted ban lifts it.
    assert_eq!(
        guest_from(&cluster, "bystander", "198.51.100.9").await.0,
        201
    );
    let (status, _) = cluster
        .call(
            reqwest::Method::DELETE,
            cluster.a(),
            "/api/admin/users/troll/ban",
            &ann,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(guest_from(&cluster, "troll3", "203.0.113.7").await.0, 201);
    cluster.finish().await;
}
