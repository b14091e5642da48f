//! Media: what preparing an upload costs (hashing a file; decoding, stripping and thumbnailing
//! a photo) on one core, and uploads and downloads through a server on loopback.

use std::io::Cursor;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use guildhall_media_relay::media::prepare;

use crate::Results;

/// A 3000 × 2000 photo-like JPEG (6 megapixels, what a phone sends scaled down).
fn photo() -> Result<Vec<u8>> {
    let picture = image::RgbImage::from_fn(3000, 2000, |x, y| {
        let noise = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 32;
        image::Rgb([((x / 12) % 256) as u8, ((y / 8) % 256) as u8, (noise * 8) as u8])
    });
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture).write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    Ok(jpeg.into_inner())
}

/// `prepare` on one core: files (sniff + SHA-256) in MB/s, photos (complete decode, metadata
/// stripped, 256 px thumbnail) per second.
pub(crate) fn preparation(results: &mut Results) -> Result<()> {
    let file = Bytes::from(vec![7u8; 8 << 20]);
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(prepare(file.clone(), None, 256).map_err(anyhow::Error::msg)?);
    }
    let mb = f64::from(rounds) * 8.0 * 1.048_576;
    results.record("media.prepare_file_mb_per_sec", mb / start.elapsed().as_secs_f64(), "MB/s");
    let photo = Bytes::from(photo()?);
    let rounds = 5;
    let start = Instant::now();
    for _ in 0..rounds {
        let prepared =
            prepare(photo.clone(), Some("image/jpeg"), 256).map_err(anyhow::Error::msg)?;
        if prepared.thumbnail.is_none() {
            bail!("a 6 MP photo gets a thumbnail");
        }
    }
    results.record(
        "media.prepare_photo_6mp_per_sec",
        f64::from(rounds) / start.elapsed().as_secs_f64(),
        "photos/s",
    );
    Ok(())
}

/// Sequential uploads of distinct 1 MiB files, then downloads of them, through the client API
/// of a server on loopback (the local file store).
pub(crate) async fn transfer(results: &mut Results) -> Result<()> {
    let (fixture, owner) = crate::homeserver::start("media").await?;
    let http = reqwest::Client::new();
    let base = owner.url().to_owned();
    let count = 50u32;
    let mut ids = Vec::new();
    let start = Instant::now();
    for index in 0..count {
        let mut file = vec![0u8; 1 << 20];
        file[..4].copy_from_slice(&index.to_be_bytes());
        let answer: serde_json::Value = http
            .post(format!("{base}/api/v1/media"))
            .bearer_auth(owner.token())
            .body(file)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        ids.push(answer["media_id"].as_str().context("a media id")?.to_owned());
    }
    let mb = f64::from(count) * 1.048_576;
    results.record("media.upload_1mib_mb_per_sec", mb / start.elapsed().as_secs_f64(), "MB/s");
    let start = Instant::now();
    for id in &ids {
        let bytes = http
            .get(format!("{base}/api/v1/media/{id}"))
            .bearer_auth(owner.token())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        if bytes.len() != 1 << 20 {
            bail!("a download came back with {} bytes", bytes.len());
        }
    }
    results.record("media.download_1mib_mb_per_sec", mb / start.elapsed().as_secs_f64(), "MB/s");
    drop(fixture);
    Ok(())
}
