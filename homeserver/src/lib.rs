//! The Guildhall homeserver: configuration, storage, the guild write path, the client REST API
//! and the WebSocket gateway.
//!
//! `main.rs` is a thin command-line wrapper around [`serve`]; tests start the same server on a
//! port chosen at run time.
#![forbid(unsafe_code)]

pub mod api;
pub mod bus;
pub mod cluster;
pub mod config;
pub mod e2e;
pub mod error;
pub mod federation;
pub mod gateway;
pub mod guilds;
pub mod identity;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod passwords;
pub mod presence;
pub mod ratelimit;
pub mod store;
pub mod trust;
pub mod voice;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use guildhall_identity::server_keys::{self, ServerKeys};
use guildhall_spec::ServerName;

use crate::bus::Bus;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::guilds::GuildService;
use crate::presence::Presence;
use crate::ratelimit::{RateLimiter, SharedLimiter};
use crate::store::Store;

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// This server's name.
    pub server_name: ServerName,
    /// The database.
    pub store: Store,
    /// The server's signing keys.
    pub keys: Arc<ServerKeys>,
    /// Guild writes and heads.
    pub guilds: Arc<GuildService>,
    /// The numeric ids of the Discord-compatible API.
    pub snowflakes: Arc<api::discord::snowflake::Snowflakes>,
    /// The event bus.
    pub bus: Bus,
    /// The Redis shared with this server's other nodes (`[redis] url`); `None`: one node.
    pub cluster: Option<Cluster>,
    /// Online status of local users.
    pub presence: Arc<Presence>,
    /// Resumable gateway sessions.
    pub sessions: Arc<gateway::SessionRegistry>,
    /// Request limits per account.
    pub account_limiter: Arc<SharedLimiter>,
    /// Request limits per IP address.
    pub ip_limiter: Arc<SharedLimiter>,
    /// Message limits per account.
    pub message_limiter: Arc<SharedLimiter>,
    /// Failed logins per account.
    pub failed_logins: Arc<SharedLimiter>,
    /// Key-login challenges per client address.
    pub challenge_limiter: Arc<SharedLimiter>,
    /// The LiveKit server of this server's voice channels (spec 18); `None`: voice is off.
    pub voice: Option<Arc<guildhall_media_relay::voice::VoiceService>>,
    /// Who is in which voice channel, as far as this server knows (spec 18.4).
    pub voice_states: Arc<voice::VoiceStates>,
    /// End-to-end encryption: verified device lists, claim and send limits (spec 17).
    pub e2e: Arc<e2e::E2eState>,
    /// Password hashing, off the async workers.
    pub passwords: Arc<passwords::Passwords>,
    /// Federation services.
    pub federation: federation::Federation,
    /// The identities of remote users, learned in the background.
    pub identities: identity::Directory,
    /// Permits to read a request body whose sender is not yet authenticated.
    pub unauthenticated_reads: Arc<limits::UnauthenticatedReads>,
    /// Uploads, media fetched from other servers, and the store they live in (spec 19).
    pub media: Arc<media::Media>,
}

/// The paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("guildhall.toml")
    }

    /// The SQLite database of the embedded default.
    pub fn database(&self) -> PathBuf {
        self.root.join("guildhall.sqlite3")
    }

    /// Opens the configured database (`[database] url`; empty: [`DataDir::database`]) and
    /// applies pending migrations.
    pub async fn open_store(&self, database: &config::DatabaseConfig) -> anyhow::Result<Store> {
        let store = if database.url.is_empty() {
            Store::open(&self.database()).await
        } else {
            Store::connect(&database.url, database.max_connections).await
        };
        // The error never repeats the URL (it may hold a password).
        store.map_err(|error| anyhow::anyhow!("opening the database: {error}"))
    }

    /// The server key file.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("signing-keys.json")
    }

    /// Creates the directory and a documented config file on first start.
    pub fn initialize(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        let config = self.config_file();
        if !config.exists() {
            std::fs::write(&config, config::EXAMPLE)?;
        }
        Ok(())
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The server name in effect: the configured one, or the listen address.
pub fn effective_server_name(config: &Config) -> anyhow::Result<ServerName> {
    let name = if config.server.server_name.is_empty() {
        config.server.listen.to_string()
    } else {
        config.server.server_name.clone()
    };
    ServerName::parse(&name).map_err(|e| anyhow::anyhow!("server_name {name:?}: {e}"))
}

impl AppState {
    /// Opens the data directory's database and keys and builds the shared state.
    pub async fn open(
        config: Config,
        data_dir: &DataDir,
        server_name: ServerName,
    ) -> anyhow::Result<Self> {
        data_dir.initialize()?;
        let store = data_dir.open_store(&config.database).await?;
        let keys = server_keys::load_or_create(&data_dir.key_file(), &server_name)?;
        let cluster = match config.redis.url.as_str() {
            "" => None,
            url => Some(Cluster::connect(url, &server_name).await?),
        };
        let bus = cluster.as_ref().map_or_else(Bus::default, Bus::clustered);
        let federation =
            federation::Federation::new(&config.federation, &server_name, &keys, store.clone())
                .await?;
        let guilds = Arc::new(GuildService::new(
            store.clone(),
            keys.current.clone(),
            bus.clone(),
            federation.client.clone(),
            federation.keys.clone(),
            federation.delivery.clone(),
        ));
        guilds.attach_self();
        if config.federation.danger_skip_origin_signature_check {
            guilds.danger_skip_origin_signature_check();
        }
        if config.server.danger_enable_test_control {
            tracing::warn!("DANGER: the unauthenticated test-control API is enabled");
        }
        federation.delivery.attach(&guilds);
        let limits = &config.rate_limits;
        let voice = voice::service(&config.voice)?;
        let media = Arc::new(media::Media::open(&config.media, data_dir)?);
        Ok(Self {
            media,
            voice,
            voice_states: Arc::default(),
            account_limiter: Arc::new(SharedLimiter::shared(
                RateLimiter::new(limits.per_account_per_second, limits.per_account_burst),
                cluster.as_ref(),
                "account",
            )),
            ip_limiter: Arc::new(SharedLimiter::shared(
                RateLimiter::new(limits.per_ip_per_second, limits.per_ip_burst),
                cluster.as_ref(),
                "ip",
            )),
            message_limiter: Arc::new(SharedLimiter::shared(
                RateLimiter::new(limits.messages_per_second, limits.messages_burst),
                cluster.as_ref(),
                "messages",
            )),
            failed_logins: Arc::new(SharedLimiter::shared(
                RateLimiter::per_minute(
                    limits.failed_logins_per_minute,
                    limits.failed_logins_burst,
                ),
                cluster.as_ref(),
                "failed-logins",
            )),
            // A person logs in by key a few times a minute at most; a script asking for more
            // challenges only fills the table.
            challenge_limiter: Arc::new(SharedLimiter::shared(
                RateLimiter::per_minute(limits.challenges_per_minute, limits.challenges_per_minute),
                cluster.as_ref(),
                "challenges",
            )),
            e2e: Arc::new(e2e::E2eState::new(
                limits.key_claims_per_minute,
                limits.to_device_per_minute,
            )),
            passwords: Arc::new(passwords::Passwords::per_core()),
            presence: Arc::new(match &cluster {
                Some(cluster) => Presence::clustered(bus.clone(), cluster.clone()),
                None => Presence::new(bus.clone()),
            }),
            sessions: Arc::new(gateway::SessionRegistry::new(cluster.clone())),
            unauthenticated_reads: Arc::new(limits::UnauthenticatedReads::new(
                config.limits.max_unauthenticated_body_reads,
                config.limits.max_unauthenticated_body_reads_per_address,
            )),
            identities: identity::Directory::default(),
            snowflakes: Arc::new(api::discord::snowflake::Snowflakes::new(store.clone())),
            config: Arc::new(config),
            server_name,
            store,
            keys: Arc::new(keys),
            guilds,
            bus,
            cluster,
            federation,
        })
    }
}

/// Serves the API and gateway on `listener` until `shutdown` resolves.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Background work: resume queued deliveries, relay ephemeral events, catch up replicas.
    state.federation.delivery.resume().await;
    state.federation.delivery.watch_leases();
    tokio::spawn(federation::relay_ephemeral(state.clone()));
    tokio::spawn(voice::moderation::enforce(state.clone()));
    let guilds = Arc::clone(&state.guilds);
    tokio::spawn(async move { guilds.catch_up_all().await });
    tokio::spawn(prune_records(state.store.clone()));
    tokio::spawn(identity::Directory::run(state.clone()));
    tokio::spawn(Arc::clone(&state.federation.trust).run());
    tokio::spawn(media::Media::run_collector(state.clone()));
    tokio::spawn(media::Media::run_host_keeper(state.clone()));
    if let Some(cluster) = state.cluster.clone() {
        tokio::spawn(cluster.run(Arc::clone(&state.presence)));
    }
    if !state.config.metrics.listen.is_empty() {
        let metrics = state.config.metrics.listen.clone();
        match tokio::net::TcpListener::bind(&metrics).await {
            Ok(listener) => {
                let router = metrics::router(state.clone());
                tokio::spawn(async move { axum::serve(listener, router).await });
            }
            Err(error) => tracing::error!(%error, metrics, "cannot listen for metrics"),
        }
    }
    let app = api::router(state);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Forgets, at start and then hourly, what the server only needs to remember for a while.
async fn prune_records(store: Store) {
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        match store.prune_inbound_txns(store::now_ms()).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "forgot old received transactions"),
            Err(error) => tracing::warn!(%error, "pruning received transactions"),
        }
    }
}
