//! Retention: a channel keeps its newest messages (or its recent ones), enforced while people
//! are sending, with history and `messages.sync` saying where history begins, and the stored
//! files of removed messages removed too.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::*;
use crate::uploads::fetch;

/// The seqs of a history page and its `X-First-Seq`.
async fn history(cluster: &Cluster, on: &Instance, user: &User, channel: &str) -> (Vec<i64>, i64) {
    let resp = cluster
        .http
        .get(format!(
            "{}/api/channels/{channel}/messages?limit=200",
            on.url()
        ))
        .header("cookie", user.cookie())
        .send()
        .await
        .expect("history");
    assert_eq!(resp.status(), 200);
    let first: i64 = resp.headers()["x-first-seq"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let page: Vec<Value> = resp.json().await.expect("json");
    (
        page.iter().map(|m| m["seq"].as_i64().unwrap()).collect(),
        first,
    )
}

async fn upload_text(cluster: &Cluster, user: &User, text: &str) -> String {
    let part = reqwest::multipart::Part::bytes(text.as_bytes().to_vec())
        .file_name("note.txt")
        .mime_str("text/plain")
        .unwrap();
    let resp = cluster
        .http
        .post(format!("{}/api/upload/upload", cluster.a().url()))
        .header("cookie", user.cookie())
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_keeps_its_newest_messages_under_live_traffic() {
    let cluster = Cluster::start(&[
        "--retention-interval-secs",
        "1",
        "--rate-limit-messages",
        "1000",
    ])
    .await;
    let owner = cluster.register(cluster.a(), "owner").await;
    let other = cluster.register(cluster.b(), "other").await;
    // Settings are checked; only the creator changes them.
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &owner,
            json!({"name": "brief", "retention_max_messages": 0}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "retention_max_messages");
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &owner,
            json!({"name": "brief", "retention_max_messages": 100}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (
            body["retention_max_messages"].as_i64(),
            body["first_seq"].as_i64()
        ),
        (Some(100), Some(1))
    );
    let patch = |user: &User, body: Value| {
        let req = cluster
            .http
            .patch(format!("{}/api/channels/brief", cluster.b().url()))
            .header("cookie", user.cookie())
            .json(&body);
        async move {
            let resp = req.send().await.expect("patch");
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(
        patch(&other, json!({"retention_max_messages": 1})).await.0,
        403
    );

    // Two people send 30 messages each into the channel, and 30 into general, while
    // retention runs every second.
    let writer = Client::connect(cluster.a(), &owner).await;
    let second = Client::connect(cluster.b(), &other).await;
    assert_eq!(writer.ack("channel.join", "brief".into()).await["ok"], true);
    assert_eq!(second.ack("channel.join", "brief".into()).await["ok"], true);
    let keeper = cluster.register(cluster.a(), "keeper").await;
    let general = Client::connect(cluster.a(), &keeper).await;
    // The oldest message carries a file.
    let url = upload_text(&cluster, &owner, "old news").await;
    let ack = writer
        .ack(
            "message.send",
            json!({"channel": "brief", "text": "with file", "client_message_id": Uuid::new_v4(),
            "file": {"url": url, "name": "note.txt", "type": "text/plain"}}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, body) = patch(&owner, json!({"retention_max_messages": 10})).await;
    assert_eq!(
        (status, body["retention_max_messages"].as_i64()),
        (200, Some(10)),
        "{body}"
    );
    let mut acked = Vec::new();
    for i in 0..30 {
        for (client, who) in [(&writer, "w"), (&second, "s")] {
            let ack = send(client, "brief", &format!("{who}{i}")).await;
            assert_eq!(ack["ok"], true, "a send during retention: {ack}");
            acked.push(ack["message"]["seq"].as_i64().unwrap());
        }
        assert_eq!(
            send(&general, "general", &format!("g{i}")).await["ok"],
            true
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Every send was stored in order, none lost while older ones were removed.
    assert_eq!(acked, (2..=61).collect::<Vec<_>>());

    // Within a few passes: exactly the ten newest are kept, history says where it begins.
    let mut kept = (Vec::new(), 0);
    for _ in 0..50 {
        kept = history(&cluster, cluster.b(), &other, "brief").await;
        if kept.1 == 52 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kept, ((52..=61).collect::<Vec<_>>(), 52));
    // first_seq is raised before the rows, the files and the counters go: wait for the pass
    // to finish (its last step is the metric).
    let removed_total = || async {
        cluster
            .metric(cluster.a(), "banter_retention_removed_messages_total")
            .await
            + cluster
                .metric(cluster.b(), "banter_retention_removed_messages_total")
                .await
    };
    for _ in 0..50 {
        if removed_total().await >= 51.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM messages m JOIN channels c ON c.id = m.channel_id WHERE c.name = 'brief'")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(rows, 10);
    // The passes of both instances together removed each message once.
    assert_eq!(removed_total().await, 51.0);
    // A channel without limits keeps everything.
    let (general_seqs, general_first) = history(&cluster, cluster.a(), &keeper, "general").await;
    assert_eq!((general_seqs.len(), general_first), (30, 1));

    // messages.sync from before the cut starts at the cut and says so.
    let ack = second
        .ack("messages.sync", json!({"channel": "brief", "after_seq": 0}))
        .await;
    assert_eq!(ack["first_seq"], 52, "{ack}");
    let synced: Vec<i64> = ack["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(synced, (52..=61).collect::<Vec<_>>());
    // The channel list and a join show it too.
    let (_, channels) = cluster.get(cluster.a(), "/api/channels", &other).await;
    let brief = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "brief")
        .unwrap()
        .clone();
    assert_eq!(brief["first_seq"], 52);

    // The removed message's file is gone: not served, not stored.
    assert_eq!(
        cluster
            .http
            .get(format!("{}{url}", cluster.a().url()))
            .header("cookie", other.cookie())
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let uploads: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(uploads, 0);
    let key = url.trim_start_matches("/uploads/");
    assert!(
        !cluster.storage.join("uploads").join(key).exists(),
        "the object is deleted"
    );

    // A file that a kept message also carries stays when an older message with it goes.
    let shared = upload_text(&cluster, &owner, "still wanted").await;
    let file = json!({"url": shared, "name": "note.txt", "type": "text/plain"});
    let with_file = |text: &str| json!({"channel": "brief", "text": text, "client_message_id": Uuid::new_v4(), "file": file});
    assert_eq!(
        writer.ack("message.send", with_file("first")).await["ok"],
        true
    );
    for i in 0..10 {
        assert_eq!(
            send(&writer, "brief", &format!("more{i}")).await["ok"],
            true
        );
    }
    assert_eq!(
        writer.ack("message.send", with_file("again")).await["ok"],
        true
    );
    // seqs 62..=73: 62 (with the file) and 63 go, 64..=73 (the last with the file) stay.
    // (A pass may run while these are sent: wait for the state, not for a count.)
    let mut kept = (Vec::new(), 0);
    for _ in 0..50 {
        kept = history(&cluster, cluster.b(), &other, "brief").await;
        if kept.1 == 64 && removed_total().await >= 63.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kept, ((64..=73).collect::<Vec<_>>(), 64));
    let (status, _, bytes) = fetch(&cluster, cluster.a(), &shared, Some(&other)).await;
    assert_eq!(
        (status, bytes.as_slice()),
        (200, b"still wanted".as_slice())
    );

    // An upload never sent goes after a day (its clock set back here), row and object.
    let unsent = upload_text(&cluster, &owner, "never sent").await;
    let unsent_key = unsent.trim_start_matches("/uploads/").to_owned();
    sqlx::query("UPDATE uploads SET created_at = now() - interval '25 hours' WHERE key = $1::uuid")
        .bind(&unsent_key)
        .execute(&cluster.db)
        .await
        .unwrap();
    let mut gone = false;
    for _ in 0..50 {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads WHERE key = $1::uuid")
            .bind(&unsent_key)
            .fetch_one(&cluster.db)
            .await
            .unwrap();
        if rows == 0 && !cluster.storage.join("uploads").join(&unsent_key).exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "the unsent upload is removed with its object");
    assert_eq!(
        fetch(&cluster, cluster.a(), &shared, Some(&other)).await.0,
        200,
        "a sent one stays"
    );

    // The creator returns the channel to the server's setting (none): the field is gone.
    let (status, body) = patch(&owner, json!({"retention_max_messages": null})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("retention_max_messages").is_none(), "{body}");

    writer.disconnect().await;
    second.disconnect().await;
    general.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_older_than_the_age_limit_are_removed_by_the_lock_holder() {
    let cluster = Cluster::start(&[
        "--retention-interval-secs",
        "1",
        "--retention-max-age-secs",
        "12",
    ])
    .await;
    let user = cluster.register(cluster.a(), "user").await;
    let client = Client::connect(cluster.a(), &user).await;
    for i in 0..3 {
        assert_eq!(
            send(&client, "general", &format!("old{i}")).await["ok"],
            true
        );
    }
    // Another holder of the retention lock (as if another instance were running a pass):
    // neither instance removes anything meanwhile.
    let mut holder = cluster.db.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(banter::testing::LOCK_KEY)
        .execute(&mut *holder)
        .await
        .expect("lock");
    tokio::time::sleep(Duration::from_secs(13)).await;
    for i in 0..2 {
        assert_eq!(
            send(&client, "general", &format!("new{i}")).await["ok"],
            true
        );
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        history(&cluster, cluster.b(), &user, "general").await,
        (vec![1, 2, 3, 4, 5], 1),
        "nothing is removed while another holds the lock"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(banter::testing::LOCK_KEY)
        .execute(&mut *holder)
        .await
        .expect("unlock");
    drop(holder);

    // Released: the next pass removes exactly the messages over 12 s old.
    let mut kept = (Vec::new(), 0);
    for _ in 0..25 {
        kept = history(&cluster, cluster.b(), &user, "general").await;
        if kept.1 == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(kept, (vec![4, 5], 4));
    client.disconnect().await;
    cluster.finish().await;
}

/// With an instance-wide age limit, a month of messages all past it is dropped as a whole
/// partition (not deleted row by row), with its messages' idempotency keys; history then
/// begins after it, and the partitions of the coming months exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_months_past_the_age_limit_are_dropped_as_partitions() {
    let cluster = Cluster::start(&[
        "--retention-interval-secs",
        "1",
        "--retention-max-age-secs",
        "2592000",
    ])
    .await;
    let user = cluster.register(cluster.a(), "user").await;
    let client = Client::connect(cluster.a(), &user).await;
    for i in 0..5 {
        assert_eq!(send(&client, "general", &format!("m{i}")).await["ok"], true);
    }
    // The first three were sent 75 days ago (moved into that month's partition).
    let old: String = sqlx::query_scalar(
        "SELECT 'messages_' || to_char(date_trunc('month', (now() - interval '75 days')
                                       AT TIME ZONE 'UTC'), '\"y\"YYYY\"m\"MM')",
    )
    .fetch_one(&cluster.db)
    .await
    .unwrap();
    sqlx::query("SELECT ensure_message_partitions(now() - interval '75 days', 2)")
        .execute(&cluster.db)
        .await
        .unwrap();
    for table in ["messages", "message_keys"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET created_at = created_at - interval '75 days'
             WHERE {} IN (SELECT id FROM messages WHERE seq <= 3)",
            if table == "messages" {
                "id"
            } else {
                "message_id"
            }
        )))
        .execute(&cluster.db)
        .await
        .unwrap();
    }
    let in_old: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {old}")))
            .fetch_one(&cluster.db)
            .await
            .unwrap();
    assert_eq!(in_old, 3, "the old messages sit in {old}");

    // The next pass drops that month whole.
    let mut gone = false;
    for _ in 0..50 {
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&old)
            .fetch_one(&cluster.db)
            .await
            .unwrap();
        if exists.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(gone, "{old} was dropped");
    let leftover: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('messages_y2020m01')::text")
            .fetch_one(&cluster.db)
            .await
            .unwrap();
    assert_eq!(leftover, None, "the detached leftover was dropped too");
    assert_eq!(
        history(&cluster, cluster.b(), &user, "general").await,
        (vec![4, 5], 4)
    );
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM message_keys")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(keys, 2, "only the kept messages' keys are left");
    // The current month and the next two have their partitions.
    let missing: i32 = sqlx::query_scalar("SELECT ensure_message_partitions(now(), 2)")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(missing, 0);
    // Sends go on.
    assert_eq!(send(&client, "general", "after").await["message"]["seq"], 6);
    client.disconnect().await;
    cluster.finish().await;
}

/// History and sync read the newest month first; pages that reach into older months are
/// still whole (no retention here: nothing is removed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_sync_pages_span_months() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.register(cluster.a(), "user").await;
    let client = Client::connect(cluster.a(), &user).await;
    for i in 0..6 {
        assert_eq!(send(&client, "general", &format!("m{i}")).await["ok"], true);
    }
    // Seqs 1-3 were sent 75 days ago, in an older month's partition.
    sqlx::query("SELECT ensure_message_partitions(now() - interval '75 days', 2)")
        .execute(&cluster.db)
        .await
        .unwrap();
    sqlx::query("UPDATE messages SET created_at = created_at - interval '75 days' WHERE seq <= 3")
        .execute(&cluster.db)
        .await
        .unwrap();
    let page = |query: &'static str| {
        let (cluster, user) = (&cluster, &user);
        async move {
            let resp = cluster
                .http
                .get(format!(
                    "{}/api/channels/general/messages?{query}",
                    cluster.b().url()
                ))
                .header("cookie", user.cookie())
                .send()
                .await
                .expect("history");
            assert_eq!(resp.status(), 200);
            let page: Vec<Value> = resp.json().await.expect("json");
            page.iter()
                .map(|m| m["seq"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page("limit=50").await, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(
        page("limit=3").await,
        vec![4, 5, 6],
        "the newest month holds it"
    );
    assert_eq!(page("limit=4").await, vec![3, 4, 5, 6]);
    assert_eq!(page("before=5&limit=3").await, vec![2, 3, 4]);
    assert_eq!(page("before=3&limit=5").await, vec![1, 2]);
    assert_eq!(page("after=0&limit=2").await, vec![1, 2]);
    assert_eq!(page("after=2&limit=10").await, vec![3, 4, 5, 6]);
    assert_eq!(page("after=4&limit=10").await, vec![5, 6]);
    assert_eq!(page("after=6&limit=10").await, Vec::<i64>::new());
    let synced = client
        .ack(
            "messages.sync",
            json!({ "channel": "general", "after_seq": 1, "limit": 3 }),
        )
        .await;
    let seqs: Vec<i64> = synced["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    assert_eq!(synced["has_more"], true);
    client.disconnect().await;
    cluster.finish().await;
}

/// A message removed without its idempotency key (a removal interrupted between the two) does
/// not block its `client_message_id`: a send with it is stored again, as after any removal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_message_is_gone_does_not_block_its_id() {
    let cluster = Cluster::start(&[]).await;
    let user = cluster.register(cluster.a(), "user").await;
    let client = Client::connect(cluster.a(), &user).await;
    let id = Uuid::new_v4();
    let message = json!({"channel": "general", "text": "once", "client_message_id": id});
    let first = client.ack("message.send", message.clone()).await;
    assert_eq!(first["message"]["seq"], 1, "{first}");
    sqlx::query("DELETE FROM messages WHERE seq = 1")
        .execute(&cluster.db)
        .await
        .unwrap();
    let again = client.ack("message.send", message).await;
    assert_eq!(again["ok"], true, "{again}");
    assert_eq!(again["message"]["seq"], 2, "stored anew: {again}");
    assert_ne!(again["duplicate"], true, "{again}");
    client.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_takes_its_file_unless_another_kept_message_carries_it() {
    let cluster = Cluster::start(&[]).await;
    let ann = cluster.register(cluster.a(), "ann").await;
    let url = upload_text(&cluster, &ann, "kept twice").await;
    let client = Client::connect(cluster.a(), &ann).await;
    let mut ids = Vec::new();
    for text in ["first", "second"] {
        let ack = client
            .ack(
                "message.send",
                json!({"channel": "general", "text": text, "client_message_id": Uuid::new_v4(),
                       "file": {"url": url, "name": "note.txt", "type": "text/plain"}}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        ids.push(ack["message"]["id"].clone());
    }
    let stored = || std::fs::read_dir(cluster.storage.join("uploads")).map_or(0, |d| d.count());
    assert_eq!(stored(), 1);
    let delete = |id: &Value| client.ack("message.delete", json!({"channel": "general", "id": id}));
    // The other message still carries it.
    let ack = delete(&ids[0]).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(ack["message"].get("file").is_none(), "{ack}");
    let (status, _, body) = crate::uploads::fetch(&cluster, cluster.b(), &url, Some(&ann)).await;
    assert_eq!((status, body.as_slice()), (200, b"kept twice".as_slice()));
    // The last one takes it with it.
    assert_eq!(delete(&ids[1]).await["ok"], true);
    let (status, _, _) = crate::uploads::fetch(&cluster, cluster.b(), &url, Some(&ann)).await;
    assert_eq!(status, 404);
    assert_eq!(stored(), 0, "the stored object is removed");
    client.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_reactions_and_mentions_with_their_messages() {
    let cluster = Cluster::start(&["--retention-interval-secs", "1"]).await;
    let ann = cluster.guest("ann").await;
    cluster.guest("bob").await;
    let (status, body) = cluster
        .post(
            cluster.a(),
            "/api/channels",
            &ann,
            json!({"name": "brief", "retention_max_messages": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let client = Client::connect(cluster.a(), &ann).await;
    assert_eq!(client.ack("channel.join", json!("brief")).await["ok"], true);
    let count = |table: &'static str| {
        let db = cluster.db.clone();
        async move {
            // `table` is one of two names written below.
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} t JOIN channels c ON c.id = t.channel_id
                 WHERE c.name = 'brief' AND t.seq = 1"
            )))
            .fetch_one(&db)
            .await
            .expect("count")
        }
    };
    let first = send(&client, "brief", "hi @bob").await;
    assert_eq!(first["ok"], true, "{first}");
    let ack = client
        .ack(
            "reaction.add",
            json!({"channel": "brief", "id": first["message"]["id"], "emoji": "👍"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        (
            count("message_reactions").await,
            count("message_mentions").await
        ),
        (1, 1)
    );
    // A second message puts the first past the channel's limit.
    assert_eq!(send(&client, "brief", "two").await["ok"], true);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while count("message_reactions").await + count("message_mentions").await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "reactions and mentions of a removed message are still stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, list) = cluster.get(cluster.a(), "/api/channels", &ann).await;
    let brief = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "brief").cloned())
        .expect("listed");
    assert_eq!(brief["first_seq"], 2);
    client.disconnect().await;
    cluster.finish().await;
}
