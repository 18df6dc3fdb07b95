//! `/metrics`: Prometheus text exposition of the figures an operator watches. nginx does not
//! route it, so only the internal network reaches it.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::realtime::emit;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut body = format!(
        "# HELP banter_sockets Sockets connected to this instance and counted in presence.\n\
         # TYPE banter_sockets gauge\n\
         banter_sockets {}\n\
         # HELP banter_deliveries_dropped_total Deliveries dropped because a socket's send buffer was full (the client resyncs by seq).\n\
         # TYPE banter_deliveries_dropped_total counter\n\
         banter_deliveries_dropped_total {}\n",
        state.live_sockets.load(Ordering::Acquire).max(0),
        emit::dropped_deliveries(),
    );
    crate::metrics::METRICS.render(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
