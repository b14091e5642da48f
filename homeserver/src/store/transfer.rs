//! Moving data between engines and files: `guildhall admin backup`, `restore` and
//! `migrate-to-postgres`. These work on the databases directly, beside the engines, and never
//! run inside a serving process.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, bail, ensure};
use futures_util::TryStreamExt;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{Connection, Row, SqliteConnection};

/// Rows copied per INSERT (PostgreSQL takes at most 65,535 parameters a statement).
const BATCH: usize = 500;

/// SQLite tables that have no PostgreSQL counterpart: the FTS5 index (PostgreSQL's is a
/// generated column) and its shadow tables, and the migration bookkeeping of each engine.
fn sqlite_only(table: &str) -> bool {
    table.starts_with("messages_fts") || table.starts_with("_sqlx") || table.starts_with("sqlite_")
}

/// What `migrate-to-postgres` copied and checked.
#[derive(Debug, Default)]
pub struct Migrated {
    /// Rows per table, equal on both sides.
    pub rows: BTreeMap<String, i64>,
    /// Guilds whose log head (seq and event id) was checked on both sides.
    pub guild_heads: usize,
}

/// Copies every row of the SQLite database at `sqlite` into the PostgreSQL database at
/// `postgres` (migrated here, and required to be empty), from one consistent snapshot, then
/// verifies the row count of every table and the head of every guild log.
pub async fn sqlite_to_postgres(sqlite: &Path, postgres: &str) -> anyhow::Result<Migrated> {
    ensure!(sqlite.exists(), "no SQLite database at {}", sqlite.display());
    // Bring the source to the current schema first: both sides must agree on every column.
    drop(super::SqliteStore::open(sqlite).await?);
    let target = super::PostgresStore::connect(postgres, 4).await?;
    let pg = target.pool().clone();
    let options = SqliteConnectOptions::from_str("sqlite:")?.filename(sqlite).read_only(true);
    let mut source = SqliteConnection::connect_with(&options).await?;
    // One read transaction: the copy is one consistent snapshot even if a server still writes.
    sqlx::query("BEGIN").execute(&mut source).await?;

    let tables = postgres_tables_in_dependency_order(&pg).await?;
    for table in &tables {
        let rows: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&pg)
                .await?;
        ensure!(
            rows == 0 || table == "trust_settings",
            "the PostgreSQL database is not empty ({table} has rows)"
        );
    }
    let sqlite_tables: BTreeSet<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&mut source)
            .await?
            .into_iter()
            .filter(|name: &String| !sqlite_only(name))
            .collect();
    let missing: Vec<_> = sqlite_tables.iter().filter(|t| !tables.contains(t)).collect();
    ensure!(missing.is_empty(), "tables without a PostgreSQL counterpart: {missing:?}");

    // One transaction: the copy, the identities moved past it and the checks commit together
    // or not at all (a failed run leaves the target empty, to run again).
    let mut migrated = Migrated::default();
    let mut tx = pg.begin().await?;
    for table in &tables {
        let copied = copy_table(&mut source, &mut tx, table).await?;
        migrated.rows.insert(table.clone(), copied);
    }
    restart_identities(&mut tx).await?;

    // Verify: the same number of rows everywhere, and every guild log ends where it did.
    for (table, copied) in &migrated.rows {
        let there: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut *tx)
                .await?;
        ensure!(there == *copied, "{table}: {copied} rows read, {there} in PostgreSQL");
    }
    let heads: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT guild_id, head_seq, head_event_id FROM guilds ORDER BY guild_id")
            .fetch_all(&mut source)
            .await?;
    for (guild, seq, event_id) in &heads {
        let there: Option<(i64, String)> =
            sqlx::query_as("SELECT head_seq, head_event_id FROM guilds WHERE guild_id = $1")
                .bind(guild)
                .fetch_optional(&mut *tx)
                .await?;
        ensure!(there.as_ref() == Some(&(*seq, event_id.clone())), "guild {guild}: head differs");
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, event_id FROM events WHERE guild_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(guild)
        .fetch_optional(&mut *tx)
        .await?;
        let last_here: Option<(i64, String)> = sqlx::query_as(
            "SELECT seq, event_id FROM events WHERE guild_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(guild)
        .fetch_optional(&mut source)
        .await?;
        ensure!(last == last_here, "guild {guild}: the last stored event differs");
    }
    migrated.guild_heads = heads.len();
    tx.commit().await?;
    sqlx::query("ROLLBACK").execute(&mut source).await?;
    Ok(migrated)
}

/// The application's tables, each after the tables its foreign keys point at.
async fn postgres_tables_in_dependency_order(pg: &PgPool) -> anyhow::Result<Vec<String>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name NOT LIKE '\\_sqlx%'
         ORDER BY table_name",
    )
    .fetch_all(pg)
    .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c
         WHERE c.contype = 'f' AND c.conrelid <> c.confrelid",
    )
    .fetch_all(pg)
    .await?;
    let mut ordered = Vec::new();
    let mut left: BTreeSet<String> = tables.into_iter().collect();
    while !left.is_empty() {
        let ready: Vec<String> = left
            .iter()
            .filter(|table| edges.iter().all(|(from, to)| from != *table || !left.contains(to)))
            .cloned()
            .collect();
        ensure!(!ready.is_empty(), "foreign keys form a cycle among {left:?}");
        for table in ready {
            left.remove(&table);
            ordered.push(table);
        }
    }
    Ok(ordered)
}

/// A PostgreSQL column and how to read it from SQLite.
struct Target {
    name: String,
    kind: String,
}

/// Copies one table; returns the rows copied.
async fn copy_table(
    source: &mut SqliteConnection,
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
) -> anyhow::Result<i64> {
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_generated::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    let described: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT name FROM pragma_table_info('{table}')"
    )))
    .fetch_all(&mut *source)
    .await?;
    let mut targets = Vec::new();
    let mut select = Vec::new();
    for (name, kind, generated) in columns {
        if generated == "ALWAYS" {
            continue;
        }
        if described.contains(&name) {
            select.push(format!("\"{name}\""));
        } else if name == "id" {
            // PostgreSQL names the key that SQLite keeps as the implicit rowid.
            select.push("rowid".to_owned());
        } else {
            bail!("{table}.{name} has no SQLite counterpart");
        }
        targets.push(Target { name, kind });
    }
    if targets.is_empty() {
        return Ok(0);
    }
    if table == "trust_settings" {
        // Its one row is created by the PostgreSQL migration; the SQLite row replaces it.
        sqlx::query("DELETE FROM trust_settings").execute(&mut **tx).await?;
    }
    let names = targets.iter().map(|t| format!("\"{}\"", t.name)).collect::<Vec<_>>().join(", ");
    let query = format!("SELECT {} FROM {table}", select.join(", "));
    // Read as a stream, a batch at a time: a table may be larger than memory.
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(query)).fetch(&mut *source);
    let mut copied = 0_i64;
    let mut chunk = Vec::with_capacity(BATCH);
    loop {
        let row = rows.try_next().await?;
        let done = row.is_none();
        chunk.extend(row);
        if chunk.len() < BATCH && !done {
            continue;
        }
        if chunk.is_empty() {
            break;
        }
        let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
            "INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE "
        ));
        let mut failed = None;
        insert.push_values(&chunk, |mut values, row| {
            for (index, target) in targets.iter().enumerate() {
                if let Err(error) = bind_value(&mut values, row, index, &target.kind) {
                    failed.get_or_insert(format!("{table}.{}: {error}", target.name));
                }
            }
        });
        if let Some(failed) = failed {
            bail!("reading {failed}");
        }
        insert.build().execute(&mut **tx).await.with_context(|| format!("copying {table}"))?;
        copied += i64::try_from(chunk.len()).unwrap_or(i64::MAX);
        chunk.clear();
        if done {
            break;
        }
    }
    Ok(copied)
}

/// Binds column `index` of a SQLite row as the PostgreSQL type `kind` wants.
fn bind_value(
    values: &mut sqlx::query_builder::Separated<'_, sqlx::Postgres, &'static str>,
    row: &sqlx::sqlite::SqliteRow,
    index: usize,
    kind: &str,
) -> Result<(), sqlx::Error> {
    match kind {
        "bigint" | "integer" | "smallint" => {
            values.push_bind(row.try_get::<Option<i64>, _>(index)?);
        }
        "boolean" => {
            values.push_bind(row.try_get::<Option<i64>, _>(index)?.map(|flag| flag != 0));
        }
        "bytea" => {
            values.push_bind(row.try_get::<Option<Vec<u8>>, _>(index)?);
        }
        _ => {
            values.push_bind(row.try_get::<Option<String>, _>(index)?);
        }
    }
    Ok(())
}

/// Moves every identity column's sequence past the largest value copied into it.
async fn restart_identities(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
) -> anyhow::Result<()> {
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND is_identity = 'YES'",
    )
    .fetch_all(&mut **tx)
    .await?;
    for (table, column) in identities {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             COALESCE((SELECT MAX(\"{column}\") FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes a consistent copy of the SQLite database at `database` to `file` while the server
/// may keep running (`VACUUM INTO` reads one snapshot).
pub async fn backup_sqlite(database: &Path, file: &Path) -> anyhow::Result<()> {
    ensure!(!file.exists(), "{} exists already", file.display());
    let pool = SqlitePool::connect_with(
        SqliteConnectOptions::from_str("sqlite:")?.filename(database).read_only(true),
    )
    .await?;
    let target = file.to_str().context("the backup path is not UTF-8")?;
    sqlx::query("VACUUM INTO ?").bind(target).execute(&pool).await?;
    pool.close().await;
    Ok(())
}

/// Writes a `pg_dump` archive (custom format) of the database at `url` to `file`.
pub fn backup_postgres(url: &str, file: &Path) -> anyhow::Result<()> {
    ensure!(!file.exists(), "{} exists already", file.display());
    let mut command = pg_tool("pg_dump");
    connection_env(&mut command, url)?;
    command.args(["--format=custom", "--no-owner", "--file"]).arg(file);
    run(command, "pg_dump")
}

/// Restores a `pg_dump` archive into the (empty) database at `url`.
pub fn restore_postgres(url: &str, file: &Path) -> anyhow::Result<()> {
    let mut command = pg_tool("pg_restore");
    connection_env(&mut command, url)?;
    command.args(["--no-owner", "--exit-on-error", "--single-transaction", "--dbname"]);
    // The database name alone: everything else (and the password) travels in the environment.
    let parsed = url::Url::parse(url)?;
    command.arg(parsed.path().trim_start_matches('/')).arg(file);
    run(command, "pg_restore")
}

/// A PostgreSQL client program: where Debian puts it (the newest version), or on `PATH`.
fn pg_tool(name: &str) -> Command {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|versions| {
            versions.filter_map(Result::ok).map(|v| v.path().join("bin").join(name)).collect()
        })
        .unwrap_or_default();
    found.retain(|path| path.exists());
    // Version directories sort as numbers only while they have the same number of digits.
    found.sort_by_key(|path| {
        let version = path.parent().and_then(Path::parent).and_then(Path::file_name);
        version.and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0)
    });
    Command::new(found.pop().unwrap_or_else(|| name.into()))
}

/// Passes a connection URL to a libpq program through its environment, so that no password
/// appears in the process list.
fn connection_env(command: &mut Command, url: &str) -> anyhow::Result<()> {
    let parsed = url::Url::parse(url).context("the database url is not a URL")?;
    let decode = percent_decode;
    if let Some(host) = parsed.host_str() {
        command.env("PGHOST", host);
    }
    if let Some(port) = parsed.port() {
        command.env("PGPORT", port.to_string());
    }
    if !parsed.username().is_empty() {
        command.env("PGUSER", decode(parsed.username()));
    }
    if let Some(password) = parsed.password() {
        command.env("PGPASSWORD", decode(password));
    }
    command.env("PGDATABASE", decode(parsed.path().trim_start_matches('/')));
    for (key, value) in parsed.query_pairs() {
        if key == "sslmode" {
            command.env("PGSSLMODE", value.as_ref());
        }
    }
    Ok(())
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(String::new, |(_, value)| value.into_owned())
}

fn run(mut command: Command, name: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("running {name}"))?;
    if !output.status.success() {
        bail!("{name} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}
