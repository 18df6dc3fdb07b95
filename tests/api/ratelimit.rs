//! The per-user send limit and its block, which outlives every instance.

use banter::testing::Verdict;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_blocks_across_restarts() {
    let mut cluster = Cluster::start(&[]).await;
    let user = cluster.guest("chatty").await;
    let tab_a = Client::connect(cluster.a(), &user).await;
    let tab_b = Client::connect(cluster.b(), &user).await;
    let mut last = Value::Null;
    for n in 0..20 {
        let on = if n % 2 == 0 { &tab_a } else { &tab_b };
        last = send(on, "general", &format!("n{n}")).await;
        assert_eq!(last["ok"], true, "message {n}: {last}");
    }
    let ack = send(&tab_a, "general", "one too many").await;
    assert_eq!(code(&ack), "rate_limited");
    let retry = ack["error"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        retry > 20_000 && retry <= 30_000,
        "blocked for about 30 s, got {retry}"
    );
    // Every socket of the user hears about the block, on both instances.
    for tab in [&tab_a, &tab_b] {
        let notice = tab.wait_for("rate_limited", |_| true).await;
        assert!(notice["retry_after_ms"].as_u64().unwrap() > 0);
        assert!(notice["until"].is_string());
    }
    // A retry of a stored message still gets its ack while blocked.
    let retry = tab_b
        .ack(
            "message.send",
            serde_json::json!({
                "channel": "general",
                "text": last["message"]["text"],
                "client_message_id": last["message"]["client_message_id"],
            }),
        )
        .await;
    assert_eq!(retry["ok"], true, "{retry}");
    assert_eq!(retry["duplicate"], true);
    assert_eq!(retry["message"]["id"], last["message"]["id"]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(stored, 20, "the refused message is not stored");
    tab_a.disconnect().await;
    tab_b.disconnect().await;

    // Restart every instance: the block holds.
    cluster.a.take().unwrap().stop().await;
    cluster.b.take().unwrap().stop().await;
    cluster.a = Some(cluster.instance().await);
    cluster.b = Some(cluster.instance().await);
    let again = Client::connect(cluster.b(), &user).await;
    let ack: Value = send(&again, "general", "after restart").await;
    assert_eq!(code(&ack), "rate_limited");
    // Another user is not affected.
    let other = cluster.guest("calm").await;
    let calm = Client::connect(cluster.a(), &other).await;
    assert_eq!(send(&calm, "general", "hello").await["ok"], true);
    again.disconnect().await;
    calm.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_toward_the_window_and_are_still_answered() {
    let cluster = Cluster::start(&["--rate-limit-messages", "3"]).await;
    let user = cluster.guest("retrier").await;
    let tab = Client::connect(cluster.a(), &user).await;
    let first = send(&tab, "general", "once").await;
    assert_eq!(first["ok"], true, "{first}");
    let retry = serde_json::json!({
        "channel": "general",
        "text": "once",
        "client_message_id": first["message"]["client_message_id"],
    });
    // Two retries: answered with the stored message, and counted (sends 2 and 3 of 3).
    for _ in 0..2 {
        let again = tab.ack("message.send", retry.clone()).await;
        assert_eq!(again["duplicate"], true, "{again}");
        assert_eq!(again["message"]["id"], first["message"]["id"]);
    }
    // The window is full: a new message is refused, and a retry is still answered.
    assert_eq!(code(&send(&tab, "general", "new").await), "rate_limited");
    let blocked_retry = tab.ack("message.send", retry).await;
    assert_eq!(blocked_retry["duplicate"], true, "{blocked_retry}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    tab.disconnect().await;
    cluster.finish().await;
}

/// Forgiving an attempt whose window already ended (its counter expired while the password
/// was being checked) leaves nothing behind: no counter without an expiry, and no credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgiving_an_expired_attempt_leaves_no_counter() {
    let (limiter, redis, prefix) = standalone_limiter(20, 10, 30).await;
    limiter
        .login_succeeded("someone", "192.0.2.1")
        .await
        .unwrap();
    limiter.channel_guess_succeeded("someone").await.unwrap();
    let left = keys_of(&redis, &prefix).await;
    assert!(left.is_empty(), "counters left behind: {left:?}");
}

/// Sends checked together (one script call for a batch) count one by one, in order: of many
/// concurrent sends of one user, exactly the limit goes through, the next one starts the block
/// and the rest are refused; another user in the same batches is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_counted_one_by_one() {
    let (limiter, _, _) = standalone_limiter(50, 60, 30).await;
    // 200 sends of the flooder and 40 of a neighbour (a guest), interleaved.
    let checks = (0..240).map(|i| {
        let limiter = limiter.clone();
        tokio::spawn(async move {
            let neighbour = i % 6 == 5;
            let user = if neighbour { "neighbour" } else { "flooder" };
            let guest = neighbour.then_some(("192.0.2.7", 1000));
            (user, limiter.check_send(user, guest).await.unwrap())
        })
    });
    let verdicts = futures_util::future::join_all(checks).await;
    let (mut allowed, mut blocks, mut refused) = (0, 0, 0);
    for joined in verdicts {
        match joined.unwrap() {
            ("flooder", Verdict::Allowed) => allowed += 1,
            (
                "flooder",
                Verdict::Blocked {
                    new_block: true, ..
                },
            ) => blocks += 1,
            ("flooder", Verdict::Blocked { .. }) => refused += 1,
            (_, v) => assert_eq!(v, Verdict::Allowed, "the neighbour was limited"),
        }
    }
    assert_eq!((allowed, blocks, refused), (50, 1, 149));
}
