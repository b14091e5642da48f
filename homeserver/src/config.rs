//! Configuration: one TOML file plus `GUILDHALL_*` environment overrides.
//!
//! The documented defaults live in `guildhall.example.toml`, which is written to a new data
//! directory on first start and parsed by a test, so the file and the structs cannot drift.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The example configuration, with every setting at its default.
pub const EXAMPLE: &str = include_str!("../guildhall.example.toml");

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listening and naming.
    pub server: ServerConfig,
    /// Account creation.
    pub registration: RegistrationConfig,
    /// Size and count limits.
    pub limits: LimitsConfig,
    /// Request rate limits.
    pub rate_limits: RateLimitConfig,
    /// The WebSocket gateway.
    pub gateway: GatewayConfig,
    /// Server-to-server federation.
    pub federation: FederationConfig,
    /// Voice channels through LiveKit (off unless configured).
    pub voice: VoiceConfig,
    /// Uploads, attachments and the media store.
    pub media: MediaConfig,
    /// The database: SQLite in the data directory, or PostgreSQL.
    pub database: DatabaseConfig,
    /// Prometheus metrics (off unless configured).
    pub metrics: MetricsConfig,
    /// The cross-node layer of several nodes on one database (off unless configured).
    pub redis: RedisConfig,
    /// The Discord-compatible bot API.
    pub bots: BotsConfig,
}

/// `[bots]`: the Discord-compatible bot API (`/api/v10`, `/discord/gateway`) and bot
/// applications.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BotsConfig {
    /// Serve the bot API and let users create bots.
    pub enabled: bool,
    /// The gateway's URL as clients reach it; empty: from each request's `Host`.
    pub gateway_url: String,
    /// Bots one user may own.
    pub max_per_user: u32,
}

impl Default for BotsConfig {
    fn default() -> Self {
        Self { enabled: true, gateway_url: String::new(), max_per_user: 10 }
    }
}

/// `[metrics]`: where Prometheus scrapes this node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `host:port` of a listener serving only `/metrics`, apart from the public port; empty:
    /// no metrics.
    pub listen: String,
}

/// `[database]`: which engine holds the server's data.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Empty: `guildhall.sqlite3` in the data directory. `sqlite:///path/to/file` or
    /// `postgres://user:password@host:5432/dbname`.
    pub url: String,
    /// The most connections this node opens to PostgreSQL.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self { url: String::new(), max_connections: 16 }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    // The URL may hold a password, which never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engine = self.url.split_once("://").map_or("sqlite", |(scheme, _)| scheme);
        f.debug_struct("DatabaseConfig")
            .field("engine", &engine)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// `[redis]`: the Redis that several nodes of one server share for the bus, presence, rate
/// limits and resumable gateway sessions. With `url` empty, all of that stays in this process.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` (or `rediss://` for TLS); empty: one node, no Redis.
    pub url: String,
}

impl std::fmt::Debug for RedisConfig {
    // The URL may hold a password, which never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig").field("configured", &!self.url.is_empty()).finish()
    }
}

/// `[media]`: where media live and what uploads may be (spec 19).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// `local` (a directory) or `s3` (an S3-compatible bucket, `[media.s3]`).
    pub backend: MediaBackend,
    /// The directory of the `local` backend; empty: `media/` in the data directory.
    pub path: String,
    /// The largest upload in bytes (at least 8 MiB, at most 100 MiB; spec 19.4).
    pub max_upload_bytes: u64,
    /// The largest media fetched from another server, in bytes (at least 8 MiB, at most 100 MiB).
    pub max_remote_bytes: u64,
    /// Uploads processed at once; each may hold `max_upload_bytes` in memory.
    pub max_concurrent_uploads: usize,
    /// Fetches from other servers at once; each may hold `max_remote_bytes` in memory.
    pub max_concurrent_fetches: usize,
    /// The longest an upload's body may take to arrive, in seconds.
    pub upload_timeout_secs: u64,
    /// Uploads one user may make per minute (also the burst); two at most at once.
    pub uploads_per_minute: u32,
    /// The bytes one user's uploads nothing refers to yet may hold, in total (they go when used,
    /// or after the grace period).
    pub max_pending_bytes_per_user: u64,
    /// The side of the square thumbnails fit in, in pixels.
    pub thumbnail_side: u32,
    /// Media nothing refers to is deleted after this many seconds unreferenced.
    pub gc_grace_secs: u64,
    /// How often unreferenced media is looked for, in seconds.
    pub gc_interval_secs: u64,
    /// A ClamAV daemon every upload is shown to before it is stored: `host:port` or
    /// `unix:/path/to/clamd.ctl`. Empty: no scan.
    pub clamd: String,
    /// The longest a scan may take, in seconds; an upload whose scan fails is refused.
    pub scan_timeout_secs: u64,
    /// The bucket of the `s3` backend.
    pub s3: S3Config,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            backend: MediaBackend::Local,
            path: String::new(),
            max_upload_bytes: 25 << 20,
            max_remote_bytes: 25 << 20,
            max_concurrent_uploads: 4,
            max_concurrent_fetches: 4,
            upload_timeout_secs: 300,
            uploads_per_minute: 30,
            max_pending_bytes_per_user: 512 << 20,
            thumbnail_side: 256,
            gc_grace_secs: 86_400,
            gc_interval_secs: 3_600,
            clamd: String::new(),
            scan_timeout_secs: 30,
            s3: S3Config::default(),
        }
    }
}

/// Where media bytes are kept.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaBackend {
    /// A local directory.
    Local,
    /// An S3-compatible bucket.
    S3,
}

/// `[media.s3]`: an S3-compatible bucket (AWS, MinIO, Garage, Ceph, …). The bucket must exist.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// The service URL, e.g. `https://s3.eu-central-1.amazonaws.com`.
    pub endpoint: String,
    /// The region.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Talk plain HTTP to the endpoint (credentials and media unencrypted on the wire).
    pub danger_allow_plain_http: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            region: "us-east-1".into(),
            bucket: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            danger_allow_plain_http: false,
        }
    }
}

impl std::fmt::Debug for S3Config {
    // The secret key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("danger_allow_plain_http", &self.danger_allow_plain_http)
            .finish_non_exhaustive()
    }
}

/// `[voice]`: the LiveKit server this server's guilds talk on (spec 18). With `url` empty, voice
/// is off and every voice action says so.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceConfig {
    /// The LiveKit URL clients connect to (`wss://…`); empty: voice is off.
    pub url: String,
    /// The LiveKit API key.
    pub api_key: String,
    /// The LiveKit API secret, which signs every access token.
    pub api_secret: String,
    /// How long an access token admits its holder, in seconds (10 to 600).
    pub token_ttl_secs: u64,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            api_key: String::new(),
            api_secret: String::new(),
            token_ttl_secs: 300,
        }
    }
}

impl std::fmt::Debug for VoiceConfig {
    // The secret signs tokens that admit anyone to any room: it never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// `[federation]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// Talk to other servers at all.
    pub enabled: bool,
    /// `open` (everyone but `deny`), `allowlist` (only `allow`) or `closed`.
    pub mode: guildhall_federation::TrustMode,
    /// Servers always allowed in `allowlist` mode.
    pub allow: Vec<String>,
    /// Servers never allowed.
    pub deny: Vec<String>,
    /// Publish this server's local trust entries as a signed list at `/_guildhall/v1/trust/list`
    /// for other operators to subscribe to.
    pub publish_trust_list: bool,
    /// Further `host[:port]` authorities this server is reached at (besides `server_name`).
    pub public_addresses: Vec<String>,
    /// DNS servers for SRV lookups (`ip:port`); empty = the system's.
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// Talk plain HTTP to other servers instead of HTTPS. Only for tests on loopback.
    pub danger_allow_plain_http: bool,
    /// Connect to loopback and private addresses for federation. Only for tests on loopback.
    pub danger_allow_private_addresses: bool,
    /// Accept proposals without checking the origin's signature. Exists only so the conformance
    /// suite can prove it catches a broken server; never enable it.
    pub danger_skip_origin_signature_check: bool,
    /// How long a node's hold on an outbound queue lasts unless renewed (several nodes on one
    /// database: a dead node's queues pass to another within about 1.5 times this).
    pub delivery_lease_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: guildhall_federation::TrustMode::Open,
            allow: Vec::new(),
            deny: Vec::new(),
            publish_trust_list: false,
            public_addresses: Vec::new(),
            dns_servers: Vec::new(),
            danger_allow_plain_http: false,
            danger_allow_private_addresses: false,
            danger_skip_origin_signature_check: false,
            delivery_lease_secs: 30,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The server name; empty = the listen address.
    pub server_name: String,
    /// Serve the unauthenticated test-control API (spec chapter 21). Conformance runs only.
    pub danger_enable_test_control: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            server_name: String::new(),
            danger_enable_test_control: false,
        }
    }
}

/// `[registration]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    /// Open registration through the API.
    pub enabled: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Most guilds a user may own.
    pub max_guilds_per_user: u32,
    /// Federation request bodies read at once before their sender is authenticated.
    pub max_unauthenticated_body_reads: usize,
    /// Of those, how many may come from one client address.
    pub max_unauthenticated_body_reads_per_address: usize,
    /// Longest time a request body may take to arrive, in seconds.
    pub body_read_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_guilds_per_user: 100,
            max_unauthenticated_body_reads: 32,
            max_unauthenticated_body_reads_per_address: 2,
            body_read_timeout_secs: 30,
        }
    }
}

/// `[rate_limits]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second per account.
    pub per_account_per_second: u32,
    /// Burst per account.
    pub per_account_burst: u32,
    /// Sustained requests per second per IP.
    pub per_ip_per_second: u32,
    /// Burst per IP.
    pub per_ip_burst: u32,
    /// Sustained messages per second per account.
    pub messages_per_second: u32,
    /// Message burst per account.
    pub messages_burst: u32,
    /// Sustained failed logins per minute per account.
    pub failed_logins_per_minute: u32,
    /// Failed logins per account before the limit applies.
    pub failed_logins_burst: u32,
    /// Key-login challenges per minute per client address (also the burst).
    pub challenges_per_minute: u32,
    /// One-time keys one user may claim of another user's devices per minute (also the burst);
    /// a claiming server may claim five times as many of one user, whoever its claimers are.
    pub key_claims_per_minute: u32,
    /// To-device shares one user may send to another user per minute (also the burst); a
    /// sending server may send ten times as many to one user, whoever its senders are.
    pub to_device_per_minute: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_account_per_second: 20,
            per_account_burst: 60,
            per_ip_per_second: 50,
            per_ip_burst: 200,
            messages_per_second: 5,
            messages_burst: 10,
            failed_logins_per_minute: 5,
            failed_logins_burst: 10,
            challenges_per_minute: 30,
            key_claims_per_minute: 20,
            to_device_per_minute: 120,
        }
    }
}

/// `[gateway]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Heartbeat interval clients are told to keep.
    pub heartbeat_interval_ms: u64,
    /// Dispatch queue per connection.
    pub session_queue: usize,
    /// How long a session stays resumable.
    pub resume_window_secs: u64,
    /// Frames one connection may send per minute (heartbeats included).
    pub frames_per_minute: u32,
    /// Presence updates one connection may send per minute.
    pub presence_updates_per_minute: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 41_250,
            session_queue: 1024,
            resume_window_secs: 300,
            frames_per_minute: 120,
            presence_updates_per_minute: 5,
        }
    }
}

impl Config {
    /// Loads defaults, then `file` (if it exists), then `GUILDHALL_*` environment variables.
    pub fn load(file: &Path) -> Result<Self, Box<figment::Error>> {
        Self::figment(file).extract().map_err(Box::new)
    }

    fn figment(file: &Path) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            // GUILDHALL_DATA_DIR and GUILDHALL_PASSWORD are command-line arguments, not settings;
            // GUILDHALL_TEST_* tell the test suites where their services are (a developer's or
            // CI's shell exports them), and no server reads them.
            .merge(
                Env::prefixed("GUILDHALL_")
                    .ignore(&["data_dir", "password"])
                    .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"))
                    .split("__"),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_exactly_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(
            serde_json::to_value(&parsed).unwrap(),
            serde_json::to_value(Config::default()).unwrap()
        );
    }

    #[test]
    fn the_database_url_never_reaches_a_log() {
        let database = DatabaseConfig {
            url: "postgres://guildhall:hunter2@db.internal/guildhall".into(),
            ..DatabaseConfig::default()
        };
        let logged = format!("{:?}", Config { database, ..Config::default() });
        assert!(!logged.contains("hunter2") && !logged.contains("db.internal"), "{logged}");
        assert!(logged.contains("engine: \"postgres\""), "{logged}");
    }

    #[test]
    fn the_redis_url_never_reaches_a_log() {
        let config = RedisConfig { url: "redis://:hunter2@cache.internal:6379/0".into() };
        let logged = format!("{:?}", Config { redis: config, ..Config::default() });
        assert!(!logged.contains("hunter2") && !logged.contains("cache.internal"), "{logged}");
        assert!(logged.contains("RedisConfig { configured: true }"), "{logged}");
    }

    #[test]
    fn unknown_settings_are_rejected() {
        assert!(toml::from_str::<Config>("[server]\nlisen = \"1.2.3.4:5\"").is_err());
    }
}
