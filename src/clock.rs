//! Time for deadlines shared between instances.
//!
//! Deadlines kept in Redis (the offline grace of presence, pending deliveries' ages) are
//! wall-clock milliseconds written by one instance and compared by another, so banter assumes
//! the instances' clocks agree to well within those periods (seconds): run NTP (or chrony) on
//! every host, as for any system that compares timestamps across machines. A skew of `d`
//! shifts such a deadline by `d`, nothing more: no message, ack or seq depends on a clock.

/// Wall-clock milliseconds since the epoch: the time base of deadlines kept in Redis, which
/// every instance reads.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
