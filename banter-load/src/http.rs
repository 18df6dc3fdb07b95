//! The HTTP part of the contract the load generator needs: guest sessions, channels, history.

use anyhow::{anyhow, bail, Context};
use reqwest::header::SET_COOKIE;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

/// Creates a guest named `username` on `target` and returns its session token.
pub async fn guest(http: &reqwest::Client, target: &str, username: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("http://{target}/api/auth/guest"))
        .json(&json!({ "username": username }))
        .send()
        .await
        .context("POST /api/auth/guest")?;
    if response.status() != StatusCode::CREATED {
        bail!("POST /api/auth/guest answered {}", response.status());
    }
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("token="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no session cookie in the guest response"))
}

/// Creates a public channel (an existing one is fine).
pub async fn channel(
    http: &reqwest::Client,
    target: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<()> {
    let response = http
        .post(format!("http://{target}/api/channels"))
        .header("cookie", format!("token={token}"))
        .json(&json!({ "name": name, "description": "load generator" }))
        .send()
        .await
        .context("POST /api/channels")?;
    match response.status() {
        StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
        s => bail!("POST /api/channels answered {s}"),
    }
}

/// The highest `seq` stored in a channel (0 when it is empty): how many messages it holds.
pub async fn last_seq(
    http: &reqwest::Client,
    target: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<i64> {
    let response = http
        .get(format!(
            "http://{target}/api/channels/{name}/messages?limit=1"
        ))
        .header("cookie", format!("token={token}"))
        .send()
        .await
        .context("GET history")?;
    if !response.status().is_success() {
        bail!("GET history answered {}", response.status());
    }
    let page: Vec<Value> = response.json().await?;
    Ok(page
        .last()
        .and_then(|m| m.get("seq"))
        .and_then(Value::as_i64)
        .unwrap_or(0))
}
