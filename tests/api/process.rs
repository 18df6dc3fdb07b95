//! The `banter` binary itself: refusing to start without a secret, and a clean SIGTERM.

use serde_json::{json, Value};

use crate::helpers::*;

/// Runs `banter` with `env` (and no reachable Postgres or Redis, so it never gets past its
/// start-up checks) and returns its exit code and standard error.
fn start_refused(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
        .env_remove("JWT_SECRET")
        .env_remove("BANTER_DEV")
        .env_remove("INSTANCE_ID")
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .envs(env.iter().copied())
        .output()
        .expect("run banter");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn refuses_to_start_without_a_jwt_secret() {
    let (code, stderr) = start_refused(&[]);
    assert_eq!(code, Some(2));
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("JWT_SECRET") && stderr.contains("BANTER_DEV=1"),
        "{stderr}"
    );

    let (code, stderr) = start_refused(&[("JWT_SECRET", "too-short")]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("at least 32 bytes"));

    // The placeholder of .env.example, and secrets long enough but guessable.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    let placeholder = example
        .lines()
        .find_map(|l| l.strip_prefix("JWT_SECRET="))
        .expect("JWT_SECRET in .env.example")
        .to_owned();
    for secret in [placeholder, "a".repeat(64), "abcd1234".repeat(6)] {
        let (code, stderr) = start_refused(&[("JWT_SECRET", &secret)]);
        assert_eq!(code, Some(2), "{secret}");
        assert!(stderr.contains("JWT_SECRET"), "{secret}: {stderr}");
    }
}

#[test]
fn refuses_to_start_with_an_empty_instance_id() {
    let (code, stderr) = start_refused(&[("JWT_SECRET", SECRET), ("INSTANCE_ID", " ")]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("INSTANCE_ID"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_cleanly_and_exits() {
    let cluster = Cluster::start(&[]).await;
    let process = Instance::spawn_process(&cluster.process_env()).await;
    let watcher_user = cluster.guest("stays").await;
    let watcher = Client::connect(cluster.b(), &watcher_user).await;
    let leaving = cluster.guest("leaves").await;
    let client = Client::connect(&process, &leaving).await;
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == leaving.id.as_str() && e["status"] == "online"
        })
        .await;

    let status = process.terminate().await;
    assert!(status.success(), "clean exit, got {status}");
    // Offline is announced by the stopping instance itself (no reaper involved).
    watcher
        .wait_for("user.status", |e| {
            e["userId"] == leaving.id.as_str() && e["status"] == "offline"
        })
        .await;
    let (_, online) = cluster
        .get(cluster.b(), "/api/presence/online", &watcher_user)
        .await;
    let ids: Vec<&Value> = online
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["userId"])
        .collect();
    assert!(!ids.iter().any(|id| **id == leaving.id.as_str()));
    drop(client);
    watcher.disconnect().await;
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_while_a_live_instance_holds_its_id() {
    let cluster = Cluster::start(&[]).await;
    let mut env = cluster.process_env();
    env.push(("INSTANCE_ID", "twin".to_owned()));
    let live = Instance::spawn_process(&env).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let started = std::time::Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
            .env("BANTER_ADDR", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run banter")
    })
    .await
    .unwrap();
    println!("the twin gave up after {:?}", started.elapsed());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INSTANCE_ID"), "{stderr}");
    // The live one is untouched.
    assert_eq!(cluster.health(&live).await, 200);
    assert!(live.terminate().await.success());
    cluster.finish().await;
}

/// Floods that cost the server memory per request stay within a bound: password checks run
/// one per core (each takes 19 MiB while it runs), and the rest wait or are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_login_and_guessing_floods() {
    let cluster = Cluster::start(&[]).await;
    let mut env = cluster.process_env();
    env.push(("TRUSTED_PROXIES", "127.0.0.1/32".to_owned()));
    let server = Instance::spawn_process(&env).await;
    let owner = cluster.guest("vaulter").await;
    let (status, _) = cluster
        .post(
            &server,
            "/api/channels",
            &owner,
            json!({ "name": "vault", "password": "vault-pass" }),
        )
        .await;
    assert_eq!(status, 201);
    let (start_kib, _) = server.memory_kib();

    // 200 concurrent logins, each from its own address (so no per-address limit stops them
    // before the hash): every one needs a password check.
    let logins = (0..200).map(|n| {
        cluster
            .http
            .post(format!("{}/api/auth/login", server.url()))
            .header(
                "x-forwarded-for",
                format!("198.51.{}.{}", n / 200, n % 200 + 1),
            )
            .json(&json!({ "username": format!("nobody{n}"), "password": "guess-guess" }))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(logins)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let shed = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + shed, 200, "{statuses:?}");
    let (_, login_peak_kib) = server.memory_kib();

    // 20 users guessing the channel password at once, ten guesses each.
    let mut guessers = Vec::new();
    for n in 0..20 {
        let user = cluster.guest(&format!("guesser{n}")).await;
        guessers.push(Client::connect(&server, &user).await);
    }
    let guesses = guessers.iter().map(|c| async move {
        for k in 0..10 {
            let ack = c
                .ack(
                    "channel.join",
                    json!({ "channel": "vault", "password": format!("g{k}") }),
                )
                .await;
            assert!(matches!(code(&ack), "forbidden" | "rate_limited"), "{ack}");
        }
    });
    futures_util::future::join_all(guesses).await;
    let (end_kib, peak_kib) = server.memory_kib();
    println!(
        "RSS {start_kib} KiB before; peak {login_peak_kib} KiB after 200 concurrent logins \
         ({checked} checked, {shed} shed after waiting); peak {peak_kib} KiB, now {end_kib} KiB \
         after 200 concurrent channel-password guesses"
    );
    // Two 19 MiB hashes at once on this machine, plus allocator slack: far from 200 × 19 MiB.
    let bound_kib = 160 * 1024;
    assert!(
        peak_kib < start_kib + bound_kib,
        "peak {peak_kib} KiB from {start_kib} KiB"
    );
    for c in guessers {
        c.disconnect().await;
    }
    assert!(server.terminate().await.success());
    cluster.finish().await;
}
