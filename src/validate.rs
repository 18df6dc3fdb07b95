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
        field: field.into(),
        message: message.into(),
    }
}

/// Refuses control characters (Unicode category Cc) in a text a client sends; `\n` and `\t`
/// pass where `multiline` (message text). Postgres refuses NUL in text, and the others have no
/// place in names, addresses or links: refused here, they never reach a statement.
pub fn no_controls(name: &'static str, raw: &str, multiline: bool) -> Result<(), FieldError> {
    let bad = raw
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t')));
    if bad {
        Err(field(name, "must not contain control characters"))
    } else {
        Ok(())
    }
}

/// Names no user may take (guest or registered): they would pass for the service or its staff.
pub const RESERVED_NAMES: &[&str] = &[
    "admin",
    "administrator",
    "root",
    "system",
    "sysadmin",
    "moderator",
    "mod",
    "staff",
    "support",
    "help",
    "official",
    "security",
    "banter",
    "server",
    "bot",
    "everyone",
    "here",
    "channel",
    "null",
    "undefined",
    "anonymous",
];

/// The skeletons of [`RESERVED_NAMES`], computed once.
fn reserved_keys() -> &'static std::collections::HashSet<String> {
    static KEYS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(|| RESERVED_NAMES.iter().map(|r| username_key(r)).collect())
}

/// The confusable skeleton of a username (Unicode TS #39, then lowercased): `aIice` (capital
/// i), `alice` and `ALICE` share one, so do `b0b` and `bob`. Two users never share a skeleton.
pub fn username_key(name: &str) -> String {
    unicode_security::skeleton(name)
        .collect::<String>()
        .to_lowercase()
}

/// Usernames: 3..=32 chars of `[A-Za-z0-9_.-]`, not a reserved name (nor one that looks like
/// it).
pub fn username(raw: &str) -> Result<String, FieldError> {
    no_controls("username", raw, false)?;
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
    if reserved_keys().contains(&username_key(name)) {
        return Err(field("username", "is reserved"));
    }
    Ok(name.to_owned())
}

/// Emails: trimmed, one `@` with text on both sides, no spaces, at most 254 bytes.
pub fn email(raw: &str) -> Result<String, FieldError> {
    no_controls("email", raw, false)?;
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

/// Passwords: 8..=128 chars (not trimmed: spaces are part of a password), no control
/// characters.
pub fn password(field_name: &'static str, raw: &str) -> Result<(), FieldError> {
    no_controls(field_name, raw, false)?;
    if (8..=128).contains(&raw.chars().count()) {
        Ok(())
    } else {
        Err(field(field_name, "must be 8 to 128 characters"))
    }
}

/// Channel names: lowercased and trimmed, then 1..=64 chars of `[a-z0-9_-]`.
pub fn channel_name(raw: &str) -> Result<String, AppError> {
    no_controls("channel", raw, false)?;
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

/// Message text: trimmed, 1..=4000 Unicode scalar values, no control characters but `\n` and
/// `\t`.
pub fn message_text(raw: &str) -> Result<String, AppError> {
    no_controls("text", raw, true)?;
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

/// Longest reaction emoji, in bytes (room for the longest emoji ZWJ sequences).
pub const MAX_EMOJI_BYTES: usize = 32;

/// A reaction's emoji: trimmed, 1..=32 bytes, and one emoji of Unicode's emoji list (with its
/// skin tones and sequences, from the `emojis` crate): no letters, no mention, no invisible or
/// bidi characters.
pub fn emoji(raw: &str) -> Result<String, AppError> {
    let field = |message: &str| {
        AppError::from(FieldError {
            field: "emoji".into(),
            message: message.into(),
        })
    };
    let emoji = raw.trim();
    if emoji.is_empty() {
        return Err(field("emoji must not be empty"));
    }
    if emoji.len() > MAX_EMOJI_BYTES {
        return Err(AppError::new(
            Code::TooLong,
            format!("emoji is longer than {MAX_EMOJI_BYTES} bytes"),
        ));
    }
    match emojis::get(emoji) {
        Some(found) => Ok(found.as_str().to_owned()),
        None => Err(field("emoji must be one emoji")),
    }
}

/// Channel descriptions: trimmed, at most 280 Unicode scalar values, no control characters.
pub fn description(raw: &str) -> Result<String, AppError> {
    no_controls("description", raw, false)?;
    let description = raw.trim();
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(AppError::new(
            Code::TooLong,
            format!("description is longer than {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(description.to_owned())
}

/// How a text's length is limited.
#[derive(Clone, Copy, Debug)]
pub enum Limit {
    /// At most this many Unicode scalar values.
    Chars(usize),
    /// At most this many bytes of UTF-8.
    Bytes(usize),
}

impl Limit {
    fn exceeded_by(self, text: &str) -> bool {
        match self {
            Limit::Chars(max) => text.chars().count() > max,
            Limit::Bytes(max) => text.len() > max,
        }
    }
}

/// The characters that change the direction of the text around them (Unicode's bidi embeddings,
/// overrides and isolates, and the directional marks): in a file name they make
/// `invoice\u{202E}fdp.exe` show as `invoiceexe.pdf`.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A file's name (`Limit::Chars`) or MIME type (`Limit::Bytes`): trimmed, not empty, within
/// its limit, no control characters; bidi controls are taken out (the name shows as it is).
pub fn file_label(name: &'static str, raw: &str, limit: Limit) -> Result<String, AppError> {
    no_controls(name, raw, false)?;
    let neutral: String = raw.chars().filter(|c| !is_bidi_control(*c)).collect();
    let label = neutral.trim();
    if label.is_empty() {
        return Err(field(name, "must not be empty").into());
    }
    if limit.exceeded_by(label) {
        return Err(AppError::new(Code::TooLong, format!("{name} is too long")));
    }
    Ok(label.to_owned())
}

/// A file URL is either an absolute `http(s)://host/...` URL or a same-origin path (`/...`, not
/// protocol-relative). Both are parsed with the WHATWG rules browsers use, so that what is
/// accepted here is what a browser opens: `/\\evil.example/x` and `http:///evil.example` (which
/// browsers read as links to evil.example) are refused, as are `javascript:` and `data:`.
pub fn file_url(raw: &str) -> Result<String, AppError> {
    let url = raw.trim();
    if url.len() > MAX_FILE_URL {
        return Err(AppError::new(Code::TooLong, "file.url is too long"));
    }
    let refused = || {
        AppError::fields(vec![field(
            "file.url",
            "must be an http(s) URL with a host, or a path on this site starting with a single '/'",
        )])
    };
    // Backslashes read as slashes in browsers; whitespace and controls have no place in a link.
    if url.is_empty()
        || url
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return Err(refused());
    }
    if url.starts_with('/') {
        // A path: resolved against this site, it must stay on this site.
        const SITE: &str = "https://site.invalid/";
        let base = url::Url::parse(SITE).map_err(|_| refused())?;
        let joined = base.join(url).map_err(|_| refused())?;
        if url.starts_with("//") || joined.host_str() != Some("site.invalid") {
            return Err(refused());
        }
        return Ok(url.to_owned());
    }
    let parsed = url::Url::parse(url).map_err(|_| refused())?;
    let lower = url.to_ascii_lowercase();
    let after_scheme = match parsed.scheme() {
        "http" => lower.strip_prefix("http://"),
        "https" => lower.strip_prefix("https://"),
        _ => None,
    };
    // The host must be written where it is read: `http:///host` and `http:host` are refused.
    match after_scheme {
        Some(rest)
            if !rest.starts_with('/') && parsed.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(url.to_owned())
        }
        _ => Err(refused()),
    }
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
        assert!(file_url("/\\evil.example/x").is_err());
        assert!(file_url("http:///evil.example").is_err());
        assert!(file_url("https:evil.example").is_err());
        assert!(file_url("http://").is_err());
        assert!(file_url("ftp://example.com/a").is_err());
        assert!(file_url("/a\u{0}b").is_err());
        assert!(file_url("HTTPS://Example.com/a?b=c#d").is_ok());
    }

    #[test]
    fn control_characters_are_refused_with_the_field() {
        assert_eq!(message_text("a\u{0}b").unwrap_err().errors[0].field, "text");
        assert!(message_text("line one\n\tline two").is_ok());
        assert!(message_text("bell\u{7}").is_err());
        assert!(message_text("del\u{7f}").is_err());
        assert!(message_text("c1\u{85}").is_err());
        assert_eq!(email("a\u{0}@b.io").unwrap_err().field, "email");
        assert_eq!(
            password("password", "12345678\u{0}").unwrap_err().field,
            "password"
        );
        assert_eq!(
            description("about\u{0}").unwrap_err().errors[0].field,
            "description"
        );
        assert!(description("two\nlines").is_err());
        assert_eq!(
            file_label("file.name", "a\u{0}.png", Limit::Chars(MAX_FILE_NAME))
                .unwrap_err()
                .errors[0]
                .field,
            "file.name"
        );
        assert_eq!(
            channel_name("gen\u{0}").unwrap_err().errors[0].field,
            "channel"
        );
        assert_eq!(username("ann\u{0}").unwrap_err().field, "username");
    }

    #[test]
    fn reserved_and_confusable_names() {
        assert!(username("admin").is_err());
        assert!(username("Admin").is_err());
        assert!(username("adrnin").is_err());
        assert!(username("r00t").is_err());
        assert!(username("administrators").is_ok());
        assert_eq!(username_key("aIice"), username_key("alice"));
        assert_eq!(username_key("b0b"), username_key("bob"));
        assert_eq!(username_key("Alice"), username_key("alice"));
        assert_ne!(username_key("alice"), username_key("alicia"));
    }

    #[test]
    fn emails() {
        assert_eq!(email(" A@B.io ").unwrap(), "A@B.io");
        assert!(email("nope").is_err());
        assert!(email("a@").is_err());
        assert!(email("a b@c").is_err());
    }

    #[test]
    fn reactions_are_emoji() {
        for good in ["👍", "❤️", "👍🏽", "👨‍👩‍👧", "🇫🇷", " 🎉 "] {
            assert_eq!(emoji(good).unwrap(), good.trim(), "{good}");
        }
        for bad in [
            "a",
            "@everyone",
            "\u{200B}",
            "\u{202E}",
            "\u{FEFF}",
            "👍\u{202E}",
            "\u{202E}👍",
            "👍👍",
            "",
        ] {
            assert!(emoji(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bidi_controls_are_taken_out_of_file_names() {
        let name = file_label(
            "name",
            "invoice\u{202E}fdp.exe",
            Limit::Chars(MAX_FILE_NAME),
        )
        .unwrap();
        assert_eq!(name, "invoicefdp.exe");
        assert!(file_label("name", "\u{2066}\u{202E}", Limit::Chars(10)).is_err());
    }
}
