//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt as _, TryFutureExt as _, future::OptionFuture};
use futures_util::{
    SinkExt, StreamExt, TryStreamExt,
    stream::{SplitSink, SplitStream},
};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket,
    body::ResponseBody,
    config::EngineIoConfig,
    engine::EngineIo,
    errors::Error,
    handler::EngineIoHandler,
    socket::{InternalRx, queued_len},
    transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);

    let ws_key = parts
        .headers
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();

    // Opening the connection runs boxed, so that the request and the handshake are freed once
    // it is open and do not widen the task for the connection's whole life.
    let opening = Box::pin(async move {
        let conn = hyper::upgrade::on(req)
            .await
            .map(hyper_util::rt::TokioIo::new);

        let res = match conn {
            Ok(conn) => open(engine.clone(), conn, protocol, sid, parts).await,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return None;
            }
        };

        match res {
            Ok(connection) => Some(connection),
            Err(Error::MultipleWebsocketRequests) => None,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
                None
            }
        }
    });
    tokio::spawn(opening.then(|connection| OptionFuture::from(connection.map(Connection::run))));

    Ok(ws_response(&ws_key))
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Read packets from the websocket and handle them, it will block until the connection is closed
pub fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> impl Future<Output = Result<(), Error>> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed for the same reason as in `new_req`.
    Box::pin(open(engine, conn, protocol, sid, req_data))
        .and_then(|connection| connection.run().map(Ok))
}

/// An open websocket session, ready to run.
struct Connection<H: EngineIoHandler, S> {
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    tx: SplitSink<WebSocketStream<S>, Message>,
    rx: SplitStream<WebSocketStream<S>>,
    /// Whether the session was opened on this websocket, so that its heartbeat runs here.
    heartbeat: bool,
}

/// Opens a websocket session: a new session with its open packet, or the upgrade of a polling
/// session.
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
async fn open<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<Connection<H, S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The write buffer grows past `write_buffer_size` only while the peer does not take what is
    // written; bounded, a write to a stalled peer fails (and closes the session) instead of
    // growing without end. Room for what the internal channel may hold beside it (the writer
    // moves a batch of it at a time).
    let defaults = WebSocketConfig::default();
    let ws_config = defaults
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size))
        .max_write_buffer_size(
            defaults
                .write_buffer_size
                .saturating_add(engine.config.max_buffer_bytes())
                .saturating_add(engine.config.ws_max_message_size),
        );

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    if let Some(sid) = sid {
        // The session keeps the request of its first polling request.
        drop(req_data);
        match engine.get_socket(sid) {
            None => Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                let (tx, rx) = ws.split();
                Ok(Connection {
                    engine,
                    socket,
                    tx,
                    rx,
                    heartbeat: false,
                })
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        let (tx, rx) = ws.split();
        Ok(Connection {
            engine,
            socket,
            tx,
            rx,
            heartbeat: true,
        })
    }
}

impl<H: EngineIoHandler, S> Connection<H, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Runs the session until it is closed. Its reader, its writer and its heartbeat share this
    /// one task: an idle websocket costs one task instead of three. Each of them stops when the
    /// session's cancellation token is cancelled, which closing the session does.
    async fn run(self) {
        let Connection {
            engine,
            socket,
            tx,
            rx,
            heartbeat,
        } = self;

        // pipe between internal socket channel and websocket
        let reader = async {
            match forward_to_handler(&engine, rx, &socket)
                .with_cancellation_token(&socket.cancellation_token)
                .await
            {
                Some(Err(ref e)) => {
                    let reason = Option::<DisconnectReason>::from(e)
                        .unwrap_or(DisconnectReason::TransportError);

                    #[cfg(feature = "tracing")]
                    tracing::debug!("error when handling packet: {:?}", e);
                    engine.close_session(socket.id, reason);
                }
                Some(Ok(())) => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(sid = %socket.id, "ws transport was closed");
                    engine.close_session(socket.id, DisconnectReason::TransportClose);
                }
                None => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!(sid = %socket.id, "socket is closing");
                }
            }
        };
        // Pipe between websocket and internal socket channel.
        let write_deadline = engine.config.ping_interval + engine.config.ping_timeout;
        let writer = forward_to_socket::<H, S>(&socket, tx, write_deadline);
        let heartbeat = async {
            if heartbeat {
                let config = &engine.config;
                socket
                    .heartbeat(config.ping_interval, config.ping_timeout)
                    .await;
            }
        };
        futures_util::future::join3(reader, writer, heartbeat).await;
    }
}

/// Forwards all packets received from a websocket to a EngineIo [`Socket`]
async fn forward_to_handler<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    mut rx: SplitStream<WebSocketStream<S>>,
    socket: &Arc<Socket<H::Data>>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    while let Some(msg) = rx.try_next().await? {
        match msg {
            Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
                Packet::Close => {
                    #[cfg(feature = "tracing")]
                    tracing::debug!("[sid={}] closing session", socket.id);
                    engine.close_session(socket.id, DisconnectReason::TransportClose);
                    break;
                }
                Packet::Pong | Packet::Ping => {
                    // A full channel means that the client is already known to be alive.
                    socket.heartbeat_tx.try_send(()).ok();
                    Ok::<(), Error>(())
                }
                Packet::Message(msg) => {
                    engine.handler.on_message(msg, socket.clone());
                    Ok(())
                }
                p => return Err(Error::BadPacket(p)),
            },
            Message::Binary(mut data) => {
                if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                    // The first byte is the message type, which we don't need.
                    data = data.split_off(1);
                }
                engine.handler.on_binary(data, socket.clone());
                Ok(())
            }
            Message::Close(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("websocket closed, closing session");
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                break;
            }
            _ => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = ?socket.id, "unexpected ws message");
                Ok(())
            }
        }?
    }
    Ok(())
}

/// The websocket message of a packet to send, if it is sent at all.
fn ws_message(protocol: ProtocolVersion, packet: Packet) -> Option<Message> {
    match packet {
        Packet::Binary(bin) | Packet::BinaryV3(bin) => {
            if protocol == ProtocolVersion::V3 {
                // v3 protocol requires packet type as the first byte.
                // This requires a new buffer. This is OK as it is only for the V3 protocol.
                let mut buff = Vec::with_capacity(bin.len() + 1);
                buff.push(0x04);
                buff.extend(bin);
                Some(Message::Binary(buff.into()))
            } else {
                Some(Message::Binary(bin))
            }
        }
        // A Noop Packet maybe sent by the server to upgrade from a polling connection
        // In the case that the packet was not poll in time it will remain in the buffer and therefore
        // it should be discarded here
        Packet::Noop => None,
        packet => Some(Message::Text(String::from(packet).into())),
    }
}

/// Forwards all packets waiting to be sent to the websocket
///
/// The websocket stream is flushed only when the internal channel is drained. Every write
/// races the session's cancellation: a peer that stopped reading leaves a write pending
/// forever, and the writer must still let the session close (closing waits for it to give back
/// the internal channel). A write that fails (the bounded write buffer is full) closes the
/// session, and so does one that does not complete within `write_deadline` (the peer has not
/// taken a byte for as long as a heartbeat may take).
async fn forward_to_socket<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    mut tx: SplitSink<WebSocketStream<S>, Message>,
    write_deadline: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A polling request that was in progress during the upgrade may still hold the lock.
    let lock = socket.internal_rx.lock();
    let Some(mut internal_rx) = lock
        .with_cancellation_token(&socket.cancellation_token)
        .await
    else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before starting the ws writer");
        return;
    };
    let InternalRx {
        buffered_rx,
        volatile_rx,
        ..
    } = &mut *internal_rx;

    // Forward buffered packets until the channel is closed or the session is cancelled.
    let cancelled = loop {
        // The packets to write now: buffered ones first, then the latest volatile ones. The
        // bytes of buffered ones stay counted in the outbox until the flush that sends them.
        let (packets, mut counted) = tokio::select! {
            biased;
            items = buffered_rx.recv() => match items {
                Some(packets) => {
                    let bytes = queued_len(&packets);
                    (*packets, bytes)
                }
                None => break false,
            },
            _ = socket.cancellation_token.cancelled() => break true,
            Ok(()) = volatile_rx.changed() => {
                let val = volatile_rx.borrow_and_update().clone();
                match val {
                    Some(packets) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(sid = ?socket.id, "ws volatile flush: {} packets", packets.len());
                        (packets, 0)
                    }
                    None => continue,
                }
            },
        };
        let written = async {
            let mut next = Some(packets);
            while let Some(packets) = next.take() {
                for message in packets
                    .into_iter()
                    .filter_map(|p| ws_message(socket.protocol, p))
                {
                    tx.feed(message).await?;
                }
                // Drain what else is buffered before flushing.
                next = buffered_rx.try_recv().ok().map(|packets| {
                    counted += queued_len(&packets);
                    *packets
                });
            }
            #[cfg(feature = "tracing")]
            tracing::trace!(sid = %socket.id, "ws flush");
            tx.flush().await
        };
        let written = tokio::time::timeout(write_deadline, written)
            .with_cancellation_token(&socket.cancellation_token)
            .await;
        match written {
            Some(Ok(Ok(()))) => socket.outbox.sent(counted),
            Some(Ok(Err(_e))) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "ws write failed, closing session: {_e}");
                socket.close(DisconnectReason::TransportError);
                break true;
            }
            Some(Err(_)) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = %socket.id, "ws write stuck, closing session");
                socket.close(DisconnectReason::TransportError);
                break true;
            }
            None => break true,
        }
    };

    #[cfg(feature = "tracing")]
    tracing::trace!(sid = %socket.id, "ws closing flush");

    // A close frame for a peer that still reads; a peer that does not gets a short while.
    let closing = async {
        tx.flush().await.ok();
        tx.close().await.ok();
    };
    if tokio::time::timeout(CLOSING_GRACE, closing).await.is_err() {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, cancelled, "ws peer did not take its close frame");
    }
}

/// How long a cancelled session's writer waits for the peer to take its last bytes and close
/// frame before it lets go of the connection.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .internal_tx
        .send(Box::new(smallvec![Packet::Noop]))
        .await
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[derive(Debug)]
    struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            Sid::new(),
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    /// An open websocket lives in one task, whose future is all it holds besides the socket
    /// record and the websocket buffers: keep it small (in 0.17.9 the three tasks of an idle
    /// websocket held 6.5 kB of futures).
    #[tokio::test]
    async fn an_open_websocket_is_one_small_future() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        let engine = Arc::new(EngineIo::new(
            Arc::new(StubHandler),
            EngineIoConfig::default(),
        ));
        let (tx, rx) = server.split();
        let connection = Connection::<StubHandler, DuplexStream> {
            engine,
            socket,
            tx,
            rx,
            heartbeat: true,
        };
        let run = connection.run();
        let size = std::mem::size_of_val(&run);
        assert!(
            size <= 2560,
            "the future of an open websocket takes {size} bytes"
        );
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn writer_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;
        let (tx, _rx) = server.split();

        let polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn({
            let socket = socket.clone();
            async move { forward_to_socket::<StubHandler, _>(&socket, tx, DEADLINE).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writer.is_finished(), "the writer should wait for the lock");

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the writer should send the packet")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4hello"));
    }

    #[tokio::test]
    async fn writer_waiting_for_the_lock_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();

        let _polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn({
            let socket = socket.clone();
            async move { forward_to_socket::<StubHandler, _>(&socket, tx, DEADLINE).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
    }

    const DEADLINE: Duration = Duration::from_secs(60);

    /// A peer that stops reading leaves the writer's flush pending for ever: closing the session
    /// still stops the writer (after its short closing grace), so the session's memory goes.
    #[tokio::test]
    async fn a_writer_stuck_on_a_peer_that_does_not_read_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let writer = tokio::spawn({
            let socket = socket.clone();
            async move { forward_to_socket::<StubHandler, _>(&socket, tx, DEADLINE).await }
        });
        // Far more than the 1 KiB pipe holds; the client never reads.
        socket.emit(Str::from("x".repeat(64 * 1024))).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_finished(), "the write should be pending");

        socket.cancellation_token.cancel();
        tokio::time::timeout(CLOSING_GRACE + TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
    }

    /// A write that does not complete within the deadline closes the session.
    #[tokio::test]
    async fn a_write_past_its_deadline_closes_the_session() {
        let closed = Arc::new(std::sync::Mutex::new(None));
        let socket = Arc::new(Socket::<()>::new(
            Sid::new(),
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new({
                let closed = closed.clone();
                move |_, reason| *closed.lock().unwrap() = Some(reason)
            }),
            false,
        ));
        let (server, _client) = ws_pair().await;
        let (tx, _rx) = server.split();
        let writer = tokio::spawn({
            let socket = socket.clone();
            async move {
                forward_to_socket::<StubHandler, _>(&socket, tx, Duration::from_millis(100)).await
            }
        });
        socket.emit(Str::from("x".repeat(64 * 1024))).unwrap();
        tokio::time::timeout(CLOSING_GRACE + TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
        assert_eq!(
            *closed.lock().unwrap(),
            Some(DisconnectReason::TransportError)
        );
    }
}
