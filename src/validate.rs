//! The input rules of the wire contract (PROTOCOL.md "Conventions"), shared by REST and events.

use crate::error::{AppError, Code, FieldError};

/// Longest message text, in Unicode scalar values.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Longest channel description, in Unicode scalar values.
pub const MAX_DESCRIPTION_CHARS: usize = 280;
/// Longest file URL, file name and MIME type of a message attachment.
pub const MAX_FILE_URL: usize = 2048;
pub const MAX_FILE_NAME: usize = 255;
pub const MAX_FILE_TYPE: usize = 127;
/// Longest email address (RFC 5321).
pub const MAX_EMAIL: usize = 254;

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Usernames: 3..=32 chars of `[A-Za-z0-9_.-]`.
pub fn username(raw: &str) -> Result<String, FieldError> {
    let name = raw.trim();
    let len = name.chars().count();
    if !(3..=32).contains(&len) {
        return Err(field("username", "must be 3 to 32 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(field(
            "username",
            "may contain only letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(name.to_owned())
}

/// Emails: trimmed, one `@` with text on both sides, no spaces, at most 254 bytes.
pub fn email(raw: &str) -> Result<String, FieldError> {
    let email = raw.trim();
    let valid = email.len() <= MAX_EMAIL
        && !email.chars().any(char::is_whitespace)
        && matches!(email.split_once('@'), Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    if valid {
        Ok(email.to_owned())
    } else {
        Err(field("email", "must be a valid email address"))
    }
}

/// Passwords: 8..=128 chars (not trimmed: spaces are part of a password).
pub fn password(field_name: &'static str, raw: &str) -> Result<(), FieldError> {
    if (8..=128).contains(&raw.chars().count()) {
        Ok(())
    } else {
        Err(field(field_name, "must be 8 to 128 characters"))
    }
}

/// Channel names: lowercased and trimmed, then 1..=64 chars of `[a-z0-9_-]`.
pub fn channel_name(raw: &str) -> Result<String, AppError> {
    let name = raw.trim().to_lowercase();
    let len = name.chars().count();
    if len == 0 || len > 64 {
        return Err(AppError::invalid("channel name must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
    {
        return Err(AppError::invalid(
            "channel name may contain only a-z, 0-9, '_' and '-'",
        ));
    }
    Ok(name)
}

/// Message text: trimmed, 1..=4000 Unicode scalar values.
pub fn message_text(raw: &str) -> Result<String, AppError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(AppError::invalid("text must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(AppError::new(
            Code::TooLong,
            format!("text is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// A file URL is either `http(s)://...` or a relative path starting with `/` (never
/// `javascript:`, `data:` or a protocol-relative `//host`).
pub fn file_url(raw: &str) -> Result<String, AppError> {
    let url = raw.trim();
    if url.len() > MAX_FILE_URL {
        return Err(AppError::new(Code::TooLong, "file.url is too long"));
    }
    let lower = url.to_ascii_lowercase();
    let ok = (lower.starts_with("https://") && url.len() > 8)
        || (lower.starts_with("http://") && url.len() > 7)
        || (url.starts_with('/') && !url.starts_with("//"));
    if !ok || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AppError::invalid(
            "file.url must be an http(s) URL or a relative path",
        ));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(username("  ann_1.b-c ").unwrap(), "ann_1.b-c");
        assert!(username("ab").is_err());
        assert!(username(&"a".repeat(33)).is_err());
        assert!(username("ann smith").is_err());
        assert!(username("änn").is_err());
    }

    #[test]
    fn channel_names_are_lowercased() {
        assert_eq!(channel_name(" Rust-Lang_2 ").unwrap(), "rust-lang_2");
        assert!(channel_name("").is_err());
        assert!(channel_name("a b").is_err());
        assert!(channel_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn text_counts_scalar_values() {
        assert!(message_text(&"é".repeat(4000)).is_ok());
        assert_eq!(
            message_text(&"é".repeat(4001)).unwrap_err().code,
            Code::TooLong
        );
        assert_eq!(message_text("   ").unwrap_err().code, Code::InvalidPayload);
    }

    #[test]
    fn file_urls() {
        assert!(file_url("https://example.com/a.png").is_ok());
        assert!(file_url("/uploads/a.png").is_ok());
        assert!(file_url("javascript:alert(1)").is_err());
        assert!(file_url("//evil.example/a").is_err());
        assert!(file_url("data:text/html,hi").is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(email(" A@B.io ").unwrap(), "A@B.io");
        assert!(email("nope").is_err());
        assert!(email("a@").is_err());
        assert!(email("a b@c").is_err());
    }
}
