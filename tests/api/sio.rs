//! A Socket.IO v5 client (Engine.IO v4) for the tests, over websocket or HTTP long-polling:
//! what the tests need of one, with every packet visible. Packets: `0` open, `1` close, `2`/`3`
//! ping/pong, `4` message, and inside a message the Socket.IO `0` CONNECT, `1` DISCONNECT, `2`
//! EVENT, `3` ACK and `4` CONNECT_ERROR, on the main namespace. Binary packets are not used by
//! banter and are not read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;

/// How to connect.
pub struct Options {
    /// `http://host:port` of the server.
    pub base: String,
    pub polling: bool,
    /// Headers of the opening request (and, on polling, of every request).
    pub headers: Vec<(String, String)>,
    /// The CONNECT packet's `auth` payload.
    pub auth: Option<Value>,
}

/// What the server sent, as the connection hands it on.
#[derive(Debug)]
pub enum Incoming {
    /// The CONNECT answer's data (`{sid, pid?}`).
    Connected(Value),
    /// The CONNECT_ERROR packet's data.
    ConnectError(Value),
    /// An event: its name and arguments.
    Event(String, Vec<Value>),
    /// The server disconnected the socket, or the transport ended.
    Closed,
}

/// A Socket.IO connection. Dropping it closes the transport.
pub struct Socket {
    out: mpsc::UnboundedSender<String>,
    acks: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>>,
    next_ack: AtomicU64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Opens the transport and sends CONNECT; what the server answers arrives on the receiver.
/// Fails only when the transport cannot be opened.
pub async fn connect(
    options: Options,
) -> Result<(Socket, mpsc::UnboundedReceiver<Incoming>), String> {
    let (out_tx, out_rx) = mpsc::unbounded_channel::<String>();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<Incoming>();
    let acks: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>> = Arc::default();
    let reader = Reader {
        incoming: in_tx,
        acks: acks.clone(),
    };
    let tasks = if options.polling {
        polling(&options, reader, out_rx).await?
    } else {
        websocket(&options, reader, out_rx).await?
    };
    let connect = match &options.auth {
        Some(auth) => format!("0{auth}"),
        None => "0".to_owned(),
    };
    let _ = out_tx.send(connect);
    Ok((
        Socket {
            out: out_tx,
            acks,
            next_ack: AtomicU64::new(0),
            tasks,
        },
        in_rx,
    ))
}

impl Socket {
    /// Emits `event` with `args`, without an ack.
    pub fn emit(&self, event: &str, args: Vec<Value>) {
        let _ = self.out.send(format!("2{}", frame(event, args)));
    }

    /// Emits `event` with `args`; the receiver gets the ack's arguments.
    pub fn emit_with_ack(&self, event: &str, args: Vec<Value>) -> oneshot::Receiver<Vec<Value>> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        let _ = self.out.send(format!("2{id}{}", frame(event, args)));
        rx
    }

    /// Sends DISCONNECT, then closes the transport.
    pub async fn disconnect(self) {
        let _ = self.out.send("1".to_owned());
        // Give the writer a moment to send it before the tasks are stopped.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn frame(event: &str, args: Vec<Value>) -> String {
    let mut all = vec![Value::String(event.to_owned())];
    all.extend(args);
    Value::Array(all).to_string()
}

/// Reads Engine.IO packets and hands on what they say.
struct Reader {
    incoming: mpsc::UnboundedSender<Incoming>,
    acks: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<Value>>>>>,
}

/// What a packet asks of the transport.
enum Next {
    Go,
    Pong,
    Stop,
}

impl Reader {
    fn engine_packet(&self, packet: &str) -> Next {
        match packet.as_bytes().first() {
            Some(b'2') => Next::Pong,
            Some(b'1') => {
                let _ = self.incoming.send(Incoming::Closed);
                Next::Stop
            }
            Some(b'4') => self.socket_packet(&packet[1..]),
            _ => Next::Go,
        }
    }

    fn socket_packet(&self, packet: &str) -> Next {
        let (kind, rest) = packet.split_at(packet.len().min(1));
        // The main namespace only: no `/nsp,` prefix.
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (id, data) = rest.split_at(digits);
        let value: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match kind {
            "0" => {
                let _ = self.incoming.send(Incoming::Connected(value));
            }
            "1" => {
                let _ = self.incoming.send(Incoming::Closed);
                return Next::Stop;
            }
            "2" => {
                if let Value::Array(mut args) = value {
                    if let Some(Value::String(name)) = (!args.is_empty()).then(|| args.remove(0)) {
                        let _ = self.incoming.send(Incoming::Event(name, args));
                    }
                }
            }
            "3" => {
                let waiting = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|id| self.acks.lock().unwrap().remove(&id));
                if let Some(tx) = waiting {
                    let args = match value {
                        Value::Array(args) => args,
                        other => vec![other],
                    };
                    let _ = tx.send(args);
                }
            }
            "4" => {
                let _ = self.incoming.send(Incoming::ConnectError(value));
            }
            _ => {}
        }
        Next::Go
    }

    /// Reads one Engine.IO packet (a ping asks `pongs` for a pong); false once the connection
    /// has ended.
    fn read(&self, packet: &str, pongs: &mpsc::UnboundedSender<()>) -> bool {
        match self.engine_packet(packet) {
            Next::Go => true,
            Next::Pong => {
                let _ = pongs.send(());
                true
            }
            Next::Stop => false,
        }
    }

    fn closed(&self) {
        let _ = self.incoming.send(Incoming::Closed);
    }
}

/// The next Engine.IO packet to send: a pong when one is due, else the next Socket.IO packet;
/// none once the socket is gone.
async fn next_to_send(
    out: &mut mpsc::UnboundedReceiver<String>,
    pongs: &mut mpsc::UnboundedReceiver<()>,
) -> Option<String> {
    tokio::select! {
        biased;
        pong = pongs.recv() => pong.map(|()| "3".to_owned()),
        packet = out.recv() => packet.map(|p| format!("4{p}")),
    }
}

fn path(base: &str, transport: &str, sid: Option<&str>) -> String {
    let mut url = format!("{base}/socket.io/?EIO=4&transport={transport}");
    if let Some(sid) = sid {
        url.push_str("&sid=");
        url.push_str(sid);
    }
    url
}

async fn websocket(
    options: &Options,
    reader: Reader,
    mut out: mpsc::UnboundedReceiver<String>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let url = path(&options.base.replacen("http", "ws", 1), "websocket", None);
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    for (name, value) in &options.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        request.headers_mut().insert(name, value);
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sink, mut stream) = ws.split();
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<()>();
    let read = tokio::spawn(async move {
        while let Some(frame) = stream.next().await {
            let text = match frame {
                Ok(Message::Text(t)) => t,
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            if !reader.read(&text, &pong_tx) {
                return;
            }
        }
        reader.closed();
    });
    let write = tokio::spawn(async move {
        while let Some(text) = next_to_send(&mut out, &mut pong_rx).await {
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    Ok(vec![read, write])
}

async fn polling(
    options: &Options,
    reader: Reader,
    mut out: mpsc::UnboundedReceiver<String>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &options.headers {
        let name =
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
        headers.insert(name, value);
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| e.to_string())?;
    let opened = http
        .get(path(&options.base, "polling", None))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !opened.status().is_success() {
        return Err(format!("polling handshake: {}", opened.status()));
    }
    let body = opened.text().await.map_err(|e| e.to_string())?;
    let open = body
        .split('\u{1e}')
        .next()
        .and_then(|p| p.strip_prefix('0'))
        .ok_or_else(|| format!("no open packet: {body}"))?;
    let sid = serde_json::from_str::<Value>(open)
        .ok()
        .and_then(|v| v["sid"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("no sid: {open}"))?;
    let url = path(&options.base, "polling", Some(&sid));
    let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<()>();
    let (get, get_url) = (http.clone(), url.clone());
    let read = tokio::spawn(async move {
        loop {
            let body = match get.get(&get_url).send().await {
                Ok(r) if r.status().is_success() => match r.text().await {
                    Ok(b) => b,
                    Err(_) => break,
                },
                _ => break,
            };
            if !body
                .split('\u{1e}')
                .all(|packet| reader.read(packet, &pong_tx))
            {
                return;
            }
        }
        reader.closed();
    });
    let write = tokio::spawn(async move {
        while let Some(text) = next_to_send(&mut out, &mut pong_rx).await {
            match http.post(&url).body(text).send().await {
                Ok(r) if r.status().is_success() => {}
                _ => break,
            }
        }
    });
    Ok(vec![read, write])
}
