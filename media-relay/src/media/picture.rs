//! Decoding pictures: the check that an upload sniffed as an image really is one, its size, and
//! its thumbnail. CPU-heavy: callers run it on a blocking thread.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::sniff::ImageKind;

/// The widest or tallest picture decoded, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels a decoded picture may have (50 megapixels: a 200 MB RGBA buffer).
pub const MAX_PIXELS: u64 = 50_000_000;
/// The most memory a decoder may take for one picture.
pub const MAX_DECODE_BYTES: u64 = 256 << 20;

/// What decoding a picture found: its size and thumbnail as shown (after its EXIF orientation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// A smaller copy that fits in the thumbnail square (PNG when the picture has transparency,
    /// else JPEG); `None` when the picture already fits.
    pub thumbnail: Option<Vec<u8>>,
}

/// Bytes sniffed as a picture that do not decode, or decode past the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a readable picture: {0}")]
pub struct Undecodable(String);

/// Decodes `bytes` completely (a truncated or corrupt picture fails) and makes a thumbnail that
/// fits in `thumbnail_side` × `thumbnail_side`.
pub fn inspect(kind: ImageKind, bytes: &[u8], thumbnail_side: u32) -> Result<Picture, Undecodable> {
    let format = match kind {
        ImageKind::Jpeg => ImageFormat::Jpeg,
        ImageKind::Png => ImageFormat::Png,
        ImageKind::Gif => ImageFormat::Gif,
        ImageKind::Webp => ImageFormat::WebP,
    };
    let fail = |e: image::ImageError| Undecodable(e.to_string());
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    // The header first: a picture that would decode past the limits is refused before any
    // pixel buffer exists.
    let mut header = ImageReader::with_format(Cursor::new(bytes), format);
    header.limits(limits.clone());
    let (width, height) = header.into_dimensions().map_err(fail)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(Undecodable(format!("{width}×{height} is more than {MAX_PIXELS} pixels")));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(fail)?;
    // Shown as the EXIF orientation says (sizes and thumbnail alike).
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut picture = DynamicImage::from_decoder(decoder).map_err(fail)?;
    picture.apply_orientation(orientation);
    let (width, height) = (picture.width(), picture.height());
    let thumbnail = if width.max(height) > thumbnail_side {
        Some(encode_thumbnail(&picture.thumbnail(thumbnail_side, thumbnail_side)).map_err(fail)?)
    } else {
        None
    };
    Ok(Picture { width, height, thumbnail })
}

fn encode_thumbnail(thumbnail: &DynamicImage) -> image::ImageResult<Vec<u8>> {
    let mut out = Cursor::new(Vec::new());
    if thumbnail.color().has_alpha() {
        thumbnail.write_to(&mut out, ImageFormat::Png)?;
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80);
        thumbnail.to_rgb8().write_with_encoder(encoder)?;
    }
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn large_pictures_get_a_thumbnail_that_fits_and_small_ones_none() {
        let big = inspect(ImageKind::Png, &png(600, 300), 256).unwrap();
        assert_eq!((big.width, big.height), (600, 300));
        let thumbnail = image::load_from_memory(&big.thumbnail.unwrap()).unwrap();
        assert_eq!((thumbnail.width(), thumbnail.height()), (256, 128));
        assert_eq!(inspect(ImageKind::Png, &png(64, 64), 256).unwrap().thumbnail, None);
    }

    #[test]
    fn pictures_past_the_pixel_limit_are_refused_from_their_header() {
        // A small PNG whose header claims 10,000 × 10,000 pixels (its CRC fixed to match).
        let mut header = png(10, 10);
        header[16..20].copy_from_slice(&10_000u32.to_be_bytes());
        header[20..24].copy_from_slice(&10_000u32.to_be_bytes());
        let crc = crc32(&header[12..29]);
        header[29..33].copy_from_slice(&crc.to_be_bytes());
        let error = inspect(ImageKind::Png, &header, 256).unwrap_err();
        assert!(error.to_string().contains("pixels"), "{error}");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn corrupt_and_truncated_pictures_fail() {
        let bytes = png(100, 100);
        assert!(inspect(ImageKind::Png, &bytes[..bytes.len() / 2], 256).is_err());
        let mut corrupt = bytes.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xFF; // a CRC no longer matches
        assert!(inspect(ImageKind::Png, &corrupt, 256).is_err());
        assert!(inspect(ImageKind::Jpeg, &bytes, 256).is_err());
    }
}
