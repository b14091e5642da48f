//! Store cases: media rows, uploads and the references that keep them.

use guildhall_homeserver::store::{GuildRef, MediaRow, Store, now_ms};
use guildhall_spec::{GuildId, MediaId, ServerName, UserId};

use crate::engines::on_both_engines;

fn user(name: &str) -> UserId {
    UserId::parse(&format!("@{name}:example.org")).unwrap()
}

fn media_id(n: u8) -> MediaId {
    MediaId::from_sha256(&[n; 32])
}

fn row(n: u8, size: u64, thumbnail: Option<u8>, uploader: Option<&str>) -> MediaRow {
    MediaRow {
        media_id: media_id(n),
        size,
        content_type: "image/png".to_owned(),
        dimensions: thumbnail.map(|_| (640, 480)),
        thumbnail_id: thumbnail.map(media_id),
        uploader: uploader.map(user),
    }
}

on_both_engines! {
    async fn uploads_count_against_their_users_until_referenced(store: Store) {
        let (alice, bob) = (user("alice"), user("bob"));
        let (picture, thumbnail, other) = (media_id(1), media_id(2), media_id(3));
        store.record_media(&row(2, 10, None, None)).await.unwrap();
        store.record_media(&row(1, 100, Some(2), Some("alice"))).await.unwrap();
        store.record_media(&row(3, 50, None, Some("alice"))).await.unwrap();
        store.record_media(&row(3, 50, None, Some("bob"))).await.unwrap();
        assert_eq!(store.media(&picture).await.unwrap(), Some(row(1, 100, Some(2), Some("alice"))));
        assert_eq!(
            store.media(&other).await.unwrap().unwrap().uploader,
            Some(alice.clone()),
            "the first uploader"
        );
        assert_eq!(store.media(&media_id(9)).await.unwrap(), None);
        // Stored again without its thumbnail: the thumbnail stays.
        store.record_media(&row(1, 100, None, None)).await.unwrap();
        assert_eq!(
            store.media(&picture).await.unwrap().unwrap().thumbnail_id,
            Some(thumbnail.clone())
        );

        assert!(store.uploaded_by(&picture, &alice).await.unwrap());
        assert!(!store.uploaded_by(&picture, &bob).await.unwrap());
        assert!(store.uploaded_by(&other, &bob).await.unwrap());
        assert!(!store.uploaded_by(&thumbnail, &alice).await.unwrap());
        assert_eq!(store.pending_upload_bytes(&alice).await.unwrap(), 150);
        assert_eq!(store.pending_upload_bytes(&bob).await.unwrap(), 50);
        assert_eq!(store.pending_upload_bytes(&user("carol")).await.unwrap(), 0);

        assert_eq!(store.thumbnail_of(&thumbnail).await.unwrap(), Some(picture.clone()));
        assert_eq!(store.thumbnail_of(&picture).await.unwrap(), None);

        store.set_avatar_ref(&alice, Some(&picture)).await.unwrap();
        store.set_avatar_ref(&bob, Some(&picture)).await.unwrap();
        assert_eq!(store.pending_upload_bytes(&alice).await.unwrap(), 50, "the avatar is used");
        let mut owners = store.media_avatar_of(&picture).await.unwrap();
        owners.sort();
        assert_eq!(owners, [alice.clone(), bob.clone()]);
        store.set_avatar_ref(&alice, Some(&other)).await.unwrap();
        assert_eq!(
            store.media_avatar_of(&picture).await.unwrap(),
            std::slice::from_ref(&bob),
            "replaced"
        );
        assert_eq!(store.pending_upload_bytes(&alice).await.unwrap(), 0);
        store.set_avatar_ref(&bob, None).await.unwrap();
        assert!(store.media_avatar_of(&picture).await.unwrap().is_empty());
        assert_eq!(store.pending_upload_bytes(&alice).await.unwrap(), 100);
        assert!(
            store.media_guild_refs(&picture).await.unwrap().is_empty(),
            "avatars are no guild's"
        );

        let missing =
            store.lease_media(&[picture.clone(), media_id(9), other.clone()]).await.unwrap();
        assert_eq!(missing, [media_id(9)]);
        assert!(store.lease_media(&[]).await.unwrap().is_empty());
    }
}

on_both_engines! {
    async fn unreferenced_media_is_collected_thumbnails_a_round_later(store: Store) {
        let alice = user("alice");
        let (picture, thumbnail, avatar) = (media_id(1), media_id(2), media_id(3));
        store.record_media(&row(2, 10, None, None)).await.unwrap();
        store.record_media(&row(1, 100, Some(2), Some("alice"))).await.unwrap();
        store.record_media(&row(3, 50, None, Some("alice"))).await.unwrap();
        store.set_avatar_ref(&alice, Some(&avatar)).await.unwrap();

        assert!(
            store.collect_media(0, 10).await.unwrap().is_empty(),
            "all within their grace period"
        );
        let later = now_ms() + 60_000;
        assert_eq!(store.collect_media(later, 10).await.unwrap(), std::slice::from_ref(&picture));
        assert_eq!(store.media(&picture).await.unwrap(), None);
        assert!(!store.uploaded_by(&picture, &alice).await.unwrap(), "its uploads went along");
        assert_eq!(store.thumbnail_of(&thumbnail).await.unwrap(), None);
        assert_eq!(store.collect_media(later, 10).await.unwrap(), [thumbnail]);
        assert!(store.collect_media(later, 10).await.unwrap().is_empty());
        assert!(store.media(&avatar).await.unwrap().is_some(), "still an avatar");

        for n in 10..15 {
            store.record_media(&row(n, 1, None, None)).await.unwrap();
        }
        assert_eq!(store.collect_media(later, 2).await.unwrap().len(), 2, "at most the limit");
        assert_eq!(store.collect_media(later, 10).await.unwrap().len(), 3);
    }
}

/// A database the engine sees through `Store`, and this test through its own pool, to put
/// guild references where the guild log's projections would.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Raw {
    async fn execute(&self, sql: &str) {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }
}

async fn guild_refs_are_verified_by_source_or_host(store: Store, raw: Raw) {
    let media = media_id(1);
    store.record_media(&row(1, 100, None, Some("alice"))).await.unwrap();
    let id = media.as_str();
    for (kind, guild, owner, source) in [
        ("message", "!g1:host.example", "$e1", "peer.example"),
        ("message", "!g1:host.example", "$e2", "peer.example"),
        ("message", "!g2:other.example", "$e3", "other.example"),
        ("guild_icon", "!g3:third.example", "!g3:third.example", "third.example"),
    ] {
        raw.execute(&format!(
            "INSERT INTO media_refs (media_id, kind, guild_id, owner, source)
             VALUES ('{id}', '{kind}', '{guild}', '{owner}', '{source}')"
        ))
        .await;
    }
    let guild_ref = |guild: &str, source: &str, verified| GuildRef {
        guild_id: GuildId::parse(guild).unwrap(),
        source: Some(ServerName::parse(source).unwrap()),
        verified,
    };
    let mut refs = store.media_guild_refs(&media).await.unwrap();
    refs.sort_by(|a, b| a.guild_id.cmp(&b.guild_id));
    assert_eq!(
        refs,
        [
            guild_ref("!g1:host.example", "peer.example", false),
            guild_ref("!g2:other.example", "other.example", false),
            guild_ref("!g3:third.example", "third.example", false),
        ],
        "one per guild and source"
    );
    assert_eq!(store.pending_upload_bytes(&user("alice")).await.unwrap(), 0, "referenced");

    // A name that only ends like the host's is not the host.
    store.verify_media_refs(&media, &ServerName::parse("ost.example").unwrap()).await.unwrap();
    store
        .verify_media_refs(&media_id(9), &ServerName::parse("host.example").unwrap())
        .await
        .unwrap();
    assert!(store.media_guild_refs(&media).await.unwrap().iter().all(|r| !r.verified));
    // By the guild's host, and by the server that made the reference.
    store.verify_media_refs(&media, &ServerName::parse("host.example").unwrap()).await.unwrap();
    store.verify_media_refs(&media, &ServerName::parse("third.example").unwrap()).await.unwrap();
    let refs = store.media_guild_refs(&media).await.unwrap();
    let verified: Vec<(&str, bool)> =
        refs.iter().map(|r| (r.guild_id.as_str(), r.verified)).collect();
    assert_eq!(verified.len(), 3);
    assert_eq!(verified[2], ("!g2:other.example", false), "verified first: {verified:?}");
    assert!(verified[..2].iter().all(|(_, verified)| *verified));
    assert!(refs[0].vouched(&ServerName::parse("me.example").unwrap()));

    assert!(
        store.collect_media(now_ms() + 60_000, 10).await.unwrap().is_empty(),
        "kept by its guilds"
    );
}

mod guild_refs {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        let dir = std::env::temp_dir().join(format!("guildhall-media-refs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite3");
        let store = Store::open(&path).await.unwrap();
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        guild_refs_are_verified_by_source_or_host(store, Raw::Sqlite(pool)).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn postgres() {
        let server = crate::engines::postgres_url();
        let name = format!("guildhall_media_refs_{}_{}", std::process::id(), now_ms());
        let admin = sqlx::PgPool::connect(&server).await.unwrap();
        let create = format!("CREATE DATABASE {name}");
        sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
        admin.close().await;
        let (base, _) = server.rsplit_once('/').unwrap();
        let url = format!("{base}/{name}");
        let store = Store::connect(&url, 4).await.unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        guild_refs_are_verified_by_source_or_host(store, Raw::Postgres(pool)).await;
    }
}
