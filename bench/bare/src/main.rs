//! Bare socketioxide: what a chat relay costs on socketioxide alone, for `bench/run.sh`.
//!
//! It answers the part of banter's contract the load generator uses (guest sign-in, channel
//! creation, `channel.join`, `message.send` with its ack, `message.new` to the channel on every
//! instance through socketioxide-redis) and nothing else: no authentication, no storage, no
//! ordering across instances, no limits. Settings: `BANTER_ADDR` (127.0.0.1:4300), `REDIS_URL`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

static SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize)]
struct Join {
    channel: String,
}

#[derive(Deserialize)]
struct Send {
    channel: String,
    text: String,
    client_message_id: String,
}

type A = RedisAdapter<socketioxide::adapter::Emitter>;

async fn on_connect(socket: SocketRef<A>) {
    socket.on(
        "channel.join",
        async |s: SocketRef<A>, Data(join): Data<Join>, ack: AckSender<A>| {
            s.join(join.channel.clone());
            ack.send(&json!({"ok": true, "channel": join.channel})).ok();
        },
    );
    socket.on(
        "message.send",
        async |s: SocketRef<A>, Data(m): Data<Send>, ack: AckSender<A>| {
            let seq = SEQ.fetch_add(1, Ordering::Relaxed) + 1;
            let message = json!({
                "id": m.client_message_id,
                "channel": m.channel,
                "seq": seq,
                "text": m.text,
                "client_message_id": m.client_message_id,
            });
            ack.send(&json!({"ok": true, "message": &message})).ok();
            s.within(m.channel).emit("message.new", &message).await.ok();
        },
    );
}

async fn guest(Json(body): Json<Value>) -> impl IntoResponse {
    let name = body["username"].as_str().unwrap_or("guest").to_owned();
    (
        StatusCode::CREATED,
        [(
            header::SET_COOKIE,
            format!("token={name}; HttpOnly; Path=/"),
        )],
        Json(json!({"user": {"username": name}})),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("BANTER_ADDR").unwrap_or_else(|_| "127.0.0.1:4300".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let client = redis::Client::open(redis_url)?;
    let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
    let (layer, io) = SocketIo::builder().with_adapter::<A>(adapter).build_layer();
    io.ns("/", on_connect).await?;
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/api/auth/guest", post(guest))
        .route("/api/channels", post(|| async { StatusCode::CREATED }))
        .route(
            "/api/channels/{name}/messages",
            get(|| async { Json(json!([])) }),
        )
        .layer(layer);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        })
        .await?;
    Ok(())
}
