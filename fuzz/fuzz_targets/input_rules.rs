//! The input rules on arbitrary text: usernames (reserved and look-alike names), emails,
//! passwords, descriptions, file links and labels, JWT secret strength, trusted-proxy lists and
//! forwarded client addresses. No panic, and what is accepted keeps each rule.
#![no_main]

use std::net::SocketAddr;

use axum::http::{HeaderMap, HeaderValue};
use banter::TrustedProxies;
use banter::{config, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let text = text.as_ref();
    if let Ok(name) = validate::username(text) {
        assert!((3..=32).contains(&name.len()));
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')));
        let key = validate::username_key(&name);
        assert!(validate::RESERVED_NAMES
            .iter()
            .all(|r| validate::username_key(r) != key));
    }
    let _ = validate::username_key(text);
    if let Ok(email) = validate::email(text) {
        assert!(email.len() <= validate::MAX_EMAIL && email.contains('@'));
        assert!(!email.chars().any(|c| c.is_control() || c.is_whitespace()));
    }
    if validate::password("password", text).is_ok() {
        assert!(!text.chars().any(char::is_control));
    }
    if let Ok(description) = validate::description(text) {
        assert!(description.chars().count() <= validate::MAX_DESCRIPTION_CHARS);
        assert!(!description.chars().any(char::is_control));
    }
    if let Ok(url) = validate::file_url(text) {
        assert!(url.len() <= validate::MAX_FILE_URL);
        assert!(!url.contains('\\') && !url.starts_with("//"));
        assert!(!url.chars().any(|c| c.is_control() || c.is_whitespace()));
        let lower = url.to_ascii_lowercase();
        assert!(
            url.starts_with('/') || lower.starts_with("http://") || lower.starts_with("https://")
        );
    }
    let name_limit = validate::Limit::Chars(validate::MAX_FILE_NAME);
    if let Ok(label) = validate::file_label("file.name", text, name_limit) {
        assert!(!label.is_empty() && !label.chars().any(char::is_control));
    }
    let _ = config::weak_secret(text);

    // Trusted proxies: the list, then the first line as a forwarded-for header from a peer
    // that is trusted and one that is not.
    let (list, header) = text.split_once('\n').unwrap_or((text, text));
    let Ok(proxies) = TrustedProxies::parse(list) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(header) {
        headers.insert("x-forwarded-for", v.clone());
        headers.insert("x-real-ip", v);
    }
    let stranger: SocketAddr = ([192, 0, 2, 1], 9).into();
    let trusted = TrustedProxies::parse("0.0.0.0/0").expect("a valid list");
    let _ = trusted.client(stranger, &headers);
    if TrustedProxies::parse("").is_ok() {
        assert_eq!(
            TrustedProxies::default().client(stranger, &headers),
            stranger.ip()
        );
    }
    let _ = proxies.client(stranger, &headers);
});
