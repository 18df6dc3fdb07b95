//! The argument shapes of the client events, parsed from raw JSON without any state: a wrong
//! shape is `invalid_payload` naming what is wrong, never a closed connection. Pure, so that
//! the fuzz targets (`fuzz/`) run exactly this code.

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{AppError, AppResult};
use crate::store::messages::FileRef;
use crate::validate;

/// Default and largest `messages.sync` page.
pub const SYNC_DEFAULT: i64 = 100;
pub const SYNC_MAX: i64 = 500;
/// Longest channel password accepted for checking (hashing is costly).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// `channel.join`: `"name"` or `{channel, password?}`.
#[derive(Debug)]
pub struct Join<'a> {
    pub channel: &'a str,
    pub password: Option<&'a str>,
}

/// `message.send`: `{channel, text, client_message_id, file?}`. The text is validated later
/// (after the channel is known to be joined), the file here.
#[derive(Debug)]
pub struct Send<'a> {
    pub channel: &'a str,
    pub text: &'a str,
    pub client_message_id: Uuid,
    pub file: Option<FileRef>,
}

/// `user.typing`: `{channel, isTyping}`.
#[derive(Debug)]
pub struct Typing<'a> {
    pub channel: &'a str,
    pub is_typing: bool,
}

/// `messages.sync`: `{channel, after_seq, limit?}`.
#[derive(Debug)]
pub struct Sync<'a> {
    pub channel: &'a str,
    pub after_seq: i64,
    pub limit: i64,
}

pub fn join(value: &Value) -> AppResult<Join<'_>> {
    let channel = channel_arg(value)?;
    let password = match value {
        Value::Object(obj) => optional_string(obj, "password")?,
        _ => None,
    };
    if let Some(p) = password {
        if p.len() > MAX_PASSWORD_BYTES {
            return Err(AppError::invalid("password is too long"));
        }
        validate::no_controls("password", p, false)?;
    }
    Ok(Join { channel, password })
}

/// `channel.leave`: `"name"` or `{channel}`.
pub fn leave(value: &Value) -> AppResult<&str> {
    channel_arg(value)
}

pub fn send(value: &Value) -> AppResult<Send<'_>> {
    let obj = object(value)?;
    let text = string_field(obj, "text")?;
    let channel = string_field(obj, "channel")?;
    let client_message_id = Uuid::parse_str(string_field(obj, "client_message_id")?)
        .map_err(|_| AppError::invalid("client_message_id must be a UUID"))?;
    let file = file_arg(obj)?;
    Ok(Send {
        channel,
        text,
        client_message_id,
        file,
    })
}

pub fn typing(value: &Value) -> AppResult<Typing<'_>> {
    let obj = object(value)?;
    let channel = string_field(obj, "channel")?;
    let is_typing = match obj.get("isTyping") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AppError::invalid("isTyping must be a boolean")),
        None => return Err(AppError::invalid("isTyping is required")),
    };
    Ok(Typing { channel, is_typing })
}

pub fn sync(value: &Value) -> AppResult<Sync<'_>> {
    let obj = object(value)?;
    let channel = string_field(obj, "channel")?;
    let after_seq =
        count_field(obj, "after_seq")?.ok_or_else(|| AppError::invalid("after_seq is required"))?;
    let limit = count_field(obj, "limit")?.unwrap_or(SYNC_DEFAULT);
    if !(1..=SYNC_MAX).contains(&limit) {
        return Err(AppError::invalid(format!("limit must be 1 to {SYNC_MAX}")));
    }
    Ok(Sync {
        channel,
        after_seq,
        limit,
    })
}

fn object(value: &Value) -> AppResult<&Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| AppError::invalid("the payload must be an object"))
}

fn string_field<'a>(obj: &'a Map<String, Value>, name: &str) -> AppResult<&'a str> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(AppError::invalid(format!("{name} must be a string"))),
        None => Err(AppError::invalid(format!("{name} is required"))),
    }
}

fn optional_string<'a>(obj: &'a Map<String, Value>, name: &str) -> AppResult<Option<&'a str>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AppError::invalid(format!("{name} must be a string"))),
    }
}

/// A non-negative integer field (`after_seq`, `limit`).
fn count_field(obj: &Map<String, Value>, name: &str) -> AppResult<Option<i64>> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| AppError::invalid(format!("{name} must be a non-negative integer"))),
    }
}

/// `"name"` or `{channel}`: the channel an event names.
fn channel_arg(value: &Value) -> AppResult<&str> {
    match value {
        Value::String(name) => Ok(name),
        Value::Object(obj) => string_field(obj, "channel"),
        _ => Err(AppError::invalid(
            "the payload must be a channel name or an object",
        )),
    }
}

/// A file link as sent by a client.
fn file_arg(obj: &Map<String, Value>) -> AppResult<Option<FileRef>> {
    let file = match obj.get("file") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(f)) => f,
        Some(_) => {
            return Err(AppError::invalid(
                "file must be an object {url, name, type}",
            ))
        }
    };
    let url = validate::file_url(string_field(file, "url")?)?;
    let name = validate::file_label(
        "file.name",
        string_field(file, "name")?,
        validate::Limit::Chars(validate::MAX_FILE_NAME),
    )?;
    let kind = validate::file_label(
        "file.type",
        string_field(file, "type")?,
        validate::Limit::Bytes(validate::MAX_FILE_TYPE),
    )?;
    Ok(Some(FileRef { url, name, kind }))
}
