//! The `banter` binary: reads the configuration, sets up logging, serves until SIGTERM or
//! Ctrl-C, and then shuts down cleanly within a bound.

use std::process::ExitCode;
use std::time::Duration;

use banter::config::LogFormat;
use banter::{App, Config};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed memory to the system and fragments less than the system allocator
/// under tens of thousands of small, long-lived connections. Built without transparent huge
/// pages (Cargo.toml): they would grow its arenas' RSS 2 MiB at a time.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long a clean shutdown may take before the process exits anyway.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // SIGUSR1 is taken from the first moment: a drain asked for while the instance starts (a
    // preStop during start-up) begins once it is up, instead of the signal's default action
    // killing the process.
    #[cfg(unix)]
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1());
    let config = Config::parse();
    init_tracing(config.log_format);
    if let Err(reason) = config.check() {
        eprintln!("banter: {reason}");
        return ExitCode::from(2);
    }
    let addr = config.addr;
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("banter: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("banter: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SIGUSR1 starts a drain (Kubernetes' preStop, or an operator): no new sessions here, and
    // the sockets move to the other instances. The drain lasts until SIGTERM.
    #[cfg(unix)]
    {
        let drain = app.drain_handle();
        match usr1 {
            Ok(mut usr1) => {
                tokio::spawn(async move {
                    while usr1.recv().await.is_some() {
                        drain("SIGUSR1");
                    }
                });
            }
            Err(e) => eprintln!("banter: SIGUSR1 will not start a drain: {e}"),
        }
    }
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    };
    let serve = tokio::spawn(app.serve(listener, shutdown));
    let serve = async {
        match serve.await {
            Ok(Ok(())) => ExitCode::SUCCESS,
            Ok(Err(e)) => {
                eprintln!("banter: {e:#}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("banter: {e}");
                ExitCode::FAILURE
            }
        }
    };
    tokio::pin!(serve);
    // Serve until the signal, then give the clean shutdown a bounded time.
    tokio::select! {
        code = &mut serve => return code,
        _ = signalled_rx => {}
    }
    match tokio::time::timeout(SHUTDOWN_LIMIT, serve).await {
        Ok(code) => code,
        Err(_) => {
            tracing::warn!("clean shutdown took too long; exiting");
            ExitCode::FAILURE
        }
    }
}
