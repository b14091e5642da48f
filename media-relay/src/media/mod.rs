//! Content-addressed media (spec 19): the bytes of every upload named by their SHA-256, what an
//! upload is (sniffed, never taken from the client), metadata stripped from pictures, thumbnails,
//! a malware scan hook, byte ranges, and the object store the bytes live in.
//!
//! The homeserver decides who may upload, fetch and see what; this module only turns bytes into
//! stored media.

pub mod picture;
pub mod range;
pub mod scan;
pub mod sniff;
pub mod store;
pub mod strip;

use bytes::Bytes;
use guildhall_spec::MediaId;
use sha2::{Digest, Sha256};

pub use sniff::ImageKind;
pub use store::{MediaStore, S3Settings, StorageError};

/// The media id of `bytes` (spec 19.1).
pub fn media_id(bytes: &[u8]) -> MediaId {
    MediaId::from_sha256(&Sha256::digest(bytes).into())
}

/// An upload made ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What is stored: the upload, without its metadata when it is a picture.
    pub bytes: Bytes,
    /// The id of `bytes`.
    pub id: MediaId,
    /// The sniffed type.
    pub content_type: &'static str,
    /// Width and height, for pictures.
    pub dimensions: Option<(u32, u32)>,
    /// A thumbnail of a picture larger than the thumbnail square, and its id.
    pub thumbnail: Option<(MediaId, Bytes)>,
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The declared `Content-Type` contradicts the bytes.
    #[error("the file is {sniffed}, not {declared}")]
    Mislabelled {
        /// What the client said.
        declared: String,
        /// What the bytes are.
        sniffed: &'static str,
    },
    /// A picture that does not parse or decode.
    #[error("{0}")]
    Corrupt(String),
    /// Nothing to store.
    #[error("the file is empty")]
    Empty,
}

/// Sniffs an upload, checks it against the declared type, and for pictures decodes it
/// completely, strips its metadata and makes a thumbnail (`thumbnail_side` pixels square).
/// CPU-heavy for pictures: run it on a blocking thread.
pub fn prepare(
    upload: Bytes,
    declared: Option<&str>,
    thumbnail_side: u32,
) -> Result<Prepared, Refused> {
    if upload.is_empty() {
        return Err(Refused::Empty);
    }
    let content_type = sniff::sniff(&upload);
    if sniff::contradicts(declared, content_type) {
        return Err(Refused::Mislabelled {
            declared: declared.unwrap_or_default().chars().take(100).collect(),
            sniffed: content_type,
        });
    }
    let Some(kind) = ImageKind::of(content_type) else {
        let id = media_id(&upload);
        return Ok(Prepared { bytes: upload, id, content_type, dimensions: None, thumbnail: None });
    };
    let stripped = strip::strip(kind, &upload).map_err(|e| Refused::Corrupt(e.to_string()))?;
    let picture = picture::inspect(kind, &stripped, thumbnail_side)
        .map_err(|e| Refused::Corrupt(e.to_string()))?;
    let bytes = Bytes::from(stripped);
    let thumbnail =
        picture.thumbnail.map(|thumbnail| (media_id(&thumbnail), Bytes::from(thumbnail)));
    Ok(Prepared {
        id: media_id(&bytes),
        bytes,
        content_type,
        dimensions: Some((picture.width, picture.height)),
        thumbnail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_base64url_sha256() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(media_id(b"abc").as_str(), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }

    #[test]
    fn uploads_are_refused_when_empty_or_mislabelled_and_files_pass_through() {
        assert_eq!(prepare(Bytes::new(), None, 256).unwrap_err(), Refused::Empty);
        let text = Bytes::from_static(b"just some notes\n");
        assert!(matches!(
            prepare(text.clone(), Some("image/png"), 256),
            Err(Refused::Mislabelled { sniffed: "text/plain; charset=utf-8", .. })
        ));
        let file = prepare(text.clone(), Some("text/plain"), 256).unwrap();
        assert_eq!((file.bytes, file.id, file.dimensions), (text.clone(), media_id(&text), None));
    }
}
