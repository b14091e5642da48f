//! Metadata stripping at the container level: the bytes of the picture stay exactly as they were
//! (no re-encoding, no quality loss); what goes is what can say where, when and with what a
//! picture was taken — EXIF (GPS position, camera serial), XMP, IPTC, comments, text chunks —
//! and anything appended after the image's end (where a second, unstripped image can hide).
//!
//! Kept: what decoding needs and what changes how a picture looks (JFIF, ICC colour profiles,
//! Adobe colour transforms, PNG gamma and physical size, animation loop counts) — and the one
//! EXIF field that does: a picture's orientation, written back as an EXIF block holding nothing
//! else (a phone photo stored sideways would otherwise show sideways).

use super::sniff::ImageKind;

/// Bytes that do not parse as the image format they were sniffed as.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct Malformed(&'static str);

/// `bytes` without their metadata; `bytes` must be of the given kind.
pub fn strip(kind: ImageKind, bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    match kind {
        ImageKind::Jpeg => jpeg(bytes),
        ImageKind::Png => png(bytes),
        ImageKind::Gif => gif(bytes),
        ImageKind::Webp => webp(bytes),
    }
}

/// The EXIF orientation (2 to 8) a TIFF block carries, if any other than "as stored".
fn orientation(exif: &[u8]) -> Option<u8> {
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let value = image::metadata::Orientation::from_exif_chunk(tiff)?.to_exif();
    (value != 1).then_some(value)
}

/// A TIFF block (little-endian) whose only entry is the orientation `value`.
fn orientation_tiff(value: u8) -> Vec<u8> {
    let mut tiff = b"II*\0\x08\0\0\0".to_vec(); // byte order, magic, first IFD at 8
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry:
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation,
    tiff.extend_from_slice(&3u16.to_le_bytes()); // a SHORT,
    tiff.extend_from_slice(&1u32.to_le_bytes()); // one of them,
    tiff.extend_from_slice(&[value, 0, 0, 0]); // the value (padded to 4 bytes);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no further IFD
    tiff
}

/// The CRC-32 of PNG chunks (ISO 3309).
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn take<'a>(
    bytes: &'a [u8],
    at: usize,
    len: usize,
    what: &'static str,
) -> Result<&'a [u8], Malformed> {
    at.checked_add(len).and_then(|end| bytes.get(at..end)).ok_or(Malformed(what))
}

fn be16(bytes: &[u8], at: usize, what: &'static str) -> Result<usize, Malformed> {
    let b = take(bytes, at, 2, what)?;
    Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// JPEG: segments up to the first scan, then entropy-coded data (in which a marker is `FF`
/// followed by anything but `00`, a restart marker or fill) until the end-of-image marker.
fn jpeg(bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    const WHAT: &str = "JPEG";
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Malformed(WHAT));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut at = 2;
    loop {
        // Fill bytes may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let marker = take(bytes, at, 2, WHAT)?;
        if marker[0] != 0xFF {
            return Err(Malformed(WHAT));
        }
        let code = marker[1];
        match code {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Ok(out); // Anything after the end of the image goes.
            }
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(marker);
                at += 2;
                continue;
            }
            _ => {}
        }
        let len = be16(bytes, at + 2, WHAT)?;
        if len < 2 {
            return Err(Malformed(WHAT));
        }
        let segment = take(bytes, at, 2 + len, WHAT)?;
        let payload = &segment[4..];
        if code == 0xE1
            && payload.starts_with(b"Exif\0\0")
            && let Some(value) = orientation(payload)
        {
            let exif = [&b"Exif\0\0"[..], &orientation_tiff(value)].concat();
            let len = u16::try_from(exif.len() + 2).map_err(|_| Malformed(WHAT))?;
            out.extend_from_slice(&[0xFF, 0xE1]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&exif);
        }
        let keep = match code {
            // APP0: JFIF's densities, without the thumbnail it may embed (of the uncropped
            // original); JFXX (thumbnails only) goes.
            0xE0 if payload.starts_with(b"JFIF\0") && payload.len() >= 14 => {
                out.extend_from_slice(&[0xFF, 0xE0, 0, 16]);
                out.extend_from_slice(&payload[..12]);
                out.extend_from_slice(&[0, 0]); // no thumbnail
                false
            }
            0xE2 => payload.starts_with(b"ICC_PROFILE\0"), // APP2: colour profile (not MPF)
            0xEE => payload.starts_with(b"Adobe"),         // APP14: Adobe colour transform
            0xE0..=0xEF | 0xFE => false,                   // EXIF, XMP, IPTC, …, comments
            _ => true,                                     // tables, frames, scans
        };
        if keep {
            out.extend_from_slice(segment);
        }
        at += 2 + len;
        if code == 0xDA {
            // Entropy-coded data of the scan, copied until the next real marker.
            let start = at;
            loop {
                let b = *bytes.get(at).ok_or(Malformed(WHAT))?;
                if b == 0xFF {
                    let next = *bytes.get(at + 1).ok_or(Malformed(WHAT))?;
                    if next != 0x00 && !(0xD0..=0xD7).contains(&next) && next != 0xFF {
                        break;
                    }
                    at += if next == 0xFF { 1 } else { 2 };
                } else {
                    at += 1;
                }
            }
            out.extend_from_slice(&bytes[start..at]);
        }
    }
}

/// PNG: chunks until `IEND`; text, EXIF and timestamp chunks go.
fn png(bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    const WHAT: &str = "PNG";
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return Err(Malformed(WHAT));
    }
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(SIGNATURE);
    let mut at = SIGNATURE.len();
    loop {
        let header = take(bytes, at, 8, WHAT)?;
        let len = usize::try_from(u32::from_be_bytes([header[0], header[1], header[2], header[3]]))
            .map_err(|_| Malformed(WHAT))?;
        let kind = &header[4..8];
        let chunk = take(bytes, at, 12usize.checked_add(len).ok_or(Malformed(WHAT))?, WHAT)?;
        // What decoding and the picture's look need (APNG's animation chunks included); every
        // other chunk goes, known (text, time, EXIF) or not (private chunks, provenance blobs).
        const KEPT: [&[u8; 4]; 17] = [
            b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"iCCP",
            b"sBIT", b"pHYs", b"bKGD", b"acTL", b"fcTL", b"fdAT", b"cICP", b"cLLI",
        ];
        if KEPT.iter().any(|kept| *kept == kind) {
            out.extend_from_slice(chunk);
        } else if kind == b"eXIf"
            && let Some(value) = orientation(&chunk[8..8 + len])
        {
            let tiff = orientation_tiff(value);
            let len = u32::try_from(tiff.len()).map_err(|_| Malformed(WHAT))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(b"eXIf");
            out.extend_from_slice(&tiff);
            out.extend_from_slice(&crc32(&[b"eXIf", &tiff]).to_be_bytes());
        }
        at += chunk.len();
        if kind == b"IEND" {
            return Ok(out);
        }
    }
}

/// GIF: comment extensions and application extensions other than the animation loop count go.
fn gif(bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    const WHAT: &str = "GIF";
    if !(bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) {
        return Err(Malformed(WHAT));
    }
    let color_table =
        |flags: u8| if flags & 0x80 != 0 { 3usize << ((flags & 0x07) + 1) } else { 0 };
    // The sub-blocks that follow, ending with an empty one: their total length.
    let sub_blocks = |mut at: usize| -> Result<usize, Malformed> {
        let start = at;
        loop {
            let len = usize::from(*bytes.get(at).ok_or(Malformed(WHAT))?);
            at += 1 + len;
            if len == 0 {
                return Ok(at - start);
            }
        }
    };
    let screen = take(bytes, 6, 7, WHAT)?;
    let header = 13 + color_table(screen[4]);
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(take(bytes, 0, header, WHAT)?);
    let mut at = header;
    loop {
        match *bytes.get(at).ok_or(Malformed(WHAT))? {
            0x3B => {
                out.push(0x3B);
                return Ok(out);
            }
            0x2C => {
                let descriptor = take(bytes, at, 10, WHAT)?;
                let image = 10 + color_table(descriptor[9]) + 1; // + LZW minimum code size
                take(bytes, at, image, WHAT)?;
                let len = image + sub_blocks(at + image)?;
                out.extend_from_slice(take(bytes, at, len, WHAT)?);
                at += len;
            }
            0x21 => {
                let label = *bytes.get(at + 1).ok_or(Malformed(WHAT))?;
                let len = 2 + sub_blocks(at + 2)?;
                let block = take(bytes, at, len, WHAT)?;
                let keep = match label {
                    0xFE => false,
                    0xFF => {
                        let app = block.get(3..14).unwrap_or_default();
                        // Loop counts, and the colour profile.
                        app == b"NETSCAPE2.0" || app == b"ANIMEXTS1.0" || app == b"ICCRGBG1012"
                    }
                    _ => true,
                };
                if keep {
                    out.extend_from_slice(block);
                }
                at += len;
            }
            _ => return Err(Malformed(WHAT)),
        }
    }
}

/// WebP: a RIFF container; the `EXIF` and `XMP ` chunks go and the extended header's flags
/// stop announcing them.
fn webp(bytes: &[u8]) -> Result<Vec<u8>, Malformed> {
    const WHAT: &str = "WebP";
    let header = take(bytes, 0, 12, WHAT)?;
    if &header[..4] != b"RIFF" || &header[8..12] != b"WEBP" {
        return Err(Malformed(WHAT));
    }
    let riff_len =
        usize::try_from(u32::from_le_bytes([header[4], header[5], header[6], header[7]]))
            .map_err(|_| Malformed(WHAT))?;
    let end = riff_len.checked_add(8).filter(|end| *end <= bytes.len()).ok_or(Malformed(WHAT))?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(header);
    let mut at = 12;
    let (mut kept_orientation, mut vp8x_at) = (None, None);
    while at < end {
        let chunk_header = take(bytes, at, 8, WHAT)?;
        let len = usize::try_from(u32::from_le_bytes([
            chunk_header[4],
            chunk_header[5],
            chunk_header[6],
            chunk_header[7],
        ]))
        .map_err(|_| Malformed(WHAT))?;
        let padded = 8 + len + (len & 1);
        let chunk = take(bytes, at, padded, WHAT)?;
        match &chunk[..4] {
            b"EXIF" => kept_orientation = orientation(&chunk[8..8 + len]),
            b"VP8X" => {
                vp8x_at = Some(out.len());
                out.extend_from_slice(chunk);
            }
            // The picture, its alpha, animation and colour profile; anything else goes.
            b"VP8 " | b"VP8L" | b"ALPH" | b"ANIM" | b"ANMF" | b"ICCP" => {
                out.extend_from_slice(chunk);
            }
            _ => {}
        }
        at += padded;
    }
    if let Some(value) = kept_orientation {
        // EXIF comes after the image data (the container's order).
        let tiff = orientation_tiff(value);
        let len = u32::try_from(tiff.len()).map_err(|_| Malformed(WHAT))?;
        out.extend_from_slice(b"EXIF");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&tiff);
        if tiff.len() % 2 == 1 {
            out.push(0);
        }
    }
    if let Some(vp8x) = vp8x_at {
        let flags = out.get_mut(vp8x + 8).ok_or(Malformed(WHAT))?;
        *flags &= !0x04; // no XMP
        if kept_orientation.is_none() {
            *flags &= !0x08; // no EXIF
        }
    }
    let riff_len = u32::try_from(out.len() - 8).map_err(|_| Malformed(WHAT))?;
    out[4..8].copy_from_slice(&riff_len.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(code: u8, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(payload.len() + 2).unwrap();
        [&[0xFF, code][..], &len.to_be_bytes(), payload].concat()
    }

    #[test]
    fn jpeg_loses_exif_xmp_comments_and_trailers_and_keeps_the_picture() {
        let scan = [0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56];
        let picture = [
            segment(0xDB, &[0; 65]),
            segment(0xC0, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]),
            segment(0xDA, &[1, 1, 0, 0, 63, 0]),
            scan.to_vec(),
        ]
        .concat();
        let original = [
            &[0xFF, 0xD8][..],
            &segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"),
            &segment(0xE1, b"Exif\0\0GPS 51.5N 0.12W"),
            &segment(0xE2, b"ICC_PROFILE\0\x01\x01profile"),
            &segment(0xE2, b"MPF\0second image"),
            &segment(0xFE, b"shot on a phone"),
            &picture,
            &[0xFF, 0xD9],
            b"appended: another JPEG with EXIF",
        ]
        .concat();
        let stripped = jpeg(&original).unwrap();
        let expected = [
            &[0xFF, 0xD8][..],
            &segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"),
            &segment(0xE2, b"ICC_PROFILE\0\x01\x01profile"),
            &picture,
            &[0xFF, 0xD9],
        ]
        .concat();
        assert_eq!(stripped, expected);
        assert_eq!(jpeg(&stripped).unwrap(), stripped, "stripping is idempotent");
    }

    #[test]
    fn jfif_keeps_its_densities_and_loses_its_thumbnail_and_jfxx_goes() {
        let thumbnail = [9u8; 2 * 2 * 3];
        let jfif = [&b"JFIF\0\x01\x02\x01\0\x48\0\x48\x02\x02"[..], &thumbnail].concat();
        let scan = [segment(0xDA, &[1, 1, 0, 0, 63, 0]), vec![0x12, 0xFF, 0xD9]].concat();
        let original = [
            &[0xFF, 0xD8][..],
            &segment(0xE0, &jfif),
            &segment(0xE0, b"JFXX\0\x10thumbnail"),
            &segment(0xEE, b"NotAdobe"),
            &scan,
        ]
        .concat();
        let expected =
            [&[0xFF, 0xD8][..], &segment(0xE0, b"JFIF\0\x01\x02\x01\0\x48\0\x48\0\0"), &scan]
                .concat();
        assert_eq!(jpeg(&original).unwrap(), expected);
    }

    #[test]
    fn the_orientation_survives_alone() {
        // Big-endian EXIF: Make (0x010F) "Phone", Orientation (0x0112) 6, GPS IFD pointer.
        let mut tiff = b"MM\0*\0\0\0\x08\0\x03".to_vec();
        tiff.extend_from_slice(b"\x01\x0f\0\x02\0\0\0\x04Pho\0");
        tiff.extend_from_slice(b"\x01\x12\0\x03\0\0\0\x01\0\x06\0\0");
        tiff.extend_from_slice(b"\x88\x25\0\x04\0\0\0\x01\0\0\0\0");
        tiff.extend_from_slice(b"\0\0\0\0");
        assert_eq!(orientation(&tiff), Some(6));
        let original = [
            &[0xFF, 0xD8][..],
            &segment(0xE1, &[&b"Exif\0\0"[..], &tiff].concat()),
            &segment(0xDA, &[1, 1, 0, 0, 63, 0]),
            &[0x12, 0x34],
            &[0xFF, 0xD9],
        ]
        .concat();
        let stripped = jpeg(&original).unwrap();
        let kept = [&b"Exif\0\0"[..], &orientation_tiff(6)].concat();
        let expected = [
            &[0xFF, 0xD8][..],
            &segment(0xE1, &kept),
            &segment(0xDA, &[1, 1, 0, 0, 63, 0]),
            &[0x12, 0x34],
            &[0xFF, 0xD9],
        ]
        .concat();
        assert_eq!(stripped, expected);
        assert!(!contains(&stripped, b"Pho"), "the camera make is gone");
        assert_eq!(orientation(&kept), Some(6), "and what is left still reads as 6");
        // Upright pictures need no EXIF at all.
        assert_eq!(orientation(&orientation_tiff(1)), None);
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn truncated_or_foreign_bytes_are_malformed() {
        assert!(jpeg(b"\xFF\xD8\xFF\xE1\x00\x20Exif").is_err());
        assert!(jpeg(b"GIF89a").is_err());
        assert!(png(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR").is_err());
        assert!(gif(b"GIF89a\x01\0\x01\0\x80").is_err());
        assert!(webp(b"RIFF\xff\xff\0\0WEBPVP8 ").is_err());
    }

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let len = u32::try_from(data.len()).unwrap().to_be_bytes();
        [&len[..], kind, data, &[0, 0, 0, 0]].concat()
    }

    #[test]
    fn png_loses_text_exif_and_time() {
        let ihdr = png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]);
        let idat = png_chunk(b"IDAT", b"pixels");
        let iend = png_chunk(b"IEND", b"");
        let original = [
            &b"\x89PNG\r\n\x1a\n"[..],
            &ihdr,
            &png_chunk(b"tEXt", b"Author\0someone"),
            &png_chunk(b"caBX", b"provenance manifest"),
            &png_chunk(b"prVt", b"a private chunk"),
            &png_chunk(b"eXIf", b"MM\0*GPS"),
            &png_chunk(b"gAMA", &[0, 0, 0xB1, 0x8F]),
            &idat,
            &png_chunk(b"tIME", &[7, 0xEA, 1, 1, 0, 0, 0]),
            &iend,
            b"trailing",
        ]
        .concat();
        let expected = [
            &b"\x89PNG\r\n\x1a\n"[..],
            &ihdr,
            &png_chunk(b"gAMA", &[0, 0, 0xB1, 0x8F]),
            &idat,
            &iend,
        ]
        .concat();
        assert_eq!(png(&original).unwrap(), expected);
    }

    #[test]
    fn gif_loses_comments_and_foreign_application_blocks_and_keeps_looping() {
        let header = b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff".to_vec();
        let netscape = b"\x21\xff\x0bNETSCAPE2.0\x03\x01\0\0\0".to_vec();
        let xmp = b"\x21\xff\x0bXMP DataXMP\x05hello\0".to_vec();
        let comment = b"\x21\xfe\x04note\0".to_vec();
        let image = b"\x2c\0\0\0\0\x01\0\x01\0\0\x02\x02\x44\x01\0".to_vec();
        let original = [&header[..], &netscape, &xmp, &comment, &image, b"\x3b"].concat();
        let expected = [&header[..], &netscape, &image, b"\x3b"].concat();
        assert_eq!(gif(&original).unwrap(), expected);
    }

    #[test]
    fn webp_loses_exif_and_xmp_and_its_header_says_so() {
        let vp8x = [&b"VP8X\x0a\0\0\0"[..], &[0x2C, 0, 0, 0, 0, 0, 0, 0, 0, 0]].concat();
        let image = b"VP8L\x05\0\0\0abcde\0".to_vec();
        let exif = b"EXIF\x03\0\0\0GPS\0".to_vec();
        let xmp = b"XMP \x02\0\0\0<x".to_vec();
        let body = [&b"WEBP"[..], &vp8x, &image, &exif, &xmp].concat();
        let len = u32::try_from(body.len()).unwrap().to_le_bytes();
        let original = [&b"RIFF"[..], &len, &body].concat();
        let stripped = webp(&original).unwrap();
        let kept_vp8x = [&b"VP8X\x0a\0\0\0"[..], &[0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0]].concat();
        let body = [&b"WEBP"[..], &kept_vp8x, &image].concat();
        let len = u32::try_from(body.len()).unwrap().to_le_bytes();
        assert_eq!(stripped, [&b"RIFF"[..], &len, &body].concat());
    }
}
