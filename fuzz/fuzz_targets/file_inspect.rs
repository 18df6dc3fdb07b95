//! What an uploaded file is, on arbitrary bytes: the sniffing, the allowlist, the header that
//! gives an image's size and the image decoding (with its limits) behind every upload. No
//! panic, no runaway allocation; what is accepted is an allowed kind, and an image has a size
//! within the pixel cap (the size its header gave) and a thumbnail that is a JPEG.
#![no_main]

use banter::inspect;
use libfuzzer_sys::fuzz_target;

/// The default `IMAGE_MAX_PIXELS`.
const MAX_PIXELS: u64 = 25_000_000;

fuzz_target!(|data: &[u8]| {
    let allowed = inspect::Allowed::default();
    let Ok(found) = inspect::inspect(data, MAX_PIXELS, &allowed) else {
        return;
    };
    if found.is_image() {
        let (w, h) = (found.width.unwrap_or(0), found.height.unwrap_or(0));
        assert!((1..=12_000).contains(&w) && (1..=12_000).contains(&h));
        assert!(u64::from(w) * u64::from(h) <= MAX_PIXELS);
        let thumb = found
            .thumbnail
            .as_deref()
            .expect("an image has a thumbnail");
        assert!(thumb.starts_with(&[0xff, 0xd8]), "the thumbnail is a JPEG");
    } else {
        assert!(found.thumbnail.is_none() && found.width.is_none());
        assert!(
            allowed.declared(&found.kind),
            "{}",
            found.kind
        );
    }
});
