//! The HTTP server loop: hyper with a deadline on request heads, which also closes idle
//! keep-alive connections (hyper starts the deadline whenever it waits for the next request
//! head), graceful shutdown (requests in flight finish), the peer address for `ConnectInfo`,
//! and a lingering close (see [`Lingering`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::Uri;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::shutdown::Shutdown;

/// Serves `router` on `listener` until `shutdown` completes, then waits for the HTTP requests
/// in flight (upgraded websockets are closed by the caller, not awaited here). Each connection,
/// and each lingering close, is a task of `tasks`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
    tasks: &Shutdown,
) -> std::io::Result<()> {
    // HTTP/1 only (nginx speaks it to upstreams, browsers' websockets need it): hyper's
    // protocol-detecting server reads the first bytes with no deadline at all.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // Connection tasks hold a receiver each; shutdown waits until all are gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Events are small frames that must not wait for the peer's delayed ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                if req.uri().path().starts_with("/socket.io/") {
                    detach_head(&mut req);
                }
                req.map(axum::body::Body::new)
            });
        let connection = builder
            .serve_connection(
                TokioIo::new(Lingering {
                    stream: Some(tcp),
                    tasks: tasks.clone(),
                }),
                TowerToHyperService::new(service),
            )
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            tokio::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, %peer, "connection ended with an error");
                        }
                        break;
                    }
                    changed = stop.changed(), if !stopping => {
                        stopping = true;
                        if changed.is_ok() {
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(stop);
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Copies a Socket.IO request's header values and URI out of the connection's read buffer.
/// hyper parses them as slices of that buffer (8 KiB), and socketioxide keeps a socket's request
/// head for the socket's life, so without the copy every socket would hold the whole buffer
/// after its websocket upgrade instead of the few hundred bytes of its head.
fn detach_head<B>(req: &mut hyper::Request<B>) {
    let headers = std::mem::take(req.headers_mut());
    let mut copied = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            copied.append(name.clone(), value);
        }
    }
    *req.headers_mut() = copied;
    if let Ok(uri) = Uri::try_from(req.uri().to_string()) {
        *req.uri_mut() = uri;
    }
}

/// How long, and how many bytes, a closed connection keeps reading what its peer still sends.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 4 * 1024 * 1024;

/// A connection's socket that closes with a linger, as nginx does: when banter answers before
/// reading a request's whole body (a body over its limit, a refused upload) and the connection
/// then closes, the bytes still arriving would make the kernel reset the connection, and a
/// reset can destroy the answer before the peer reads it (nginx then reports 502 instead of
/// banter's 400 or 413). So on drop, the write side is shut (the answer is followed by FIN) and
/// what the peer still sends is read and discarded, for at most [`LINGER`] and
/// [`LINGER_BYTES`], before the socket closes.
struct Lingering {
    stream: Option<TcpStream>,
    /// Where the linger runs (cut short when shutdown begins).
    tasks: Shutdown,
}

impl Lingering {
    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut().stream() {
            Ok(s) => Pin::new(s).poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        // Off a runtime (a test dropping a connection after its runtime ended) there is
        // nothing to run the linger on: the socket just closes.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.tasks.spawn_until_stopped(async move {
            let mut stream = stream;
            // Half-close: the peer sees the end of the answer, and may still send.
            if let Err(e) = tokio::io::AsyncWriteExt::shutdown(&mut stream).await {
                tracing::trace!(error = %e, "shutdown before the linger failed");
                return;
            }
            let (mut rest, mut sink) = ((&mut stream).take(LINGER_BYTES), tokio::io::sink());
            let drained = tokio::io::copy(&mut rest, &mut sink);
            let _ = tokio::time::timeout(LINGER, drained).await;
        });
    }
}
