//! Every client event's argument parser on arbitrary JSON, and the validation that follows it:
//! no panic, and whatever is accepted keeps the contract's rules.
#![no_main]

use banter::contract::{
    self, AddReaction, ClientEvent, DeleteMessage, EditMessage, JoinChannel, LeaveChannel,
    ReadChannel, RemoveReaction, SendMessage, SetTyping, SyncMessages,
};
use banter::validate;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(join) = JoinChannel::parse(value.clone()) {
        if let Some(p) = &join.password {
            assert!(p.len() <= contract::MAX_PASSWORD_BYTES);
            assert!(!p.chars().any(char::is_control));
        }
        check_channel(&join.channel);
    }
    if let Ok(leave) = LeaveChannel::parse(value.clone()) {
        check_channel(&leave.channel);
    }
    if let Ok(send) = SendMessage::parse(value.clone()) {
        check_channel(&send.channel);
        if let Ok(text) = validate::message_text(&send.text) {
            assert!(!text.is_empty() && text.chars().count() <= validate::MAX_TEXT_CHARS);
            assert!(text
                .chars()
                .all(|c| !c.is_control() || c == '\n' || c == '\t'));
            assert_eq!(text.trim(), text);
        }
        if let Some(file) = send.file {
            assert!(file.url.starts_with('/') || file.url.to_ascii_lowercase().starts_with("http"));
            assert!(!file.url.starts_with("//") && !file.url.contains('\\'));
            for label in [&file.name, &file.kind] {
                assert!(!label.is_empty() && !label.chars().any(char::is_control));
            }
        }
    }
    if let Ok(typing) = SetTyping::parse(value.clone()) {
        check_channel(&typing.channel);
    }
    if let Ok(edit) = EditMessage::parse(value.clone()) {
        check_channel(&edit.channel);
    }
    if let Ok(delete) = DeleteMessage::parse(value.clone()) {
        check_channel(&delete.channel);
    }
    if let Ok(add) = AddReaction::parse(value.clone()) {
        check_emoji(&add.emoji);
    }
    if let Ok(remove) = RemoveReaction::parse(value.clone()) {
        check_emoji(&remove.emoji);
    }
    if let Ok(read) = ReadChannel::parse(value.clone()) {
        assert!(read.seq >= 0);
        check_channel(&read.channel);
    }
    if let Ok(sync) = SyncMessages::parse(value) {
        assert!(sync.after_seq >= 0);
        assert!(sync.after_change.is_none_or(|c| c >= 0));
        assert!((1..=contract::SYNC_MAX).contains(&sync.limit()));
        check_channel(&sync.channel);
    }
});

/// An accepted emoji is short and has no space or control character.
fn check_emoji(emoji: &str) {
    assert!(!emoji.is_empty() && emoji.len() <= validate::MAX_EMOJI_BYTES);
    assert!(!emoji.chars().any(|c| c.is_whitespace() || c.is_control()));
}

/// A channel name that validates is a room name of the contract.
fn check_channel(raw: &str) {
    if let Ok(name) = validate::channel_name(raw) {
        assert!((1..=64).contains(&name.len()));
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'));
    }
}
