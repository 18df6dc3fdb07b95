//! The `banter` binary itself: refusing to start without a secret, and a clean SIGTERM.

use serde_json::Value;

use crate::helpers::*;

#[test]
fn refuses_to_start_without_a_jwt_secret() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
        .env_remove("JWT_SECRET")
        .env_remove("BANTER_DEV")
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("run banter");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("JWT_SECRET") && stderr.contains("BANTER_DEV=1"),
        "{stderr}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
        .env("JWT_SECRET", "too-short")
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("run banter");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32 bytes"));

    // The placeholder of .env.example, and secrets long enough but guessable.
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"))
        .expect(".env.example");
    let placeholder = example
        .lines()
        .find_map(|l| l.strip_prefix("JWT_SECRET="))
        .expect("JWT_SECRET in .env.example")
        .to_owned();
    for secret in [placeholder, "a".repeat(64), "abcd1234".repeat(6)] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
            .env("JWT_SECRET", &secret)
            .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .output()
            .expect("run banter");
        assert_eq!(output.status.code(), Some(2), "{secret}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("JWT_SECRET"),
            "{secret}"
        );
    }
}

#[test]
fn refuses_to_start_with_an_empty_instance_id() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_banter"))
        .env("JWT_SECRET", SECRET)
        .env("INSTANCE_ID", " ")
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .expect("run banter");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("INSTANCE_ID"));
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
