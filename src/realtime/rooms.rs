//! Room names, and [`LocalRooms`]: how many of this instance's sockets are in each channel.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

/// The room of one user's sockets, cluster-wide.
pub fn user_room(user: Uuid) -> String {
    format!("user:{user}")
}

/// The room of one session's sockets (a token's `jti`), cluster-wide: logout ends them.
pub fn session_room(jti: Uuid) -> String {
    format!("session:{jti}")
}

/// The room of a channel.
pub fn channel_room(channel: &str) -> String {
    format!("channel:{channel}")
}

/// How many of this instance's sockets are in each channel's room (a socket is in one channel
/// at a time): the receivers of a local delivery, and a crowd measure that needs no Redis.
#[derive(Default)]
pub struct LocalRooms(Mutex<HashMap<String, u64>>);

impl LocalRooms {
    /// A socket moved from one channel to another (or into or out of none).
    pub fn moved(&self, from: Option<&str>, to: Option<&str>) {
        if from == to {
            return;
        }
        if let Ok(mut m) = self.0.lock() {
            if let Some(from) = from {
                if let Some(n) = m.get_mut(from) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        m.remove(from);
                    }
                }
            }
            if let Some(to) = to {
                *m.entry(to.to_owned()).or_insert(0) += 1;
            }
        }
    }

    /// The `n` channels with the most of this instance's sockets, with their counts.
    pub fn busiest(&self, n: usize) -> Vec<(String, u64)> {
        let Ok(m) = self.0.lock() else {
            return Vec::new();
        };
        let mut all: Vec<(String, u64)> = m.iter().map(|(k, v)| (k.clone(), *v)).collect();
        drop(m);
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// This instance's sockets in a channel.
    pub fn members(&self, channel: &str) -> u64 {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(channel).copied())
            .unwrap_or(0)
    }
}
