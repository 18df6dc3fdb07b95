//! A streaming read replica (`DATABASE_READ_URL`): history and `messages.sync` are served by it
//! while it is current, by the primary while it is behind (a client never misses an acked
//! message), and by the primary when it is away. Runs against the primary and replica pair
//! `scripts/test.sh` starts (REPLICA_TEST_PRIMARY_URL, REPLICA_TEST_REPLICA_URL).

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;

fn pair() -> (String, String) {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} names a Postgres server for this test (scripts/test.sh starts a primary and its streaming replica)")
        })
    };
    (
        var("REPLICA_TEST_PRIMARY_URL"),
        var("REPLICA_TEST_REPLICA_URL"),
    )
}

/// `url` (an admin URL) with the database `db`.
fn on_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database in the URL");
    format!("{base}/{db}")
}

async fn texts(cluster: &Cluster, user: &User) -> Vec<(i64, String)> {
    let (status, page) = cluster
        .get(cluster.b(), "/api/channels/general/messages", user)
        .await;
    assert_eq!(status, 200, "{page}");
    page.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn replica_count(replica: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(replica)
        .await
        .expect("count on the replica")
}

/// Two instances reading from the replica pair, a connection to the replica, and a user whose
/// five messages in `general` the replica has caught up with.
async fn five_messages_on_both() -> (Cluster, PgConnection, User, Client) {
    let (primary, replica) = pair();
    let cluster = Cluster::start_with_replica(&primary, &replica, &[]).await;
    let db = cluster
        .db
        .connect_options()
        .get_database()
        .unwrap()
        .to_owned();
    let mut standby = PgConnection::connect(&on_database(&replica, &db))
        .await
        .expect("the replica has the test database");
    let user = cluster.register(cluster.a(), "reader").await;
    let client = Client::connect(cluster.a(), &user).await;
    for i in 1..=5 {
        assert_eq!(send(&client, "general", &format!("m{i}")).await["ok"], true);
    }
    // The replica catches up.
    for _ in 0..100 {
        if replica_count(&mut standby).await == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(replica_count(&mut standby).await, 5);
    (cluster, standby, user, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_use_the_replica_unless_it_is_behind() {
    let (cluster, mut standby, user, client) = five_messages_on_both().await;

    // Replay paused; a change made on the primary alone (not through banter, so no seq moves)
    // is not seen: the read was served by the replica.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut standby)
        .await
        .expect("pause replay");
    sqlx::query("UPDATE messages SET text = 'only on the primary' WHERE seq = 1")
        .execute(&cluster.db)
        .await
        .unwrap();
    let served = texts(&cluster, &user).await;
    assert_eq!(served.len(), 5);
    assert_eq!(
        served[0],
        (1, "m1".to_owned()),
        "history came from the replica"
    );

    // A message acked while the replica is behind: history and sync have it at once (from the
    // primary), though the replica does not.
    let ack = send(&client, "general", "m6").await;
    assert_eq!(ack["message"]["seq"], 6, "{ack}");
    let served = texts(&cluster, &user).await;
    assert_eq!(served.last(), Some(&(6, "m6".to_owned())), "{served:?}");
    assert_eq!(
        served[0].1, "only on the primary",
        "history came from the primary"
    );
    let synced = client
        .ack(
            "messages.sync",
            json!({"channel": "general", "after_seq": 5}),
        )
        .await;
    let seqs: Vec<i64> = synced["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m: &Value| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, vec![6], "{synced}");
    assert_eq!(
        replica_count(&mut standby).await,
        5,
        "the replica was behind"
    );

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut standby)
        .await
        .expect("resume replay");
    standby.close().await.ok();
    client.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_the_primary_when_the_replica_is_away() {
    // Nothing listens on port 9.
    let cluster = Cluster::start(&[
        "--database-read-url",
        "postgres://postgres@127.0.0.1:9/nowhere",
    ])
    .await;
    let user = cluster.register(cluster.a(), "reader").await;
    let client = Client::connect(cluster.a(), &user).await;
    assert_eq!(send(&client, "general", "still here").await["ok"], true);
    assert_eq!(
        texts(&cluster, &user).await,
        vec![(1, "still here".to_owned())]
    );
    let (status, channels) = cluster.get(cluster.b(), "/api/channels", &user).await;
    assert_eq!(status, 200, "{channels}");
    let synced = client
        .ack(
            "messages.sync",
            json!({"channel": "general", "after_seq": 0}),
        )
        .await;
    assert_eq!(synced["messages"][0]["text"], "still here", "{synced}");
    client.disconnect().await;
    cluster.finish().await;
}

/// Retention removed old messages on the primary while the replica's replay is behind: reads
/// go to the primary, so no removed message shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_behind_a_retention_pass_shows_no_removed_message() {
    let (cluster, mut standby, user, client) = five_messages_on_both().await;

    // What a retention pass does to a channel (first_seq raised, older rows gone), on the
    // primary alone: the replica's replay is paused.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&mut standby)
        .await
        .expect("pause replay");
    let mut tx = cluster.db.begin().await.unwrap();
    sqlx::query("UPDATE channels SET first_seq = 4 WHERE name = 'general'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM messages WHERE seq < 4")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let served: Vec<i64> = texts(&cluster, &user)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(served, vec![4, 5], "history showed removed messages");
    let synced = client
        .ack(
            "messages.sync",
            json!({"channel": "general", "after_seq": 0}),
        )
        .await;
    assert_eq!(synced["first_seq"], 4, "{synced}");
    assert_eq!(synced["messages"][0]["seq"], 4, "{synced}");
    assert_eq!(
        replica_count(&mut standby).await,
        5,
        "the replica was behind"
    );

    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&mut standby)
        .await
        .expect("resume replay");
    standby.close().await.ok();
    client.disconnect().await;
    cluster.finish().await;
}
