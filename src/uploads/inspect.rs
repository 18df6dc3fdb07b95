//! What an upload is, from its bytes: the type (sniffed, never the client's word) checked
//! against the allowlist, and for an image its size and a small JPEG thumbnail. Pure and
//! blocking (image decoding), so callers run it off the async workers.
//!
//! An image's size is read from its header before anything is decoded ([`probe`]): one of more
//! than `IMAGE_MAX_PIXELS` pixels is refused (`too_large`) undecoded, and a decode is given
//! [`decode_cost`] bytes, which the caller accounts across concurrent decodes. The cost is an
//! upper bound of what the decoders hold per pixel, whatever they do with `image`'s own
//! allocation limit (zune-jpeg's progressive buffers and the GIF canvas are outside it).

use std::io::Cursor;

use crate::error::{AppError, AppResult, Code};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// Largest image (either side) that is decoded for a thumbnail.
pub const MAX_IMAGE_SIDE: u32 = 12_000;
/// Memory a decode may hold per pixel, at the most: a progressive JPEG's coefficients (2
/// bytes per component) beside its RGB output, an RGBA canvas beside a GIF's frame, 16-bit
/// RGBA PNG rows.
pub const DECODE_BYTES_PER_PIXEL: u64 = 10;

/// The plain-text type every textual upload is served as (HTML, SVG and scripts included:
/// they are shown, never run).
pub const TEXT: &str = "text/plain; charset=utf-8";

/// Image types that get a size and a thumbnail, and are shown inline.
const IMAGES: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// The default of `UPLOAD_ALLOWED_TYPES`: images, text, PDF, office documents, archives, and
/// common video and audio (types as the bytes are sniffed as).
pub const DEFAULT_ALLOWED: &str = "image/png,image/jpeg,image/gif,image/webp,text/plain,\
application/pdf,application/rtf,application/msword,\
application/vnd.openxmlformats-officedocument.wordprocessingml.document,\
application/vnd.ms-excel,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet,\
application/vnd.ms-powerpoint,\
application/vnd.openxmlformats-officedocument.presentationml.presentation,\
application/vnd.oasis.opendocument.text,application/vnd.oasis.opendocument.spreadsheet,\
application/vnd.oasis.opendocument.presentation,application/epub+zip,application/zip,\
application/gzip,application/x-tar,application/x-7z-compressed,application/x-bzip2,\
application/x-xz,video/mp4,video/webm,video/quicktime,audio/mpeg,audio/ogg,audio/opus,\
audio/x-wav,audio/m4a,audio/aac,audio/x-flac";

/// Declared types browsers give that the sniffer names otherwise: each is allowed when the
/// type it stands for is.
const ALIASES: &[(&str, &str)] = &[
    ("application/x-zip-compressed", "application/zip"),
    ("application/x-gzip", "application/gzip"),
    ("audio/wav", "audio/x-wav"),
    ("audio/wave", "audio/x-wav"),
    ("audio/x-m4a", "audio/m4a"),
    ("audio/mp4", "audio/m4a"),
    ("audio/flac", "audio/x-flac"),
];

/// The types that may be shared (`UPLOAD_ALLOWED_TYPES`): MIME types as the bytes are sniffed
/// as. `text/plain` stands for every text (served as plain text, whatever it contains); an
/// image type of [`IMAGES`] gets a thumbnail and is shown inline; every other type is served as
/// an attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed(Vec<String>);

impl Allowed {
    /// A comma-separated list of MIME types (`type/subtype`, no parameters).
    pub fn parse(list: &str) -> Result<Allowed, String> {
        let token = |t: &str| {
            !t.is_empty()
                && t.len() <= 100
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        let mut types = Vec::new();
        for item in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let item = item.to_ascii_lowercase();
            let valid = item
                .split_once('/')
                .is_some_and(|(kind, sub)| token(kind) && token(sub));
            if !valid {
                return Err(format!("{item:?} is not a MIME type (type/subtype)"));
            }
            if !types.contains(&item) {
                types.push(item);
            }
        }
        if types.is_empty() {
            return Err("the list of allowed upload types is empty".into());
        }
        Ok(Allowed(types))
    }

    fn has(&self, kind: &str) -> bool {
        self.0.iter().any(|t| t == kind)
    }

    fn text(&self) -> bool {
        self.has("text/plain")
    }

    /// Whether an upload announced as `declared` may be sent (its bytes decide later): an
    /// allowed type, any text type when text is, and the type browsers give files they do not
    /// know.
    pub fn declared(&self, declared: &str) -> bool {
        let essence = declared
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let essence = ALIASES
            .iter()
            .find(|(alias, _)| *alias == essence)
            .map_or(essence.as_str(), |(_, canonical)| canonical);
        self.has(essence)
            || essence == "application/octet-stream"
            || (self.text()
                && ((essence.starts_with("text/") && essence.len() > 5)
                    || matches!(essence, "application/json" | "application/xml")))
    }

    /// What may be shared, for an error message.
    pub fn described(&self) -> String {
        let mut shown: Vec<&str> = self.0.iter().map(String::as_str).take(6).collect();
        if self.0.len() > shown.len() {
            shown.push("...");
        }
        shown.join(", ")
    }
}

impl Default for Allowed {
    fn default() -> Self {
        Allowed::parse(DEFAULT_ALLOWED).unwrap_or_else(|_| Allowed(Vec::new()))
    }
}

/// What the bytes of an upload are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspected {
    /// The type the file is served as.
    pub kind: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// A JPEG of at most `THUMBNAIL_SIDE` pixels a side, for images.
    pub thumbnail: Option<Vec<u8>>,
}

impl Inspected {
    pub fn is_image(&self) -> bool {
        is_image(&self.kind)
    }
}

/// Whether a stored type is shown inline (an image) rather than downloaded.
pub fn is_image(kind: &str) -> bool {
    IMAGES.contains(&kind)
}

fn unsupported(message: &str) -> AppError {
    AppError::new(Code::UnsupportedType, message)
}

/// What the bytes are before any decode: the type, and an image's size from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub kind: String,
    /// An image's width and height, as its header says.
    pub size: Option<(u32, u32)>,
}

/// Sniffs `bytes` and checks them against `allowed`; an image's header gives its size (nothing
/// is decoded).
pub fn probe(bytes: &[u8], allowed: &Allowed) -> AppResult<Probe> {
    if bytes.is_empty() {
        return Err(AppError::invalid("the file is empty"));
    }
    let sniffed = infer::get(bytes).map(|t| t.mime_type());
    let kind = match sniffed {
        Some(t) if allowed.has(t) => t.to_owned(),
        // Text, whatever it contains (HTML, SVG, XML, scripts: infer names some of these),
        // is served as plain text.
        _ if allowed.text() && is_text(bytes) => TEXT.to_owned(),
        Some(t) => {
            return Err(unsupported(&format!(
                "files of type {t} cannot be shared (these can: {})",
                allowed.described()
            )))
        }
        None => {
            return Err(unsupported(&format!(
                "this kind of file cannot be shared (these can: {})",
                allowed.described()
            )))
        }
    };
    if !IMAGES.contains(&kind.as_str()) {
        return Ok(Probe { kind, size: None });
    }
    let unreadable = |e: image::ImageError| unsupported(&format!("the image cannot be read: {e}"));
    let (width, height) = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| unreadable(e.into()))?
        .into_dimensions()
        .map_err(unreadable)?;
    // A GIF may declare a screen of no pixels at all: nothing to show.
    if width == 0 || height == 0 {
        return Err(unsupported("the image cannot be read: it has no pixels"));
    }
    Ok(Probe {
        kind,
        size: Some((width, height)),
    })
}

/// The memory a decode of an image of `width` × `height` pixels is given.
pub fn decode_cost(width: u32, height: u32) -> u64 {
    decode_cost_of(u64::from(width) * u64::from(height))
}

/// The memory decodes of `pixels` pixels in all are given.
pub fn decode_cost_of(pixels: u64) -> u64 {
    pixels.saturating_mul(DECODE_BYTES_PER_PIXEL)
}

/// Refuses an image of more than `max_pixels` pixels (or a side over [`MAX_IMAGE_SIDE`]),
/// before it is decoded.
pub fn check_pixels(width: u32, height: u32, max_pixels: u64) -> AppResult<()> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels || width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE {
        return Err(AppError::new(
            Code::TooLarge,
            format!(
                "the image is {width}×{height} pixels: images of at most {max_pixels} pixels and {MAX_IMAGE_SIDE} a side can be shared"
            ),
        ));
    }
    Ok(())
}

/// The JPEG thumbnail (at most [`THUMBNAIL_SIDE`] a side) of an image whose header says it is
/// `size`, decoding within its [`decode_cost`]; an image that decodes to another size is
/// refused (its cost was counted for the header's).
pub fn thumbnail(bytes: &[u8], size: (u32, u32)) -> AppResult<Vec<u8>> {
    picture(bytes, size).map_err(|e| unsupported(&format!("the image cannot be read: {e}")))
}

/// Sniffs `bytes` and checks them against `allowed`; an image of at most `max_pixels`
/// pixels is decoded (within [`decode_cost`]) for its size and a thumbnail. In one call, with
/// no accounting across calls (uploads account decodes with [`probe`] and [`thumbnail`]).
pub fn inspect(bytes: &[u8], max_pixels: u64, allowed: &Allowed) -> AppResult<Inspected> {
    let probed = probe(bytes, allowed)?;
    let Some((width, height)) = probed.size else {
        return Ok(Inspected {
            kind: probed.kind,
            width: None,
            height: None,
            thumbnail: None,
        });
    };
    check_pixels(width, height, max_pixels)?;
    let thumbnail = thumbnail(bytes, (width, height))?;
    Ok(Inspected {
        kind: probed.kind,
        width: Some(width),
        height: Some(height),
        thumbnail: Some(thumbnail),
    })
}

/// Valid UTF-8 without NUL bytes.
fn is_text(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// An image's JPEG thumbnail.
fn picture(bytes: &[u8], size: (u32, u32)) -> Result<Vec<u8>, image::ImageError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(decode_cost(size.0, size.1));
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    reader.limits(limits);
    let decoded = reader.decode()?;
    let (width, height) = (decoded.width(), decoded.height());
    if width == 0 || height == 0 || (width, height) != size {
        return Err(image::ImageError::Limits(
            image::error::LimitError::from_kind(image::error::LimitErrorKind::DimensionError),
        ));
    }
    let small = if width > THUMBNAIL_SIDE || height > THUMBNAIL_SIDE {
        decoded.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    } else {
        decoded
    };
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
    small.to_rgb8().write_with_encoder(encoder)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIXELS: u64 = 25_000_000;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn images_get_size_and_thumbnail() {
        let found = inspect(&png(1000, 500), PIXELS, &Allowed::default()).unwrap();
        assert_eq!(found.kind, "image/png");
        assert_eq!((found.width, found.height), (Some(1000), Some(500)));
        let thumb = image::load_from_memory(found.thumbnail.as_deref().unwrap()).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        // Small images keep their size.
        let small = inspect(&png(64, 48), PIXELS, &Allowed::default()).unwrap();
        let thumb = image::load_from_memory(small.thumbnail.as_deref().unwrap()).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (64, 48));
    }

    #[test]
    fn text_of_any_kind_is_plain_text() {
        for body in [
            "hello\n".as_bytes(),
            b"<!doctype html><script>alert(1)</script>",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
            b"#!/bin/sh\nrm -rf /\n",
        ] {
            assert_eq!(
                inspect(body, PIXELS, &Allowed::default()).unwrap().kind,
                TEXT
            );
        }
    }

    #[test]
    fn refusals() {
        // A Windows executable, an ELF binary, random bytes, a PNG that is not one.
        assert_eq!(
            inspect(b"MZ\x90\x00\x03\x00\x00\x00", PIXELS, &Allowed::default())
                .unwrap_err()
                .code,
            Code::UnsupportedType
        );
        assert_eq!(
            inspect(b"\x7fELF\x02\x01\x01\x00", PIXELS, &Allowed::default())
                .unwrap_err()
                .code,
            Code::UnsupportedType
        );
        assert_eq!(
            inspect(&[0xff, 0x00, 0xfe, 0x01], PIXELS, &Allowed::default())
                .unwrap_err()
                .code,
            Code::UnsupportedType
        );
        let mut broken = png(10, 10);
        broken.truncate(40);
        assert_eq!(
            inspect(&broken, PIXELS, &Allowed::default())
                .unwrap_err()
                .code,
            Code::UnsupportedType
        );
        assert_eq!(
            inspect(b"", PIXELS, &Allowed::default()).unwrap_err().code,
            Code::InvalidPayload
        );
    }

    #[test]
    fn an_image_too_large_to_decode_is_refused_before_it_is_decoded() {
        // A PNG header that claims 100000 × 100000 pixels (40 GB decoded), a few bytes of data.
        fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
            let mut crc = crc32(kind);
            crc = crc32_update(crc, data);
            let mut out = (data.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&(!crc).to_be_bytes());
            out
        }
        fn crc32(bytes: &[u8]) -> u32 {
            crc32_update(0xffff_ffff, bytes)
        }
        fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
            for &b in bytes {
                crc ^= b as u32;
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xedb8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            crc
        }
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
        let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
        bomb.extend(chunk(b"IHDR", &ihdr));
        bomb.extend(chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        bomb.extend(chunk(b"IEND", b""));
        let refused = inspect(&bomb, PIXELS, &Allowed::default()).unwrap_err();
        assert_eq!(refused.code, Code::TooLarge, "{refused}");
        assert!(refused.message.contains("100000×100000"), "{refused}");
    }

    #[test]
    fn an_image_without_pixels_is_refused() {
        // Found by the file_inspect fuzz target: a GIF whose screen is 4099 × 0 pixels.
        let gif = b"GIF89a\x03\x10\x00\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\x21\xfe\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x40\x01\x00\x3b";
        let refused = inspect(gif, PIXELS, &Allowed::default()).unwrap_err();
        assert_eq!(refused.code, Code::UnsupportedType, "{refused}");
    }

    #[test]
    fn declared_types() {
        let allowed = Allowed::default();
        assert!(allowed.declared("image/png"));
        assert!(allowed.declared("text/markdown"));
        assert!(allowed.declared("application/octet-stream"));
        assert!(allowed.declared("video/mp4"));
        assert!(allowed.declared("audio/wav"));
        assert!(allowed.declared("Application/X-Zip-Compressed"));
        assert!(!allowed.declared("application/x-msdownload"));
        assert!(!allowed.declared("image/svg+xml"));
        assert!(!allowed.declared("text/"));
        let images = Allowed::parse("image/png, IMAGE/JPEG").unwrap();
        assert!(images.declared("image/jpeg"));
        assert!(
            !images.declared("text/markdown"),
            "text is allowed only with text/plain"
        );
        assert!(!images.declared("application/pdf"));
    }

    #[test]
    fn the_allowlist_is_mime_types() {
        for bad in [
            "",
            " , ",
            "image",
            "image/",
            "/png",
            "image/png; q=1",
            "video/*x*",
        ] {
            assert!(Allowed::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Allowed::default(), Allowed::parse(DEFAULT_ALLOWED).unwrap());
    }

    #[test]
    fn only_allowed_types_pass() {
        let pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
        assert_eq!(
            probe(pdf, &Allowed::default()).unwrap().kind,
            "application/pdf"
        );
        let images = Allowed::parse("image/png").unwrap();
        let refused = probe(pdf, &images).unwrap_err();
        assert_eq!(refused.code, Code::UnsupportedType);
        assert!(refused.message.contains("image/png"), "{refused}");
        assert!(
            probe(b"plain words", &images).is_err(),
            "no text/plain, no text"
        );
        assert_eq!(probe(&png(4, 4), &images).unwrap().size, Some((4, 4)));
        // An MP4 (ftyp box, brand isom) is sniffed as video/mp4 and allowed by default.
        let mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2\x00\x00\x00\x08free";
        assert_eq!(probe(mp4, &Allowed::default()).unwrap().kind, "video/mp4");
    }

    /// A GIF of 35 bytes whose screen is 8000 × 8000 pixels: its size comes from the header,
    /// and it is refused before any canvas is allocated.
    const SCREEN_BOMB: &[u8] = b"GIF89a\x40\x1f\x40\x1f\x80\x00\x00\xff\xff\xff\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

    #[test]
    fn sizes_come_from_the_header_and_large_images_are_refused_undecoded() {
        let probed = probe(SCREEN_BOMB, &Allowed::default()).unwrap();
        assert_eq!(probed.kind, "image/gif");
        assert_eq!(probed.size, Some((8000, 8000)));
        let refused = inspect(SCREEN_BOMB, PIXELS, &Allowed::default()).unwrap_err();
        assert_eq!(refused.code, Code::TooLarge, "{refused}");
        assert_eq!(
            probe(&png(640, 480), &Allowed::default()).unwrap().size,
            Some((640, 480))
        );
        assert_eq!(decode_cost(640, 480), 640 * 480 * DECODE_BYTES_PER_PIXEL);
        // At the cap, decoded; one pixel over, refused.
        assert!(inspect(&png(100, 100), 10_000, &Allowed::default()).is_ok());
        assert_eq!(
            inspect(&png(101, 100), 10_000, &Allowed::default())
                .unwrap_err()
                .code,
            Code::TooLarge
        );
    }
}
