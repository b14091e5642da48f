//! The type of media, read from its first bytes: what a client says a file is never decides how
//! it is stored or served.

/// How many leading bytes [`sniff`] looks at.
pub const SNIFF_BYTES: usize = 8192;

/// The media type of bytes beginning with `head` (at most [`SNIFF_BYTES`] are read): a type
/// recognised by its magic number, `text/plain; charset=utf-8` for UTF-8 text without control
/// characters, else `application/octet-stream`.
pub fn sniff(head: &[u8]) -> &'static str {
    let head = &head[..head.len().min(SNIFF_BYTES)];
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    if looks_like_text(head) { TEXT } else { OCTET_STREAM }
}

/// The type of bytes nothing more is known about.
pub const OCTET_STREAM: &str = "application/octet-stream";
const TEXT: &str = "text/plain; charset=utf-8";

fn looks_like_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    // The sniffed prefix may end inside a character: only a complete invalid sequence counts.
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

/// The image formats Guildhall decodes, strips of metadata and makes thumbnails of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// JPEG.
    Jpeg,
    /// PNG (and APNG).
    Png,
    /// GIF.
    Gif,
    /// WebP.
    Webp,
}

impl ImageKind {
    /// The image kind of a sniffed media type, if it is one Guildhall processes.
    pub fn of(media_type: &str) -> Option<Self> {
        match media_type {
            "image/jpeg" => Some(Self::Jpeg),
            "image/png" => Some(Self::Png),
            "image/gif" => Some(Self::Gif),
            "image/webp" => Some(Self::Webp),
            _ => None,
        }
    }
}

/// Whether a client's declared `Content-Type` contradicts the sniffed type: a file that claims
/// to be an image, audio or video must be exactly that, and a file that is one must not claim to
/// be a different one. Anything else (no claim, `application/octet-stream`, documents whose
/// exact type varies by client) is not a contradiction; the sniffed type is what is stored.
pub fn contradicts(declared: Option<&str>, sniffed: &str) -> bool {
    let Some(declared) = declared else { return false };
    let essence = |t: &str| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let declared = match essence(declared).as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".to_owned(),
        other => other.to_owned(),
    };
    let sniffed = essence(sniffed);
    let is_media = |t: &str| ["image/", "audio/", "video/"].iter().any(|p| t.starts_with(p));
    if declared.is_empty() || declared == OCTET_STREAM || declared == sniffed {
        return false;
    }
    is_media(&declared) || is_media(&sniffed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_magic_numbers() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), "image/jpeg");
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), "image/gif");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("héllo\nworld".as_bytes()), "text/plain; charset=utf-8");
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), "application/vnd.microsoft.portable-executable");
        assert_eq!(sniff(b"\0\x01\x02binary"), OCTET_STREAM);
        assert_eq!(sniff(b""), OCTET_STREAM);
        // Cut inside a two-byte character: still text.
        assert_eq!(sniff(&"aé".as_bytes()[..2]), "text/plain; charset=utf-8");
    }

    #[test]
    fn mislabelled_media_is_a_contradiction() {
        assert!(contradicts(Some("image/png"), "image/jpeg"));
        assert!(contradicts(Some("image/png"), OCTET_STREAM));
        assert!(contradicts(Some("image/png"), "text/plain; charset=utf-8"));
        assert!(contradicts(Some("application/pdf"), "image/png"));
        assert!(!contradicts(Some("image/jpg"), "image/jpeg"));
        assert!(!contradicts(Some("IMAGE/PNG; x=y"), "image/png"));
        assert!(!contradicts(None, "image/png"));
        assert!(!contradicts(Some(OCTET_STREAM), "image/png"));
        assert!(!contradicts(Some("text/markdown"), "text/plain; charset=utf-8"));
    }
}
