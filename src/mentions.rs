//! `@username` mentions in message text.

/// Most users one message may mention (more `@names` are left as text).
pub const MAX_MENTIONS: usize = 20;

/// Whether `c` may be part of a username (the username rule's characters).
fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The distinct usernames (lowercased) that `text` mentions, in order, at most
/// [`MAX_MENTIONS`]: an `@` at the start or after a character that cannot end a name (so an
/// email address is not a mention), then 3..=32 name characters; a trailing `.` or `-` ends
/// the sentence, not the name.
pub fn names(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut prev: Option<char> = None;
    for (i, c) in text.char_indices() {
        if c == '@' && !prev.is_some_and(name_char) {
            let rest = &text[i + 1..];
            let end = rest.find(|c: char| !name_char(c)).unwrap_or(rest.len());
            let name = rest[..end].trim_end_matches(['.', '-']);
            if (3..=32).contains(&name.len()) {
                let name = name.to_ascii_lowercase();
                if !found.contains(&name) {
                    found.push(name);
                    if found.len() == MAX_MENTIONS {
                        break;
                    }
                }
            }
        }
        prev = Some(c);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn mentions_are_found_where_a_name_starts() {
        assert_eq!(names("hi @Bob and @alice."), vec!["bob", "alice"]);
        assert_eq!(names("@bob @BOB @bob"), vec!["bob"]);
        assert_eq!(names("mail me at me@example.com"), Vec::<String>::new());
        assert_eq!(names("@al is too short, @xy- too"), Vec::<String>::new());
        assert_eq!(names("@x.y- counts"), vec!["x.y"]);
        assert_eq!(names("(@carol_1)"), vec!["carol_1"]);
        assert_eq!(names("@@dave"), vec!["dave"]);
        assert_eq!(names("abc@bob"), Vec::<String>::new());
        let many: String = (0..30).map(|i| format!("@user{i:02} ")).collect();
        assert_eq!(names(&many).len(), super::MAX_MENTIONS);
        assert_eq!(names(&format!("@{}", "a".repeat(33))), Vec::<String>::new());
    }
}
