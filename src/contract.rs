//! The Socket.IO wire contract in types: every event's name, every client payload, every ack
//! body and every server event. `docs/PROTOCOL.md` describes the same events; a test below
//! checks that its tables name exactly these events and fields.
//!
//! A client payload is read by serde and then checked against the rules serde cannot express
//! (lengths, control characters, safe URLs). A wrong shape is `invalid_payload` naming the
//! field, never a closed connection. Pure (no state), so the fuzz targets run exactly this.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{AppError, AppResult, FieldError};
use crate::validate;

/// Names of the events a client sends.
pub mod client {
    pub const CHANNEL_JOIN: &str = "channel.join";
    pub const CHANNEL_LEAVE: &str = "channel.leave";
    pub const MESSAGE_SEND: &str = "message.send";
    pub const USER_TYPING: &str = "user.typing";
    pub const MESSAGES_SYNC: &str = "messages.sync";
    pub const MESSAGE_EDIT: &str = "message.edit";
    pub const MESSAGE_DELETE: &str = "message.delete";
    pub const REACTION_ADD: &str = "reaction.add";
    pub const REACTION_REMOVE: &str = "reaction.remove";
    pub const CHANNEL_READ: &str = "channel.read";

    /// Every client event: the handlers registered on a socket, and the events the bad-input
    /// tests attack, are these.
    pub const ALL: [&str; 10] = [
        CHANNEL_JOIN,
        CHANNEL_LEAVE,
        MESSAGE_SEND,
        USER_TYPING,
        MESSAGES_SYNC,
        MESSAGE_EDIT,
        MESSAGE_DELETE,
        REACTION_ADD,
        REACTION_REMOVE,
        CHANNEL_READ,
    ];
}

/// Names of the events the server sends.
pub mod server {
    pub const MESSAGE_NEW: &str = "message.new";
    pub const USER_STATUS: &str = "user.status";
    pub const USER_TYPING: &str = "user.typing";
    pub const CHANNEL_JOINED: &str = "channel.joined";
    pub const CHANNEL_PRESENCE: &str = "channel.presence";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const MESSAGE_UPDATED: &str = "message.updated";
    pub const MESSAGE_DELETED: &str = "message.deleted";
    pub const MESSAGE_REACTIONS: &str = "message.reactions";
    pub const MENTION: &str = "mention";
    pub const CHANNEL_READ: &str = "channel.read";
    pub const CHANNEL_REMOVED: &str = "channel.removed";
    pub const CHANNEL_CREATED: &str = "channel.created";
    /// Sent to each socket a drain or rebalance moves, before its connection is closed.
    pub const INSTANCE_DRAINING: &str = "instance.draining";
    /// A failed event that asked for no ack.
    pub const ERROR: &str = "error";
    /// The events of changes to stored messages (delivered in change order).
    pub const CHANGES: [&str; 3] = [MESSAGE_UPDATED, MESSAGE_DELETED, MESSAGE_REACTIONS];
}

/// Default and largest `messages.sync` page.
pub const SYNC_DEFAULT: i64 = 100;
pub const SYNC_MAX: i64 = 500;
/// Longest channel password accepted for checking (hashing is costly).
pub const MAX_PASSWORD_BYTES: usize = 1024;

// ---- The objects every answer carries: messages and channels. The store maps its rows to
// ---- these; they are the wire format.

/// A file attached to a message: an upload stored by banter (`/uploads/<key>`, with its size,
/// and an image's dimensions and thumbnail), or a link to elsewhere (url, name and type only).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct FileRef {
    pub url: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub width: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub height: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub thumbnail: Option<String>,
    /// The upload behind the file, when banter stores it.
    #[serde(skip)]
    pub key: Option<Uuid>,
}

impl FileRef {
    /// A link to a file stored elsewhere.
    pub fn link(url: String, name: String, kind: String) -> FileRef {
        FileRef {
            url,
            name,
            kind,
            size: None,
            width: None,
            height: None,
            thumbnail: None,
            key: None,
        }
    }
}

/// A message as the wire contract shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct Message {
    pub id: Uuid,
    /// The channel's id (not on the wire).
    #[serde(skip)]
    pub channel_id: Uuid,
    pub channel: String,
    pub seq: i64,
    pub text: String,
    pub sender: String,
    pub sender_id: Option<Uuid>,
    pub client_message_id: Uuid,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub file: Option<FileRef>,
    /// When the text was last edited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub edited_at: Option<DateTime<Utc>>,
    /// A tombstone: the message was deleted (no text, no file); its seq stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// The channel's change number of the message's last change (edit, delete, reaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub change: Option<i64>,
    /// The message this one answers, quoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub reply_to: Option<Quote>,
    /// Reactions, by emoji, in the order they were first given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<Reaction>,
    /// The users the text mentions (`@username`, resolved when stored or edited).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<Uuid>,
}

/// The quoted message of a reply: its current sender and the start of its current text;
/// `deleted` when it was deleted, neither when retention removed it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct Quote {
    pub id: Uuid,
    pub seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// One emoji's reactions on a message: how many users gave it, and (for the reader) whether
/// they did.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct Reaction {
    pub emoji: String,
    pub count: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub me: bool,
}

/// A channel as the API shows it (never its password hash).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ChannelView {
    pub name: String,
    pub description: String,
    pub private: bool,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
    /// The oldest seq its history holds: older messages were removed by retention.
    pub first_seq: i64,
    /// The channel's own retention limits, when it set any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub retention_max_age_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub retention_max_messages: Option<i64>,
    /// A direct-message channel (private, two members).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dm: bool,
    /// The id of the user who created the channel: its owner, who may delete any of its
    /// messages and remove members (absent for seeded channels, direct messages, and when that
    /// account was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub created_by: Option<Uuid>,
    /// In `GET /api/channels`, for a channel the user has a read position in: that position,
    /// and the unread messages and unread mentions after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub read_seq: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub unread: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub unread_mentions: Option<i64>,
}

/// A client event's payload: its event name, how it is read, and the rules checked after.
pub trait ClientEvent: DeserializeOwned {
    const NAME: &'static str;

    /// What handling one costs, charged to the user's budget before it runs (`crate::budget`;
    /// PROTOCOL.md "Budgets"): about one unit per database or Redis round trip, five for a
    /// page of messages. Sends cost nothing here: the cluster-wide send limit counts them.
    const COST: u32;

    /// The payload as serde reads it (events that also take a bare channel name turn it into
    /// `{channel}` here).
    fn shape(value: Value) -> Value {
        value
    }

    /// The rules the type cannot express.
    fn check(self) -> AppResult<Self> {
        Ok(self)
    }

    /// Reads and checks a payload.
    fn parse(value: Value) -> AppResult<Self> {
        let shaped = Self::shape(value);
        // serde would also take a struct as an array of its fields; the contract does not.
        if !shaped.is_object() {
            return Err(AppError::fields(vec![FieldError {
                field: "payload".into(),
                message: "the payload must be an object".into(),
            }]));
        }
        serde_path_to_error::deserialize::<_, Self>(shaped)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let message = inner.to_string();
                AppError::fields(vec![FieldError {
                    field: field_of(&path, &message).into(),
                    message,
                }])
            })?
            .check()
    }
}

/// The field a serde error is about: its path, or for a missing field (reported at the
/// parent) the field serde names; `payload` for the payload as a whole.
fn field_of(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (".", None) => "payload".to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (path, None) => path.to_owned(),
    }
}

/// A bare channel name stands for `{channel: name}`.
fn channel_shorthand(value: Value) -> Value {
    match value {
        Value::String(name) => serde_json::json!({ "channel": name }),
        other => other,
    }
}

/// `channel.join`: `"name"` or `{channel, password?}`.
#[derive(Debug, Deserialize)]
pub struct JoinChannel {
    pub channel: String,
    #[serde(default)]
    pub password: Option<String>,
}

impl ClientEvent for JoinChannel {
    const NAME: &'static str = client::CHANNEL_JOIN;
    const COST: u32 = 5;

    fn shape(value: Value) -> Value {
        channel_shorthand(value)
    }

    fn check(self) -> AppResult<Self> {
        if let Some(p) = &self.password {
            if p.len() > MAX_PASSWORD_BYTES {
                return Err(AppError::invalid("password is too long"));
            }
            validate::no_controls("password", p, false)?;
        }
        Ok(self)
    }
}

/// `channel.leave`: `"name"` or `{channel}`.
#[derive(Debug, Deserialize)]
pub struct LeaveChannel {
    pub channel: String,
}

impl ClientEvent for LeaveChannel {
    const NAME: &'static str = client::CHANNEL_LEAVE;
    const COST: u32 = 1;

    fn shape(value: Value) -> Value {
        channel_shorthand(value)
    }
}

/// `message.send`: `{channel, text, client_message_id, file?}`. The text is validated later
/// (after the channel is known to be joined), the file here.
#[derive(Debug, Deserialize)]
pub struct SendMessage {
    pub channel: String,
    pub text: String,
    pub client_message_id: Uuid,
    #[serde(default)]
    pub file: Option<FileInput>,
    /// The id of an earlier message of the channel that this one answers.
    #[serde(default)]
    pub reply_to: Option<Uuid>,
}

/// The `file` of `message.send`: an upload's `/uploads/<key>` URL (the stored name, type and
/// size then stand), or a link to a file elsewhere.
#[derive(Debug, Deserialize)]
pub struct FileInput {
    pub url: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

impl SendMessage {
    /// The checked file, as a link until the uploads service resolves it.
    pub fn file_ref(&self) -> Option<FileRef> {
        self.file
            .as_ref()
            .map(|f| FileRef::link(f.url.clone(), f.name.clone(), f.kind.clone()))
    }
}

impl ClientEvent for SendMessage {
    const NAME: &'static str = client::MESSAGE_SEND;
    const COST: u32 = 0;

    fn check(mut self) -> AppResult<Self> {
        if let Some(file) = self.file.take() {
            self.file = Some(FileInput {
                url: validate::file_url(&file.url)?,
                name: validate::file_label(
                    "file.name",
                    &file.name,
                    validate::Limit::Chars(validate::MAX_FILE_NAME),
                )?,
                kind: validate::file_label(
                    "file.type",
                    &file.kind,
                    validate::Limit::Bytes(validate::MAX_FILE_TYPE),
                )?,
            });
        }
        Ok(self)
    }
}

/// `user.typing`: `{channel, isTyping}`.
#[derive(Debug, Deserialize)]
pub struct SetTyping {
    pub channel: String,
    #[serde(rename = "isTyping")]
    pub is_typing: bool,
}

impl ClientEvent for SetTyping {
    const NAME: &'static str = client::USER_TYPING;
    const COST: u32 = 1;
}

/// `messages.sync`: `{channel, after_seq, after_change?, limit?}`.
#[derive(Debug, Deserialize)]
pub struct SyncMessages {
    pub channel: String,
    pub after_seq: i64,
    /// The client's change cursor: the changes made after it are returned too.
    #[serde(default)]
    pub after_change: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
}

impl ClientEvent for SyncMessages {
    const NAME: &'static str = client::MESSAGES_SYNC;
    const COST: u32 = 5;

    fn check(self) -> AppResult<Self> {
        if self.after_seq < 0 {
            return Err(AppError::invalid(
                "after_seq must be a non-negative integer",
            ));
        }
        if self.after_change.is_some_and(|c| c < 0) {
            return Err(AppError::invalid(
                "after_change must be a non-negative integer",
            ));
        }
        if !(1..=SYNC_MAX).contains(&self.limit()) {
            return Err(AppError::invalid(format!("limit must be 1 to {SYNC_MAX}")));
        }
        Ok(self)
    }
}

impl SyncMessages {
    /// The page size asked for, or the default.
    pub fn limit(&self) -> i64 {
        self.limit.unwrap_or(SYNC_DEFAULT)
    }
}

/// The `channel.join` ack.
#[derive(Debug, Serialize, Deserialize)]
pub struct Joined {
    pub channel: ChannelView,
    pub online: u64,
}

/// The `channel.leave` ack.
#[derive(Debug, Serialize, Deserialize)]
pub struct Left {}

/// The `message.send` ack: the stored message, and whether it was stored before (a retry).
#[derive(Debug, Serialize, Deserialize)]
pub struct Sent {
    pub message: Message,
    pub duplicate: bool,
}

/// The `user.typing` ack.
#[derive(Debug, Serialize, Deserialize)]
pub struct TypingAck {
    /// Present (true) when the change was held back by the throttle.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub throttled: bool,
}

/// The `messages.sync` ack.
#[derive(Debug, Serialize, Deserialize)]
pub struct Synced {
    pub messages: Vec<Message>,
    pub has_more: bool,
    /// Where the channel's history now begins (older messages were removed by retention).
    pub first_seq: i64,
    /// Messages up to `after_seq` changed after `after_change` (their current state), by
    /// change number; empty without `after_change`.
    pub changes: Vec<Message>,
    /// More changes follow `last_change`.
    pub changes_has_more: bool,
    /// The change cursor to give next time: every change up to it is in this answer or in
    /// the messages it holds.
    pub last_change: i64,
}

/// `message.edit`: `{channel, id, text}`. The text is validated like a sent one's.
#[derive(Debug, Deserialize)]
pub struct EditMessage {
    pub channel: String,
    pub id: Uuid,
    pub text: String,
}

impl ClientEvent for EditMessage {
    const NAME: &'static str = client::MESSAGE_EDIT;
    const COST: u32 = 1;
}

/// `message.delete`: `{channel, id}`.
#[derive(Debug, Deserialize)]
pub struct DeleteMessage {
    pub channel: String,
    pub id: Uuid,
}

impl ClientEvent for DeleteMessage {
    const NAME: &'static str = client::MESSAGE_DELETE;
    const COST: u32 = 1;
}

/// `reaction.add`: `{channel, id, emoji}`.
#[derive(Debug, Deserialize)]
pub struct AddReaction {
    pub channel: String,
    pub id: Uuid,
    pub emoji: String,
}

impl ClientEvent for AddReaction {
    const NAME: &'static str = client::REACTION_ADD;
    const COST: u32 = 1;

    fn check(mut self) -> AppResult<Self> {
        self.emoji = validate::emoji(&self.emoji)?;
        Ok(self)
    }
}

/// `reaction.remove`: `{channel, id, emoji}`.
#[derive(Debug, Deserialize)]
pub struct RemoveReaction {
    pub channel: String,
    pub id: Uuid,
    pub emoji: String,
}

impl ClientEvent for RemoveReaction {
    const NAME: &'static str = client::REACTION_REMOVE;
    const COST: u32 = 1;

    fn check(mut self) -> AppResult<Self> {
        self.emoji = validate::emoji(&self.emoji)?;
        Ok(self)
    }
}

/// The ack of `message.edit`, `message.delete`, `reaction.add` and `reaction.remove`: the
/// message as it now is.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChangeAck {
    pub message: Message,
}

/// `channel.read`: `{channel, seq}`, the user has read the channel up to `seq`.
#[derive(Debug, Deserialize)]
pub struct ReadChannel {
    pub channel: String,
    pub seq: i64,
}

impl ClientEvent for ReadChannel {
    const NAME: &'static str = client::CHANNEL_READ;
    const COST: u32 = 1;

    fn check(self) -> AppResult<Self> {
        if self.seq < 0 {
            return Err(AppError::invalid("seq must be a non-negative integer"));
        }
        Ok(self)
    }
}

/// The `channel.read` ack: the user's read position now (it only moves forward).
#[derive(Debug, Serialize, Deserialize)]
pub struct ReadAck {
    pub read_seq: i64,
}

/// `channel.read` to the user's sockets: their read position moved (on another tab too).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ChannelRead {
    pub channel: String,
    pub read_seq: i64,
}

/// `channel.removed`: the user was removed from the channel by a moderator; this socket left it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ChannelRemoved {
    pub channel: String,
}

/// `channel.created`: a channel was created (every socket, so that channel lists stay whole).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ChannelCreated {
    pub channel: ChannelView,
}

/// `mention`: a message mentions the receiving user (sent to all their sockets).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct Mention {
    pub channel: String,
    pub message: Message,
}

/// `message.updated`: a message's text was edited.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct MessageUpdated {
    pub channel: String,
    pub id: Uuid,
    pub seq: i64,
    pub change: i64,
    pub text: String,
    pub edited_at: Option<DateTime<Utc>>,
}

/// `message.deleted`: a message became a tombstone.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct MessageDeleted {
    pub channel: String,
    pub id: Uuid,
    pub seq: i64,
    pub change: i64,
}

/// `message.reactions`: a user added or removed a reaction; the message's reaction counts now.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct MessageReactions {
    pub channel: String,
    pub id: Uuid,
    pub seq: i64,
    pub change: i64,
    pub reactions: Vec<Reaction>,
    pub user_id: Uuid,
    pub emoji: String,
    pub added: bool,
}

/// The server event of an applied change (`server::CHANGES`), as sent.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ChangeEvent {
    Updated(MessageUpdated),
    Deleted(MessageDeleted),
    Reactions(MessageReactions),
}

/// `user.status`: a user came online or went offline.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct UserStatus {
    #[serde(rename = "userId")]
    pub user_id: Uuid,
    pub username: String,
    pub status: Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Offline,
}

/// `user.typing` as the channel sees it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct UserTyping<'a> {
    #[serde(rename = "userId")]
    pub user_id: Uuid,
    pub username: &'a str,
    pub channel: &'a str,
    #[serde(rename = "isTyping")]
    pub is_typing: bool,
}

/// `channel.presence`: a channel's online count.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ChannelPresence<'a> {
    pub channel: &'a str,
    pub online: u64,
}

/// `rate_limited`: sending is blocked until `until`.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct RateLimited {
    pub retry_after_ms: u64,
    pub until: DateTime<Utc>,
}

// ---- Operations: the cluster as administrators see it (`GET /api/admin/cluster`) and drains.

/// One entry of the moderation log, as administrators read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ModerationEntry {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub channel: Option<String>,
    pub target: Option<String>,
    pub message_id: Option<Uuid>,
    pub message_seq: Option<i64>,
}

/// What an instance last reported of itself (every few seconds, through Redis).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct InstanceView {
    pub id: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub reported_at: DateTime<Utc>,
    /// Sockets connected here, and the distinct users they belong to.
    pub sockets: u64,
    pub users: u64,
    /// `INSTANCE_SOCKET_CAPACITY`.
    pub capacity: u64,
    /// CPU used over the last period, in cores (1.0: one core busy), and the cores it has.
    pub cpu: f64,
    pub cores: u32,
    pub rss_bytes: u64,
    pub deliveries_per_sec: f64,
    pub drops_per_sec: f64,
    /// Deliveries dropped since the instance started.
    pub drops: u64,
    /// Sockets moved away by drains and rebalances since the instance started.
    pub moved: u64,
    /// Taking no new sessions and moving its sockets away (a drain, or a rebalance's shedding).
    pub draining: bool,
    /// The weight (percent) it reports to HAProxy's agent check.
    pub weight: u32,
    /// The busiest channels here: stored messages a second and sockets in each.
    pub channels: Vec<ChannelActivity>,
}

/// A channel's activity: messages stored a second, sockets in it (on an instance, or on the
/// whole cluster) and, on the cluster's list, its users online.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ChannelActivity {
    pub name: String,
    pub messages_per_sec: f64,
    pub sockets: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(test, ts(optional))]
    pub online: Option<u64>,
}

/// Whether a dependency answered the instance that assembled the view, and how fast.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct DependencyHealth {
    /// `postgres`, `postgres_replica` or `redis`.
    pub name: String,
    pub ok: bool,
    pub latency_ms: Option<f64>,
}

/// `GET /api/admin/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct ClusterView {
    pub at: DateTime<Utc>,
    /// The instance that answered.
    pub answered_by: String,
    /// Every live instance; one that stopped reporting (killed, not yet reaped) has
    /// `reported_at` further back and the rest of its figures as last reported.
    pub instances: Vec<InstanceView>,
    /// Instances registered in presence that sent no report (just started, or gone).
    pub silent: Vec<String>,
    pub sockets: u64,
    /// Users online in the cluster.
    pub online: u64,
    pub deliveries_per_sec: f64,
    pub drops_per_sec: f64,
    /// The busiest channels of the cluster, by messages a second, then sockets.
    pub channels: Vec<ChannelActivity>,
    pub dependencies: Vec<DependencyHealth>,
    /// The newest moderation log entries.
    pub moderation: Vec<ModerationEntry>,
}

/// `POST` / `DELETE /api/admin/instances/:id/drain`: the drain asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct DrainAnswer {
    pub instance: String,
    pub draining: bool,
}

/// `instance.draining`: this socket's instance is going away; the connection is closed next and
/// the client reconnects (to another instance) by itself, its session recovered.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS), ts(export))]
pub struct InstanceDraining {
    pub reconnect: bool,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_aux::serde_introspection::serde_introspect;
    use serde_json::json;

    use super::*;

    /// The field names serde reads for `T`.
    fn fields<'de, T: Deserialize<'de>>() -> BTreeSet<String> {
        serde_introspect::<T>()
            .iter()
            .map(|f| f.to_string())
            .collect()
    }

    /// The rows of the PROTOCOL.md table under `heading`: event name → the field names in
    /// each of the other columns' `{...}` (nested objects flattened, `?` dropped).
    fn table(heading: &str) -> Vec<(String, Vec<BTreeSet<String>>)> {
        let doc = include_str!("../docs/PROTOCOL.md");
        let start = doc.find(heading).expect("heading in PROTOCOL.md");
        doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|row| {
                let cells: Vec<&str> = row.split(" | ").collect();
                let event = cells[0]
                    .trim_start_matches("| ")
                    .split('`')
                    .nth(1)
                    .expect("event in backticks")
                    .to_owned();
                let columns = cells[1..].iter().map(|c| names_in_braces(c)).collect();
                (event, columns)
            })
            .collect()
    }

    /// The identifiers that name fields inside the `{...}` groups of a cell (with nested
    /// objects), e.g. `{text, file?: {url, name, type}}` → text, file, url, name, type. A
    /// value written after a colon (`{online: n}`) may also be among them.
    fn names_in_braces(cell: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut rest = cell;
        while let Some(start) = rest.find('{') {
            let (group, after) = brace_group(&rest[start..]);
            names.extend(identifiers(group));
            rest = after;
        }
        names
    }

    /// The first `{...}` of `text` (which starts with it) and what follows it.
    fn brace_group(text: &str) -> (&str, &str) {
        let mut depth = 0;
        for (i, c) in text.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return (&text[1..i], &text[i + 1..]);
                    }
                }
                _ => {}
            }
        }
        (&text[1..], "")
    }

    /// The field-like identifiers of a brace group's inside.
    fn identifiers(inner: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in inner.chars().chain([',']) {
            match c {
                '"' => {
                    quoted = !quoted;
                    word.clear();
                }
                c if c.is_ascii_alphanumeric() || c == '_' => word.push(c),
                _ => {
                    if !quoted && !word.is_empty() && matches!(c, '?' | ',' | ':' | '}') {
                        names.insert(std::mem::take(&mut word));
                    }
                    word.clear();
                }
            }
        }
        names.retain(|n| n != "ext" && n.chars().next().is_some_and(|c| !c.is_ascii_digit()));
        names
    }

    fn union(sets: &[BTreeSet<String>]) -> BTreeSet<String> {
        sets.iter().flatten().cloned().collect()
    }

    #[test]
    fn protocol_md_lists_the_client_events_and_their_fields() {
        let file = fields::<FileInput>();
        let expected: Vec<(&str, BTreeSet<String>, BTreeSet<String>)> = vec![
            (
                JoinChannel::NAME,
                fields::<JoinChannel>(),
                union(&[fields::<Joined>()]),
            ),
            (
                LeaveChannel::NAME,
                fields::<LeaveChannel>(),
                fields::<Left>(),
            ),
            (
                SendMessage::NAME,
                union(&[fields::<SendMessage>(), file]),
                fields::<Sent>(),
            ),
            (
                SetTyping::NAME,
                fields::<SetTyping>(),
                fields::<TypingAck>(),
            ),
            (
                SyncMessages::NAME,
                fields::<SyncMessages>(),
                fields::<Synced>(),
            ),
            (
                EditMessage::NAME,
                fields::<EditMessage>(),
                fields::<ChangeAck>(),
            ),
            (
                DeleteMessage::NAME,
                fields::<DeleteMessage>(),
                fields::<ChangeAck>(),
            ),
            (
                AddReaction::NAME,
                fields::<AddReaction>(),
                fields::<ChangeAck>(),
            ),
            (
                RemoveReaction::NAME,
                fields::<RemoveReaction>(),
                fields::<ChangeAck>(),
            ),
            (
                ReadChannel::NAME,
                fields::<ReadChannel>(),
                fields::<ReadAck>(),
            ),
        ];
        let rows = table("### Client → server");
        let documented: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
        let typed: Vec<&str> = expected.iter().map(|(e, _, _)| *e).collect();
        assert_eq!(documented, typed, "client events in PROTOCOL.md");
        for ((event, columns), (_, payload, ack)) in rows.iter().zip(&expected) {
            assert_eq!(&columns[0], payload, "{event} payload fields");
            // The ack column may also show the channel object's fields.
            assert!(ack.is_subset(&columns[2]), "{event} ack fields: {ack:?}");
        }
    }

    #[test]
    fn protocol_md_gives_every_client_events_cost() {
        let doc = include_str!("../docs/PROTOCOL.md");
        let start = doc.find("### Budgets").expect("budgets in PROTOCOL.md");
        let documented: Vec<(String, u32)> = doc[start..]
            .lines()
            .skip_while(|l| !l.starts_with("| event | cost |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .map(|row| {
                let cells: Vec<&str> = row.split('|').map(str::trim).collect();
                let cost = cells[2].parse().expect("a cost");
                (cells[1].trim_matches('`').to_owned(), cost)
            })
            .collect();
        let typed = vec![
            (JoinChannel::NAME.to_owned(), JoinChannel::COST),
            (LeaveChannel::NAME.to_owned(), LeaveChannel::COST),
            (SendMessage::NAME.to_owned(), SendMessage::COST),
            (SetTyping::NAME.to_owned(), SetTyping::COST),
            (SyncMessages::NAME.to_owned(), SyncMessages::COST),
            (EditMessage::NAME.to_owned(), EditMessage::COST),
            (DeleteMessage::NAME.to_owned(), DeleteMessage::COST),
            (AddReaction::NAME.to_owned(), AddReaction::COST),
            (RemoveReaction::NAME.to_owned(), RemoveReaction::COST),
            (ReadChannel::NAME.to_owned(), ReadChannel::COST),
        ];
        assert_eq!(documented, typed, "event costs in PROTOCOL.md");
    }

    #[test]
    fn protocol_md_lists_the_server_events_and_their_fields() {
        let expected: Vec<(&str, BTreeSet<String>)> = vec![
            (server::MESSAGE_NEW, BTreeSet::new()),
            (server::USER_STATUS, fields::<UserStatus>()),
            (server::USER_TYPING, fields::<UserTyping>()),
            (server::CHANNEL_JOINED, BTreeSet::new()),
            (server::CHANNEL_PRESENCE, fields::<ChannelPresence>()),
            (server::RATE_LIMITED, fields::<RateLimited>()),
            (server::MESSAGE_UPDATED, fields::<MessageUpdated>()),
            (server::MESSAGE_DELETED, fields::<MessageDeleted>()),
            (
                server::MESSAGE_REACTIONS,
                union(&[fields::<MessageReactions>(), ["count".to_owned()].into()]),
            ),
            (server::MENTION, fields::<Mention>()),
            (server::CHANNEL_READ, fields::<ChannelRead>()),
            (server::CHANNEL_REMOVED, fields::<ChannelRemoved>()),
            (server::CHANNEL_CREATED, fields::<ChannelCreated>()),
            (server::ERROR, ["code", "message"].map(String::from).into()),
            (server::INSTANCE_DRAINING, fields::<InstanceDraining>()),
        ];
        let rows = table("### Server → client");
        let documented: Vec<&str> = rows.iter().map(|(e, _)| e.as_str()).collect();
        let typed: Vec<&str> = expected.iter().map(|(e, _)| *e).collect();
        assert_eq!(documented, typed, "server events in PROTOCOL.md");
        for ((event, columns), (_, payload)) in rows.iter().zip(&expected) {
            assert_eq!(&columns[0], payload, "{event} payload fields");
        }
    }

    #[test]
    fn protocol_md_shows_the_message_object() {
        let doc = include_str!("../docs/PROTOCOL.md");
        let section = &doc[doc.find("### Message object").expect("section")..];
        let line = section.lines().nth(1).expect("the object's line");
        let nested = [fields::<Message>(), fields::<Quote>(), fields::<Reaction>()];
        assert_eq!(names_in_braces(line), union(&nested));
    }

    #[test]
    fn a_wrong_shape_names_its_field() {
        let field = |e: AppError| e.errors[0].field.to_string();
        assert_eq!(
            field(SendMessage::parse(json!({"channel": "a"})).unwrap_err()),
            "text"
        );
        assert_eq!(
            field(SendMessage::parse(json!({"channel": "a", "text": 1})).unwrap_err()),
            "text"
        );
        let bad_file = json!({"channel": "a", "text": "t", "client_message_id": Uuid::nil(),
            "file": {"url": "/f", "name": 3, "type": "x"}});
        assert_eq!(
            field(SendMessage::parse(bad_file).unwrap_err()),
            "file.name"
        );
        let no_url = json!({"channel": "a", "text": "t", "client_message_id": Uuid::nil(),
            "file": {"name": "n", "type": "x"}});
        assert_eq!(field(SendMessage::parse(no_url).unwrap_err()), "file.url");
        assert_eq!(field(SetTyping::parse(json!([1])).unwrap_err()), "payload");
        assert_eq!(
            JoinChannel::parse(json!("general")).unwrap().channel,
            "general"
        );
        assert_eq!(
            SyncMessages::parse(json!({"channel": "a", "after_seq": 3}))
                .unwrap()
                .limit(),
            100
        );
        assert!(SyncMessages::parse(json!({"channel": "a", "after_seq": -1})).is_err());
    }
}
