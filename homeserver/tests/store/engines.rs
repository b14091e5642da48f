//! Fresh stores of each engine for one test.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use guildhall_homeserver::store::Store;

/// Runs `case` once against a fresh SQLite store and once against a fresh PostgreSQL one.
macro_rules! on_both_engines {
    ($(#[$meta:meta])* async fn $name:ident($store:ident: Store) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($store: guildhall_homeserver::store::Store) $body

            #[tokio::test]
            async fn sqlite() {
                let (store, _dir) = $crate::engines::sqlite().await;
                case(store).await;
            }

            #[tokio::test]
            async fn postgres() {
                let store = $crate::engines::postgres().await;
                case(store).await;
            }
        }
    };
}
pub(crate) use on_both_engines;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A name no other test uses, now or in an earlier run (process ids are reused).
fn unique(prefix: &str) -> String {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store on a new SQLite file.
pub async fn sqlite() -> (Store, TempDir) {
    let dir = std::env::temp_dir().join(unique("guildhall-store"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("db.sqlite3")).await.unwrap();
    (store, TempDir(dir))
}

/// The PostgreSQL server the tests use.
pub fn postgres_url() -> String {
    std::env::var("GUILDHALL_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "GUILDHALL_TEST_POSTGRES is not set: run the tests through `cargo xtask ci`, or start \
             PostgreSQL and Redis with `cargo xtask services` and export what it prints"
        )
    })
}

/// A store on a new PostgreSQL database (left behind: the server is throwaway).
pub async fn postgres() -> Store {
    let server = postgres_url();
    let name = unique("guildhall_store");
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    let create = format!("CREATE DATABASE {name}");
    sqlx::query(sqlx::AssertSqlSafe(create)).execute(&admin).await.unwrap();
    admin.close().await;
    let (base, _) = server.rsplit_once('/').unwrap();
    Store::connect(&format!("{base}/{name}"), 8).await.unwrap()
}
