//! A minimal Engine.IO v4 / Socket.IO v5 client over websocket: just what the scenarios need,
//! cheap enough per frame that the load generator is not the bottleneck.
//!
//! Packets used: `0` open, `2`/`3` ping/pong, `40` connect, `44` connect error, `42` event
//! (`42<id>` with an ack id), `43<id>` ack.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::COOKIE;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;

/// How long a handshake (TCP, websocket, Engine.IO open, Socket.IO connect) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// A server packet, classified without parsing more JSON than needed.
pub enum Packet<'a> {
    Ping,
    /// `message.new`: the microsecond timestamp at the start of its text, if it has one.
    MessageNew(Option<u64>),
    /// An ack: its id and whether it says `"ok":true` (`duplicate` when it is a duplicate).
    Ack {
        id: u64,
        ok: bool,
        duplicate: bool,
    },
    /// Another event, by name.
    Event(&'a str),
    Disconnect,
    Other,
}

pub fn classify(frame: &str) -> Packet<'_> {
    let b = frame.as_bytes();
    match b {
        [b'2', ..] if b.len() == 1 => Packet::Ping,
        [b'4', b'2', rest @ ..] => {
            if rest.starts_with(b"[\"message.new\"") {
                Packet::MessageNew(stamp(frame))
            } else {
                let name = frame
                    .get(4..)
                    .and_then(|s| s.split('"').next())
                    .unwrap_or("?");
                Packet::Event(name)
            }
        }
        [b'4', b'3', ..] => {
            let digits = frame[2..].bytes().take_while(u8::is_ascii_digit).count();
            let id = frame[2..2 + digits].parse().unwrap_or(u64::MAX);
            let body = &frame[2 + digits..];
            Packet::Ack {
                id,
                ok: body.contains("\"ok\":true"),
                duplicate: body.contains("\"duplicate\":true"),
            }
        }
        [b'4', b'1', ..] | [b'1', ..] => Packet::Disconnect,
        _ => Packet::Other,
    }
}

/// The send timestamp a load-generator message carries at the start of its text.
fn stamp(frame: &str) -> Option<u64> {
    let at = frame.find("\"text\":\"")? + 8;
    let digits = frame[at..].bytes().take_while(u8::is_ascii_digit).count();
    frame[at..at + digits].parse().ok()
}

fn ws_config() -> WebSocketConfig {
    // Small buffers: tens of thousands of connections live in one process.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
}

/// Opens a Socket.IO connection to `target` from `source`, authenticated by the session
/// cookie `token`, and waits for the namespace CONNECT.
pub async fn connect(target: &str, source: Ipv4Addr, token: &str) -> anyhow::Result<Ws> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(target, source, token))
        .await
        .map_err(|_| anyhow!("handshake timed out"))?
}

async fn handshake(target: &str, source: Ipv4Addr, token: &str) -> anyhow::Result<Ws> {
    let addr: SocketAddr = tokio::net::lookup_host(target)
        .await?
        .next()
        .ok_or_else(|| anyhow!("{target} does not resolve"))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.into(), 0))?;
    let stream = socket.connect(addr).await.context("tcp connect")?;
    stream.set_nodelay(true)?;
    let mut request =
        format!("ws://{target}/socket.io/?EIO=4&transport=websocket").into_client_request()?;
    request
        .headers_mut()
        .insert(COOKIE, HeaderValue::from_str(&format!("token={token}"))?);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
            .await
            .context("websocket upgrade")?;
    let mut opened = false;
    while let Some(frame) = ws.next().await {
        let text = match frame? {
            Message::Text(t) => t,
            Message::Close(_) => bail!("closed during the handshake"),
            _ => continue,
        };
        if !opened {
            if !text.starts_with('0') {
                bail!("expected an Engine.IO open packet");
            }
            opened = true;
            ws.send(Message::text("40")).await?;
            continue;
        }
        if text.as_str() == "2" {
            ws.send(Message::text("3")).await?;
        } else if text.starts_with("40") {
            return Ok(ws);
        } else if let Some(err) = text.strip_prefix("44") {
            bail!("connect_error {err}");
        }
        // Events of the socket's rooms may precede CONNECT; they are not counted.
    }
    bail!("closed during the handshake")
}

/// The frame of a `message.send` with ack id `id`.
pub fn send_frame(id: u64, channel: &str, text: &str, client_message_id: &uuid::Uuid) -> String {
    format!(
        "42{id}[\"message.send\",{{\"channel\":\"{channel}\",\"text\":\"{text}\",\"client_message_id\":\"{client_message_id}\"}}]"
    )
}

/// The frame of a `channel.join` with ack id `id`.
pub fn join_frame(id: u64, channel: &str) -> String {
    format!("42{id}[\"channel.join\",{{\"channel\":\"{channel}\"}}]")
}

/// Sends `channel.join` and waits for its ack (answering pings meanwhile).
pub async fn join(ws: &mut Ws, channel: &str) -> anyhow::Result<()> {
    const ID: u64 = 0;
    ws.send(Message::text(join_frame(ID, channel))).await?;
    let wait = async {
        while let Some(frame) = ws.next().await {
            let Message::Text(text) = frame? else {
                continue;
            };
            match classify(&text) {
                Packet::Ping => ws.send(Message::text("3")).await?,
                Packet::Ack { id: ID, ok, .. } => {
                    if ok {
                        return Ok(());
                    }
                    bail!("channel.join refused: {text}");
                }
                Packet::Disconnect => bail!("disconnected while joining"),
                _ => {}
            }
        }
        bail!("closed while joining")
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, wait)
        .await
        .map_err(|_| anyhow!("channel.join timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_frames() {
        assert!(matches!(classify("2"), Packet::Ping));
        let new = r#"42["message.new",{"channel":"a","text":"1700000000000000 xx","seq":3}]"#;
        assert!(matches!(
            classify(new),
            Packet::MessageNew(Some(1_700_000_000_000_000))
        ));
        assert!(matches!(
            classify(r#"42["message.new",{"text":"hello"}]"#),
            Packet::MessageNew(None)
        ));
        assert!(matches!(
            classify(r#"4312[{"duplicate":false,"message":{},"ok":true}]"#),
            Packet::Ack {
                id: 12,
                ok: true,
                duplicate: false
            }
        ));
        assert!(matches!(
            classify(r#"437[{"error":{"code":"rate_limited"},"ok":false}]"#),
            Packet::Ack {
                id: 7,
                ok: false,
                ..
            }
        ));
        assert!(matches!(
            classify(r#"42["user.status",{}]"#),
            Packet::Event("user.status")
        ));
        assert!(matches!(classify("41"), Packet::Disconnect));
    }
}
