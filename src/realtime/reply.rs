//! [`Reply`]: answers a client event once, as an ack when the client asked for one, or else
//! (for failures) as an `error` event, and logs every failure.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide_core::Value as PacketValue;

use super::Adapter;
use crate::error::{AppError, AppResult, Code};

/// The way back to the client for one event.
pub struct Reply {
    ack: AckSender<Adapter>,
    socket: SocketRef<Adapter>,
    wants_ack: bool,
}

impl FromMessageParts<Adapter> for Reply {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<Adapter>>,
        v: &mut PacketValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Reply {
            ack: AckSender::from_message_parts(s, v, ack_id)?,
            socket: SocketRef::from_message_parts(s, v, ack_id)?,
            wants_ack: ack_id.is_some(),
        })
    }
}

impl Reply {
    /// Whether the client asked for an ack.
    pub fn wants_ack(&self) -> bool {
        self.wants_ack
    }

    /// Sends `{"ok": true, ...body}` or the error, for `event`.
    pub fn send(self, event: &'static str, result: AppResult<Value>) {
        match result {
            Ok(body) => self.ok(body),
            Err(e) => self.fail(event, e),
        }
    }

    fn ok(self, body: Value) {
        let mut payload = json!({ "ok": true });
        if let (Some(out), Value::Object(fields)) = (payload.as_object_mut(), body) {
            out.extend(fields);
        }
        if let Err(e) = self.ack.send(&payload) {
            tracing::debug!(sid = %self.socket.id, error = %e, "ack not delivered");
        }
    }

    fn fail(self, event: &'static str, error: AppError) {
        let conn = self.socket.extensions.get::<Arc<super::membership::Conn>>();
        // Without an ack, at most one answer (and one log line) per interval: a flood of
        // failing events must not fill the socket's buffer, where its acks would be dropped.
        if !self.wants_ack && conn.as_ref().is_some_and(|c| !c.error_event_due()) {
            return;
        }
        let user_id = conn.map(|c| c.user_id.to_string()).unwrap_or_default();
        if error.code == Code::Unavailable || error.code == Code::Internal {
            tracing::warn!(sid = %self.socket.id, %user_id, event, code = error.code.as_str(), "event failed");
        } else {
            tracing::info!(sid = %self.socket.id, %user_id, event, code = error.code.as_str(), "event refused");
        }
        let body = error.to_json();
        let sent = if self.wants_ack {
            self.ack
                .send(&json!({ "ok": false, "error": body }))
                .map_err(|e| e.to_string())
        } else {
            self.socket
                .emit(crate::contract::server::ERROR, &body)
                .map_err(|e| e.to_string())
        };
        if let Err(e) = sent {
            tracing::debug!(sid = %self.socket.id, error = %e, "error reply not delivered");
        }
    }
}
