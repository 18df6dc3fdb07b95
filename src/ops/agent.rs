//! HAProxy's agent check (`agent-check` on a `server` line): HAProxy connects to
//! `AGENT_CHECK_ADDR` every `agent-inter`, and this instance answers with one line and closes:
//! `drain` while it drains (no new sessions; persistent ones still reach it until they move),
//! else `up ready <weight>%`, the weight from its load ([`super::stats::weight`]). HAProxy
//! applies the percentage to the server's configured weight (`weight 100` in haproxy.cfg: with
//! `weight 1` every percentage below 100 rounds to 0).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use super::Ops;
use crate::shutdown::Shutdown;

/// Longest an agent connection may take to take its line (connections are answered one at a
/// time: an internal port, and a line each).
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// The line HAProxy reads.
pub fn answer(ops: &Ops) -> String {
    if ops.drain.is_draining() {
        "drain\n".to_owned()
    } else {
        format!("up ready {}%\n", ops.weight())
    }
}

/// Listens on `addr` until shutdown.
pub async fn listen(addr: SocketAddr, ops: Arc<Ops>, shutdown: &Shutdown) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("AGENT_CHECK_ADDR {addr}: {e}"))?;
    tracing::info!(%addr, "answering HAProxy's agent check");
    shutdown.spawn_until_stopped(async move {
        loop {
            let (mut stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "agent check connection not accepted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let line = answer(&ops);
            let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
                stream.write_all(line.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keys;
    use crate::metrics::Metrics;

    #[test]
    fn the_agent_says_its_weight_and_drain_while_draining() {
        let ops = Ops::new(
            Arc::new(Metrics::new()),
            Keys::for_target("t", false),
            "i".into(),
        );
        assert_eq!(answer(&ops), "up ready 100%\n");
        ops.drain.shed(5);
        assert_eq!(answer(&ops), "up ready 100%\n", "a rebalance keeps it in");
        ops.drain.stop("test");
        ops.drain.start("test");
        assert_eq!(answer(&ops), "drain\n");
    }
}
