//! Media on one server (spec 19): uploads stored by content hash, deduplicated, served with
//! ranges; pictures stripped of metadata and thumbnailed; bad uploads refused without leaving
//! anything behind; attachments, avatars and icons; garbage collection; the scan hook; and the
//! same on a real S3-compatible server (moto).

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use sha2::Digest;

use crate::harness::{Server, StatusCode, User, Value, assert_error, bits, call, community, json};

/// A 600 × 400 JPEG stored sideways (EXIF orientation 6: shown 400 × 600) with an EXIF block
/// naming a place and a camera, and an appended second picture: what a phone upload carries.
pub(crate) fn phone_photo() -> Vec<u8> {
    let picture = image::RgbImage::from_fn(600, 400, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture).write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    // Big-endian TIFF: Make (ASCII, at offset 38) and Orientation 6.
    let make = b"GPSLatitude 51.5007N GPSLongitude 0.1246W SerialNumber CAM-1234\0";
    let mut exif = b"Exif\0\0MM\0*\0\0\0\x08\0\x02".to_vec();
    exif.extend_from_slice(&[0x01, 0x0F, 0, 2]);
    exif.extend_from_slice(&u32::try_from(make.len()).unwrap().to_be_bytes());
    exif.extend_from_slice(&38u32.to_be_bytes());
    exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    exif.extend_from_slice(&[0, 0, 0, 0]);
    exif.extend_from_slice(make);
    let len = u16::try_from(exif.len() + 2).unwrap().to_be_bytes();
    [&jpeg[..2], &[0xFF, 0xE1], &len, &exif, &jpeg[2..], b"TRAILER-SECRET"].concat()
}

/// A small PNG.
pub(crate) fn small_png() -> Vec<u8> {
    let mut png = Cursor::new(Vec::new());
    image::DynamicImage::new_rgba8(32, 32).write_to(&mut png, image::ImageFormat::Png).unwrap();
    png.into_inner()
}

pub(crate) fn media_id(bytes: &[u8]) -> String {
    guildhall_spec::base64url::encode(sha2::Sha256::digest(bytes))
}

/// `POST /api/v1/media` with `bytes`, labelled `content_type` when given.
pub(crate) async fn upload(
    user: &User,
    bytes: &[u8],
    content_type: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = user.request(Method::POST, "/media").body(bytes.to_vec());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    call(request).await
}

/// Uploads and answers the media id.
pub(crate) async fn uploaded(user: &User, bytes: &[u8], content_type: Option<&str>) -> String {
    let (status, body) = upload(user, bytes, content_type).await;
    assert_eq!(status, StatusCode::CREATED, "upload: {body}");
    body["media_id"].as_str().expect("media id").to_owned()
}

/// `GET /api/v1<path>` for raw bytes: status, headers, body.
pub(crate) async fn fetch(
    user: &User,
    path: &str,
    range: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = user.request(Method::GET, path);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.expect("body").to_vec())
}

/// The files under a directory (recursively).
pub(crate) fn files_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files
}

/// An upload written on a raw connection (the server may answer before it has read it all):
/// the status of the answer.
async fn raw_upload(server: &Server, user: &User, headers: &str, body: Vec<u8>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(server.base_url().trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/v1/media HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n{headers}",
        server.name(),
        user.token
    );
    tokio::spawn(async move {
        // The server may close the connection while this still writes: that is its right.
        let _ = write.write_all(head.as_bytes()).await;
        let _ = write.write_all(&body).await;
    });
    let mut answer = vec![0; 12];
    read.read_exact(&mut answer).await.expect("an answer");
    let status = String::from_utf8_lossy(&answer[9..12]).to_string();
    status.parse().expect("a status code")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

#[tokio::test]
async fn uploads_are_stored_once_by_hash_and_served_whole_or_in_ranges() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let notes = b"meeting notes: bring snacks\n".repeat(10);

    let (status, answer) = upload(&alice, &notes, Some("text/plain")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = media_id(&notes);
    assert_eq!(answer["media_id"], id.as_str());
    assert_eq!(answer["size"], notes.len());
    assert_eq!(answer["content_type"], "text/plain; charset=utf-8");
    // The same bytes from someone else, labelled nothing: the same media, stored once.
    assert_eq!(uploaded(&bob, &notes, None).await, id);
    let stored = files_in(&server.dir().join("media"));
    assert_eq!(stored.len(), 1, "one object for equal uploads");
    assert_eq!(std::fs::read(&stored[0]).unwrap(), notes);

    let (status, headers, body) = fetch(&bob, &format!("/media/{id}"), None).await;
    assert_eq!((status, body.as_slice()), (StatusCode::OK, notes.as_slice()));
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["accept-ranges"], "bytes");
    assert_eq!(headers["content-disposition"], "attachment");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    let (status, headers, body) = fetch(&bob, &format!("/media/{id}"), Some("bytes=9-13")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &notes[9..14]));
    assert_eq!(headers["content-range"], format!("bytes 9-13/{}", notes.len()).as_str());
    let (status, _, body) = fetch(&bob, &format!("/media/{id}"), Some("bytes=-6")).await;
    assert_eq!((status, body.as_slice()), (StatusCode::PARTIAL_CONTENT, &notes[notes.len() - 6..]));
    let past_the_end = format!("bytes={}-", notes.len());
    let (status, headers, _) = fetch(&bob, &format!("/media/{id}"), Some(&past_the_end)).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(headers["content-range"], format!("bytes */{}", notes.len()).as_str());

    // Someone who neither uploaded it nor shares a guild that refers to it cannot read it.
    let carol = server.register("carol").await;
    assert_error(&carol.get(&format!("/media/{id}")).await, StatusCode::NOT_FOUND, "unknown_media");
    let (status, info) = alice.get(&format!("/media/{id}/info")).await;
    assert_eq!((status, &info["size"]), (StatusCode::OK, &json!(notes.len())));
    let unknown = alice.get(&format!("/media/{}", media_id(b"never uploaded"))).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "unknown_media");
    assert_error(&alice.get("/media/not-a-hash").await, StatusCode::BAD_REQUEST, "invalid_id");
    let anonymous = server.client();
    assert_eq!(anonymous.get(&format!("/media/{id}")).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn pictures_lose_their_metadata_and_get_a_thumbnail() {
    let server = Server::start().await;
    let alice = server.register("alice").await;
    let photo = phone_photo();

    let (status, answer) = upload(&alice, &photo, Some("image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let id = answer["media_id"].as_str().unwrap();
    assert_ne!(id, media_id(&photo), "the stored picture is the stripped one");
    // Sizes as shown: the picture is stored sideways.
    assert_eq!((answer["width"].as_u64(), answer["height"].as_u64()), (Some(400), Some(600)));
    let (status, headers, stored) = fetch(&alice, &format!("/media/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(media_id(&stored), id, "served bytes hash to their id");
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["content-disposition"], "inline");
    for secret in [&b"GPSLatitude"[..], b"SerialNumber", b"TRAILER-SECRET"] {
        assert!(!contains(&stored, secret), "{} survived", String::from_utf8_lossy(secret));
    }
    let picture = image::load_from_memory(&stored).expect("still a picture");
    assert_eq!((picture.width(), picture.height()), (600, 400));
    // Only the orientation is left of the EXIF block.
    use image::ImageDecoder as _;
    let mut decoder = image::ImageReader::new(Cursor::new(&stored))
        .with_guessed_format()
        .unwrap()
        .into_decoder()
        .unwrap();
    assert_eq!(decoder.orientation().unwrap(), image::metadata::Orientation::Rotate90);

    let thumbnail_id = answer["thumbnail_id"].as_str().expect("a thumbnail");
    let (status, _, thumbnail) = fetch(&alice, &format!("/media/{id}/thumbnail"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(media_id(&thumbnail), thumbnail_id);
    let thumbnail = image::load_from_memory(&thumbnail).expect("a picture");
    assert_eq!((thumbnail.width(), thumbnail.height()), (171, 256), "upright");

    // A picture within the square is its own thumbnail; a text file has none.
    let small = uploaded(&alice, &small_png(), Some("image/png")).await;
    let (status, _, body) = fetch(&alice, &format!("/media/{small}/thumbnail"), None).await;
    assert_eq!((status, media_id(&body)), (StatusCode::OK, small.clone()));
    let text = uploaded(&alice, b"plain words", None).await;
    let none = alice.get(&format!("/media/{text}/thumbnail")).await;
    assert_error(&none, StatusCode::NOT_FOUND, "no_thumbnail");
}

#[tokio::test]
async fn oversized_mislabelled_corrupt_and_empty_uploads_leave_nothing_behind() {
    let server =
        Server::builder().env("GUILDHALL_MEDIA__MAX_UPLOAD_BYTES", "8388608").start().await;
    let alice = server.register("alice").await;

    // Refused from the announced length, before the body is read; and, with no length
    // announced, as soon as the bytes that arrived pass the limit.
    let announced = format!("Content-Length: {}\r\n\r\n", (8 << 20) + 1);
    assert_eq!(raw_upload(&server, &alice, &announced, Vec::new()).await, 413);
    let mut chunked = Vec::new();
    for _ in 0..9 {
        chunked.extend_from_slice(format!("{:x}\r\n", 1 << 20).as_bytes());
        chunked.extend_from_slice(&vec![b'b'; 1 << 20]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let streamed = raw_upload(&server, &alice, "Transfer-Encoding: chunked\r\n\r\n", chunked);
    assert_eq!(streamed.await, 413);

    let text_as_png = upload(&alice, b"<html><script>alert(1)</script>", Some("image/png")).await;
    assert_error(&text_as_png, StatusCode::UNSUPPORTED_MEDIA_TYPE, "media_type_mismatch");
    let png = small_png();
    let jpeg_label = upload(&alice, &png, Some("image/jpeg")).await;
    assert_error(&jpeg_label, StatusCode::UNSUPPORTED_MEDIA_TYPE, "media_type_mismatch");
    let truncated = upload(&alice, &png[..png.len() - 20], Some("image/png")).await;
    assert_error(&truncated, StatusCode::BAD_REQUEST, "corrupt_media");
    let mut photo = phone_photo();
    photo.truncate(photo.len() / 3);
    assert_error(&upload(&alice, &photo, None).await, StatusCode::BAD_REQUEST, "corrupt_media");
    assert_error(&upload(&alice, b"", None).await, StatusCode::BAD_REQUEST, "empty_media");

    assert!(files_in(&server.dir().join("media")).is_empty(), "a refused upload stores nothing");
    // Exactly at the limit is fine.
    let at_limit = vec![b'c'; 8 << 20];
    assert_eq!(uploaded(&alice, &at_limit, None).await, media_id(&at_limit));
}

#[tokio::test]
async fn attachments_need_attach_files_and_media_held_here() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["owner", "member"]).await;
    let (owner, member) = (&users[0], &users[1]);
    let photo = uploaded(member, &phone_photo(), None).await;
    let notes = uploaded(member, b"the notes", None).await;

    let path = format!("/channels/{}/messages", guild.general);
    let (status, message) =
        member.post(&path, json!({"content": "look", "attachments": [photo, notes]})).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["attachments"], json!([photo, notes]));
    let history = owner.history(&guild.general).await;
    assert_eq!(history.last().unwrap()["attachments"], json!([photo, notes]));
    // Live too: the gateway's MESSAGE_CREATE lists them.
    let (mut gateway, _) =
        crate::harness::Gateway::identified(&server, &owner.token, crate::harness::Encoding::Json)
            .await;
    let (status, live) =
        member.post(&path, json!({"content": "live", "attachments": [notes]})).await;
    assert_eq!(status, StatusCode::CREATED, "{live}");
    let frame = gateway.expect_dispatch("MESSAGE_CREATE", |d| d["id"] == live["id"]).await;
    assert_eq!(frame["d"]["attachments"], json!([notes]));

    let unknown = json!({"content": "x", "attachments": [media_id(b"not here")]});
    assert_error(&member.post(&path, unknown).await, StatusCode::NOT_FOUND, "unknown_media");
    // Knowing the hash of someone else's file that nothing shares does not publish it.
    let private = uploaded(member, b"member's private file", None).await;
    let private_picture = uploaded(member, &small_png(), None).await;
    let leak = json!({"content": "x", "attachments": [private]});
    assert_error(&owner.post(&path, leak).await, StatusCode::NOT_FOUND, "unknown_media");
    let avatar = owner.patch("/users/@me", json!({"avatar": private_picture})).await;
    assert_error(&avatar, StatusCode::NOT_FOUND, "unknown_media");
    let twice = json!({"content": "x", "attachments": [notes, notes]});
    assert_error(&member.post(&path, twice).await, StatusCode::BAD_REQUEST, "duplicate_attachment");
    let eleven: Vec<String> = (0..11).map(|i| media_id(format!("file {i}").as_bytes())).collect();
    for i in 0..11 {
        uploaded(member, format!("file {i}").as_bytes(), None).await;
    }
    let too_many = member.post(&path, json!({"content": "x", "attachments": eleven})).await;
    assert_error(&too_many, StatusCode::BAD_REQUEST, "too_many_attachments");
    // Everyone in the guild may read the attachments; the owner did not upload them.
    let (status, _, bytes) = fetch(owner, &format!("/media/{notes}"), None).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, &b"the notes"[..]));

    // Without ATTACH_FILES in the channel: words yes, files no.
    let attach_files = 1u64 << 15;
    let overwrite = json!({"kind": "role", "deny": bits::text(attach_files)});
    let overwrite_path = format!("/channels/{}/permissions/everyone", guild.general);
    assert_eq!(owner.put(&overwrite_path, overwrite).await.0, StatusCode::OK);
    let refused = member.post(&path, json!({"content": "again", "attachments": [notes]})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "missing_permission");
    assert_eq!(member.post(&path, json!({"content": "words only"})).await.0, StatusCode::CREATED);
}

#[tokio::test]
async fn avatars_and_icons_are_pictures_uploaded_first() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["owner"]).await;
    let owner = &users[0];
    let picture = uploaded(owner, &small_png(), None).await;
    let text = uploaded(owner, b"not a picture", None).await;

    let refused = owner.patch("/users/@me", json!({"avatar": text})).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "not_a_picture");
    let unknown = owner.patch("/users/@me", json!({"avatar": media_id(b"elsewhere")})).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "unknown_media");
    let (status, me) = owner.patch("/users/@me", json!({"avatar": picture})).await;
    assert_eq!((status, &me["avatar"]), (StatusCode::OK, &json!(picture)));

    let guild_path = format!("/guilds/{}", guild.id);
    let refused = owner.patch(&guild_path, json!({"icon": text})).await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "not_a_picture");
    let (status, updated) =
        owner.patch(&guild_path, json!({"icon": picture, "description": "ours"})).await;
    assert_eq!((status, &updated["icon"]), (StatusCode::OK, &json!(picture)), "{updated}");
    // Absent leaves a value, `null` removes it (spec 08).
    let (status, updated) = owner.patch(&guild_path, json!({"description": null})).await;
    assert_eq!(
        (status, &updated["icon"], &updated["description"]),
        (StatusCode::OK, &json!(picture), &Value::Null)
    );
    let (status, updated) = owner.patch(&guild_path, json!({"icon": null})).await;
    assert_eq!((status, &updated["icon"]), (StatusCode::OK, &Value::Null), "{updated}");
}

/// Collects media unreferenced for `grace_secs` through test control, until a round collects
/// nothing (a thumbnail loses its reference when its picture goes, and goes in the next round).
async fn collect(server: &Server, grace_secs: u64) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("{}/_guildhall/test/v1/media/collect", server.base_url());
    loop {
        // Each round cuts off at its own start: what a round unreferenced is older by the next.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let answer = call(client.post(&url).json(&json!({"grace_secs": grace_secs}))).await;
        assert_eq!(answer.0, StatusCode::OK, "collect: {}", answer.1);
        if answer.1["collected"] == 0 {
            return;
        }
    }
}

#[tokio::test]
async fn unreferenced_media_is_collected_and_referenced_media_kept() {
    let server =
        Server::builder().env("GUILDHALL_SERVER__DANGER_ENABLE_TEST_CONTROL", "true").start().await;
    let (guild, users) = community(&server, &["owner"]).await;
    let owner = &users[0];
    let media_dir = server.dir().join("media");
    let kept = uploaded(owner, b"attached and kept", None).await;
    let photo = uploaded(owner, &phone_photo(), None).await; // and its thumbnail
    let path = format!("/channels/{}/messages", guild.general);
    let (status, message) =
        owner.post(&path, json!({"content": "files", "attachments": [kept, photo]})).await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let stray = uploaded(owner, b"uploaded, never attached", None).await;

    // Within the grace period nothing goes; past it, the stray upload goes, attached media stays.
    collect(&server, 3600).await;
    assert_eq!(files_in(&media_dir).len(), 4);
    collect(&server, 0).await;
    assert_error(
        &owner.get(&format!("/media/{stray}")).await,
        StatusCode::NOT_FOUND,
        "unknown_media",
    );
    assert_eq!(files_in(&media_dir).len(), 3, "the two attachments and the thumbnail stay");
    assert_eq!(owner.get(&format!("/media/{kept}/info")).await.0, StatusCode::OK);

    // Deleting the message unreferences its attachments: they go, and so does the thumbnail.
    let message_id = message["id"].as_str().unwrap();
    assert_eq!(owner.delete(&format!("{path}/{message_id}")).await.0, StatusCode::NO_CONTENT);
    collect(&server, 0).await;
    assert_eq!(files_in(&media_dir), Vec::<std::path::PathBuf>::new());
    let gone = owner.get(&format!("/media/{kept}")).await;
    assert_error(&gone, StatusCode::NOT_FOUND, "unknown_media");
    // Uploading it again brings it back.
    assert_eq!(uploaded(owner, b"attached and kept", None).await, kept);
    assert_eq!(fetch(owner, &format!("/media/{kept}"), None).await.2, b"attached and kept");
}

#[tokio::test]
async fn the_collector_runs_on_its_own() {
    let server = Server::builder()
        .env("GUILDHALL_MEDIA__GC_GRACE_SECS", "1")
        .env("GUILDHALL_MEDIA__GC_INTERVAL_SECS", "1")
        .start()
        .await;
    let owner = server.register("owner").await;
    let stray = uploaded(&owner, b"uploaded, never attached", None).await;
    let status = super::federation::eventually(
        Duration::from_secs(30),
        || async { owner.get(&format!("/media/{stray}")).await.0 },
        |status| *status == StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the stray upload was never collected");
    assert!(files_in(&server.dir().join("media")).is_empty());
}

#[tokio::test]
async fn unused_uploads_count_against_a_quota_until_used() {
    let server =
        Server::builder().env("GUILDHALL_MEDIA__MAX_PENDING_BYTES_PER_USER", "1000").start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let (alice, bob) = (&users[0], &users[1]);
    let first = uploaded(alice, &[b'a'; 600], None).await;
    let refused = upload(alice, &[b'b'; 600], None).await;
    assert_error(&refused, StatusCode::TOO_MANY_REQUESTS, "upload_quota_exceeded");
    uploaded(bob, &[b'b'; 600], None).await; // each user has their own
    // Used in a message, the first upload no longer counts.
    let path = format!("/channels/{}/messages", guild.general);
    let (status, _) = alice.post(&path, json!({"content": "file", "attachments": [first]})).await;
    assert_eq!(status, StatusCode::CREATED);
    uploaded(alice, &[b'b'; 600], None).await;
}

#[tokio::test]
async fn uploads_are_limited_per_user() {
    let server = Server::builder().env("GUILDHALL_MEDIA__UPLOADS_PER_MINUTE", "2").start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    uploaded(&alice, b"one", None).await;
    uploaded(&alice, b"two", None).await;
    assert_error(
        &upload(&alice, b"three", None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    uploaded(&bob, b"bob's first", None).await;
}

/// ClamAV's own daemon on a loopback port, with one signature of its own (no virus database can
/// be downloaded here): the EICAR test string. Killed when dropped.
struct Clamd {
    child: std::process::Child,
    address: String,
    _dir: std::path::PathBuf,
}

impl Clamd {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "guildhall-clamd-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(dir.join("db")).unwrap();
        let body: String =
            b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE".iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.join("db/guildhall.ndb"), format!("Guildhall.Test.EICAR:0:*:{body}\n"))
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = format!(
            "DatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nForeground yes\nLogFile {}\n",
            dir.join("db").display(),
            dir.join("clamd.log").display()
        );
        std::fs::write(dir.join("clamd.conf"), config).unwrap();
        // Debian puts it in /usr/sbin, which not every PATH has.
        let program = ["/usr/sbin/clamd", "/usr/local/sbin/clamd"]
            .into_iter()
            .find(|path| std::path::Path::new(path).is_file())
            .unwrap_or("clamd");
        let child = std::process::Command::new(program)
            .arg("-c")
            .arg(dir.join("clamd.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("ClamAV's clamd (apt-get install clamav-daemon)");
        let address = format!("127.0.0.1:{port}");
        let ping = || async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut socket = tokio::net::TcpStream::connect(&address).await.ok()?;
            socket.write_all(b"zPING\0").await.ok()?;
            let mut answer = Vec::new();
            socket.read_to_end(&mut answer).await.ok()?;
            Some(answer)
        };
        let answer = super::federation::eventually(Duration::from_secs(60), ping, |answer| {
            answer.as_deref() == Some(b"PONG\0")
        })
        .await;
        assert_eq!(answer.as_deref(), Some(&b"PONG\0"[..]), "clamd did not start");
        Self { child, address, _dir: dir }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

#[tokio::test]
async fn the_scan_hook_refuses_what_clamav_flags_and_fails_closed() {
    let clamd = Clamd::start().await;
    let server = Server::builder().env("GUILDHALL_MEDIA__CLAMD", &clamd.address).start().await;
    let alice = server.register("alice").await;
    let eicar = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

    let refused = upload(&alice, eicar, None).await;
    assert_error(&refused, StatusCode::UNPROCESSABLE_ENTITY, "media_rejected");
    assert_eq!(uploaded(&alice, b"a harmless file", None).await, media_id(b"a harmless file"));
    // What is scanned is what is stored: EICAR in a JPEG comment goes with the comment, and the
    // picture passes.
    let mut jpeg = Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(8, 8).write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    let len = u16::try_from(eicar.len() + 2).unwrap().to_be_bytes();
    let commented = [&jpeg[..2], &[0xFF, 0xFE], &len, eicar, &jpeg[2..]].concat();
    let picture = uploaded(&alice, &commented, Some("image/jpeg")).await;
    let (_, _, stored) = fetch(&alice, &format!("/media/{picture}"), None).await;
    assert!(!contains(&stored, b"EICAR"));
    assert_eq!(files_in(&server.dir().join("media")).len(), 2, "only clean files are stored");

    // No scanner: no upload (fail closed).
    let closed = Server::builder().env("GUILDHALL_MEDIA__CLAMD", "127.0.0.1:9").start().await;
    let bob = closed.register("bob").await;
    let refused = upload(&bob, b"anything", None).await;
    assert_error(&refused, StatusCode::SERVICE_UNAVAILABLE, "scan_unavailable");
}

/// moto's S3 server on a loopback port, with one empty bucket; killed when dropped.
struct Moto {
    child: std::process::Child,
    endpoint: String,
    bucket: String,
}

impl Moto {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto's server (pip install -r interop/s3/requirements.txt)");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: "guildhall-media".into(),
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let bucket = format!("{}/{}", moto.endpoint, moto.bucket);
        let created = super::federation::eventually(
            Duration::from_secs(60),
            || async { http.put(&bucket).send().await.map(|r| r.status()).ok() },
            |status| *status == Some(StatusCode::OK),
        )
        .await;
        assert_eq!(created, Some(StatusCode::OK), "moto did not start");
        moto
    }

    /// The keys in the bucket.
    async fn keys(&self) -> Vec<String> {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let url = format!("{}/{}?list-type=2", self.endpoint, self.bucket);
        let listing = http.get(url).send().await.unwrap().text().await.unwrap();
        listing
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn media_live_in_an_s3_bucket_when_configured() {
    let moto = Moto::start().await;
    let server = Server::builder()
        .env("GUILDHALL_MEDIA__BACKEND", "s3")
        .env("GUILDHALL_MEDIA__S3__ENDPOINT", &moto.endpoint)
        .env("GUILDHALL_MEDIA__S3__BUCKET", &moto.bucket)
        .env("GUILDHALL_MEDIA__S3__ACCESS_KEY_ID", "testing")
        .env("GUILDHALL_MEDIA__S3__SECRET_ACCESS_KEY", "testing")
        .env("GUILDHALL_MEDIA__S3__DANGER_ALLOW_PLAIN_HTTP", "true")
        .env("GUILDHALL_SERVER__DANGER_ENABLE_TEST_CONTROL", "true")
        .start()
        .await;
    let (guild, users) = community(&server, &["owner", "member"]).await;
    let (owner, member) = (&users[0], &users[1]);

    // A large file goes up in parts; equal uploads are one object.
    let video: Vec<u8> = (0..(9u32 << 20)).map(|i| (i % 251) as u8).collect();
    let big = uploaded(owner, &video, None).await;
    assert_eq!(uploaded(member, &video, None).await, big);
    let notes = uploaded(owner, b"notes in a bucket", None).await;
    let mut keys = moto.keys().await;
    keys.sort();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(&big)) && keys.iter().any(|k| k.ends_with(&notes)));
    assert!(files_in(&server.dir().join("media")).is_empty(), "nothing on local disk");

    let (status, _, bytes) = fetch(member, &format!("/media/{big}"), None).await;
    assert!(status == StatusCode::OK && bytes == video, "the large file comes back whole");
    let (status, headers, part) =
        fetch(member, &format!("/media/{big}"), Some("bytes=1000-1009")).await;
    assert_eq!((status, part.as_slice()), (StatusCode::PARTIAL_CONTENT, &video[1000..1010]));
    assert_eq!(headers["content-range"], format!("bytes 1000-1009/{}", video.len()).as_str());

    // Attached media stays; unreferenced media leaves the bucket.
    let path = format!("/channels/{}/messages", guild.general);
    let (status, _) = owner.post(&path, json!({"content": "notes", "attachments": [notes]})).await;
    assert_eq!(status, StatusCode::CREATED);
    collect(&server, 0).await;
    let left = moto.keys().await;
    assert!(left.len() == 1 && left[0].ends_with(&notes), "{left:?}");
}
