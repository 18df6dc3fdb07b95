//! The per-user send limit and its block, which outlives every instance.

use banter::testing::Verdict;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_limit_blocks_across_restarts() {
    // Without the hold, the send over the limit blocks at once.
    let mut cluster = Cluster::start(&["--rate-limit-hold-secs", "0"]).await;
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
    let cluster =
        Cluster::start(&["--rate-limit-messages", "3", "--rate-limit-hold-secs", "0"]).await;
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

/// A person pasting 25 lines with the default limits (20 per 10 s, held up to 10 s): the sends
/// over the limit are held for their turn, in order, not refused; all 25 are stored and reach
/// the channel in the order they were sent, and the sender is not blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_limit_is_held_in_order_not_lost() {
    let cluster = Cluster::start(&[]).await;
    let paster = cluster.guest("paster").await;
    let reader = cluster.guest("reader").await;
    let tab = Client::connect(cluster.a(), &paster).await;
    let watcher = Client::connect(cluster.b(), &reader).await;
    let (acks, took) = sent_apart(&tab, "line", 25, 40).await;
    // A slot frees every 500 ms: of the sends past the 20th, those sent before enough slots
    // freed must have been held.
    let freed = (took.as_millis() / 500) as i64;
    let mut seqs = Vec::new();
    for (n, ack) in acks.iter().enumerate() {
        assert_eq!(ack["ok"], true, "line {n}: {ack}");
        assert_eq!(ack["message"]["text"], format!("line {n}"));
        seqs.push(ack["message"]["seq"].as_i64().expect("seq"));
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "stored in order: {seqs:?}"
    );
    let delivered: Vec<String> = watcher
        .wait_for_count("message.new", 25)
        .await
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_owned))
        .collect();
    let sent: Vec<String> = (0..25).map(|n| format!("line {n}")).collect();
    assert_eq!(delivered, sent);
    assert!(tab.events("rate_limited").is_empty(), "not blocked");
    let held = cluster.metric(cluster.a(), "banter_sends_held_total").await as i64;
    assert!(
        held >= 5 - freed - 1 && held <= 5,
        "{held} held, {freed} slots freed while sending"
    );
    tab.disconnect().await;
    watcher.disconnect().await;
    cluster.finish().await;
}

/// A flooder is still stopped: with 10 sends per 10 s held up to 2 s, of 20 sends at once the
/// first 10 go at once, the next 2 are held (1 s and 2 s), the 13th would wait 3 s and starts
/// the block, and the rest are refused (one more goes through per second the sending took);
/// nothing refused is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_beyond_the_hold_is_blocked() {
    let cluster =
        Cluster::start(&["--rate-limit-messages", "10", "--rate-limit-hold-secs", "2"]).await;
    let flooder = cluster.guest("flooder").await;
    let tab = Client::connect(cluster.a(), &flooder).await;
    let (acks, took) = sent_apart(&tab, "flood", 20, 5).await;
    let freed = took.as_secs() as usize;
    let ok = acks.iter().filter(|a| a["ok"] == true).count();
    let limited = acks
        .iter()
        .filter(|a| a["ok"] == false && a["error"]["code"] == "rate_limited")
        .count();
    assert_eq!(ok + limited, 20, "{acks:?}");
    assert!(
        (12..=12 + freed).contains(&ok),
        "{ok} sent, {freed} s: {acks:?}"
    );
    tab.wait_for("rate_limited", |_| true).await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&cluster.db)
        .await
        .unwrap();
    assert_eq!(stored, ok as i64);
    tab.disconnect().await;
    cluster.finish().await;
}

/// Sends `count` messages `<prefix> <n>` to `general`, `gap_ms` apart, without waiting for
/// their acks; then their acks, and how long the sending took.
async fn sent_apart(
    client: &Client,
    prefix: &str,
    count: usize,
    gap_ms: u64,
) -> (Vec<Value>, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut acks = Vec::new();
    for n in 0..count {
        acks.push(client.ack_later(
            "message.send",
            serde_json::json!({
                "channel": "general",
                "text": format!("{prefix} {n}"),
                "client_message_id": uuid::Uuid::new_v4(),
            }),
        ));
        tokio::time::sleep(std::time::Duration::from_millis(gap_ms)).await;
    }
    let took = started.elapsed();
    (futures_util::future::join_all(acks).await, took)
}

/// A burst of exactly the limit goes through at once also when the window does not divide by
/// it (a slot of 3,333.3 ms): the schedule's arithmetic in fractions of a millisecond does not
/// push the last send of the burst over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_the_limit_passes_when_the_window_does_not_divide() {
    for (limit, window) in [(3, 10), (7, 10), (6, 1)] {
        let (limiter, _, _) = standalone_limiter(limit, window, 30).await;
        let checks = (0..limit).map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.check_send("burster", None).await.unwrap() })
        });
        for joined in futures_util::future::join_all(checks).await {
            assert_eq!(joined.unwrap(), Verdict::Allowed, "{limit} per {window} s");
        }
        let over = limiter.check_send("burster", None).await.unwrap();
        assert!(
            matches!(
                over,
                Verdict::Blocked {
                    new_block: true,
                    ..
                }
            ),
            "{over:?}"
        );
    }
}

/// A change to a message over the limit is held for its turn like a send: with 2 actions per
/// 4 s (a slot every 2 s) held up to 3 s, an edit right after two sends waits for its slot and
/// is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_over_the_limit_is_held_like_a_send() {
    let cluster = Cluster::start(&[
        "--rate-limit-messages",
        "2",
        "--rate-limit-window-secs",
        "4",
        "--rate-limit-hold-secs",
        "3",
    ])
    .await;
    let user = cluster.guest("editor").await;
    let tab = Client::connect(cluster.a(), &user).await;
    let first = send(&tab, "general", "one").await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(send(&tab, "general", "two").await["ok"], true);
    let edited = tab
        .ack(
            "message.edit",
            serde_json::json!({"channel": "general", "id": first["message"]["id"], "text": "one, edited"}),
        )
        .await;
    assert_eq!(edited["ok"], true, "{edited}");
    assert_eq!(edited["message"]["text"], "one, edited");
    assert!(cluster.metric(cluster.a(), "banter_sends_held_total").await >= 1.0);
    tab.disconnect().await;
    cluster.finish().await;
}
