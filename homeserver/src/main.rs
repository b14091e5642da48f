//! `guildhall`: the homeserver binary. Thin: parse the command line, then hand over to the
//! library.
#![forbid(unsafe_code)]

mod user_cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use guildhall_homeserver::config::Config;
use guildhall_homeserver::store::{Audit, transfer};
use guildhall_homeserver::{AppState, DataDir, effective_server_name};
use guildhall_spec::UserId;

/// A federated homeserver for Discord-like communities.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// The data directory: database, keys and `guildhall.toml`.
    #[arg(long, global = true, env = "GUILDHALL_DATA_DIR", default_value = "./guildhall-data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default command).
    Serve(ServeArgs),
    /// Administer accounts, trust, backups and the database.
    #[command(subcommand)]
    Admin(Admin),
    /// Manage the server's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create the data directory and apply database migrations, then exit.
    Migrate,
    /// A command-line client: an identity key, logins to any servers, guilds and messages.
    User(user_cli::UserArgs),
}

#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// Address to listen on (overrides `server.listen`).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// This server's name (overrides `server.server_name`; default: the listen address).
    #[arg(long)]
    server_name: Option<String>,
}

/// `guildhall admin …`: commands on a server's state, and commands on its data.
#[derive(Debug, Subcommand)]
enum Admin {
    #[command(flatten)]
    Served(AdminCommand),
    #[command(flatten)]
    Data(DataCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an account (works with registration closed).
    CreateUser {
        /// The username (localpart).
        username: String,
        /// The password; read from GUILDHALL_PASSWORD when omitted.
        #[arg(long, env = "GUILDHALL_PASSWORD", hide_env_values = true)]
        password: String,
        /// Make the account a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// Grant server admin to an existing account.
    MakeAdmin {
        /// The username (localpart).
        username: String,
    },
    /// Decide whom this server federates with. Changes apply to a running server within
    /// seconds, survive restarts and are written to the audit log.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Bots of the Discord-compatible API: create them for a user, grant privileged intents.
    #[command(subcommand)]
    Bot(BotCommand),
    /// Show the audit log of administrative actions, newest first.
    Audit {
        /// How many entries.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

/// `guildhall admin bot …`.
#[derive(Debug, Subcommand)]
enum BotCommand {
    /// Create an application and its bot user for an existing account, and print the bot's
    /// token (shown only once).
    Create {
        /// The owner's username (localpart).
        #[arg(long)]
        owner: String,
        /// The application's name (also the bot's display name).
        #[arg(long)]
        name: String,
        /// The bot user's username (localpart).
        #[arg(long)]
        username: String,
        /// Privileged intents to grant: members, presences, message_content.
        #[arg(long, value_delimiter = ',')]
        intents: Vec<String>,
        /// Let any guild admin add it (not only its owner).
        #[arg(long)]
        public: bool,
    },
    /// List an owner's applications.
    List {
        /// The owner's username (localpart).
        owner: String,
    },
    /// Set the privileged intents granted to a bot (the full set; none to revoke all). Sessions
    /// already connected keep what they identified with until they reconnect.
    Intents {
        /// The application id.
        application_id: u64,
        /// members, presences, message_content.
        #[arg(value_delimiter = ',')]
        intents: Vec<String>,
    },
}

/// What an administrator does with the data itself, without starting the server.
#[derive(Debug, Subcommand)]
enum DataCommand {
    /// Write a backup into a new directory: the database (a consistent SQLite copy taken while
    /// the server runs, or a `pg_dump` archive), the signing keys and the configuration. Media
    /// objects are not included: back up the media directory or bucket with its own tools.
    Backup {
        /// The directory to create.
        directory: PathBuf,
    },
    /// Restore a backup into this data directory and the configured database, with the server
    /// stopped. The database must not exist yet (SQLite) or be freshly created and empty
    /// (PostgreSQL).
    Restore {
        /// The directory `backup` wrote.
        directory: PathBuf,
    },
    /// Copy this server's SQLite database into an empty PostgreSQL database, then check the
    /// row count of every table and the head of every guild log. Stop the server first (what
    /// it writes later is not copied), then set `[database] url` to the new database.
    MigrateToPostgres {
        /// `postgres://user:password@host:5432/dbname`; read from GUILDHALL_TARGET_DATABASE
        /// when omitted.
        #[arg(env = "GUILDHALL_TARGET_DATABASE", hide_env_values = true)]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
enum TrustCommand {
    /// Show the mode, every entry with its source, and the subscribed lists.
    List,
    /// Allow a server (needed in allowlist mode; overrides subscribed lists).
    Allow {
        /// The server name.
        server: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Deny a server: nothing is accepted from it or sent to it.
    Deny {
        /// The server name.
        server: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Allow a server only with this key: anything signed by another key is refused.
    Pin {
        /// The server name.
        server: String,
        /// The key id, e.g. `ed25519:k1`.
        key_id: String,
        /// The public key, base64url.
        key: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove this server's operator entry (the configuration file's, if any, applies again).
    Remove {
        /// The server name.
        server: String,
    },
    /// Set the mode: open, allowlist or closed.
    Mode {
        /// The mode.
        mode: String,
    },
    /// Subscribe to a trust list another operator publishes.
    Subscribe {
        /// Where the list is served, e.g. `https://curator.example/_guildhall/v1/trust/list`.
        url: String,
        /// The publisher's server name, as the list names it.
        #[arg(long)]
        publisher: String,
        /// The publisher key's id.
        #[arg(long)]
        key_id: String,
        /// The publisher's public key, base64url; lists signed otherwise are refused.
        #[arg(long)]
        key: String,
        /// Refetch period in seconds (at least 60).
        #[arg(long)]
        refresh_secs: Option<u64>,
    },
    /// Unsubscribe: the list's entries stop applying.
    Unsubscribe {
        /// The subscription id (see `trust list`).
        id: String,
    },
    /// Whether a server may federate with this one, and which rule or list decided.
    Why {
        /// The server name.
        server: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Retire the current signing key and start signing with a new one.
    Rotate,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        // The client needs no data directory, configuration or server log.
        Some(Command::User(args)) => Ok(user_cli::run(args).await),
        command => {
            server(&cli.data_dir, command).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The server's commands, on its data directory.
async fn server(data_dir: &std::path::Path, command: Option<Command>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let data_dir = DataDir::new(data_dir);
    data_dir.initialize().with_context(|| format!("creating {}", data_dir.root().display()))?;
    let mut config = Config::load(&data_dir.config_file())?;
    match command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            if let Some(listen) = args.listen {
                config.server.listen = listen;
            }
            if let Some(name) = args.server_name {
                config.server.server_name = name;
            }
            serve(config, &data_dir).await
        }
        Command::Admin(Admin::Served(command)) => admin(config, &data_dir, command).await,
        Command::Admin(Admin::Data(command)) => data(&config, &data_dir, command).await,
        Command::Keys(KeysCommand::Rotate) => {
            let name = effective_server_name(&config)?;
            let key_id = guildhall_identity::server_keys::rotate(
                &data_dir.key_file(),
                &name,
                guildhall_homeserver::store::now_ms(),
            )?;
            let store = data_dir.open_store(&config.database).await?;
            let target = key_id.to_string();
            let audit = Audit {
                actor: CLI_ACTOR,
                action: "keys.rotate",
                target: Some(&target),
                detail: None,
            };
            store.audit(audit).await?;
            println!("now signing with {key_id}");
            Ok(())
        }
        Command::Migrate => {
            data_dir.open_store(&config.database).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::User(_) => bail!("`guildhall user` is a client and runs without a data directory"),
    }
}

async fn serve(config: Config, data_dir: &DataDir) -> anyhow::Result<()> {
    let server_name = effective_server_name(&config)?;
    let listen = config.server.listen;
    let state = AppState::open(config, data_dir, server_name.clone()).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    tracing::info!(%server_name, %address, data_dir = %data_dir.root().display(), "guildhall is listening");
    guildhall_homeserver::serve(state, listener, shutdown_signal()).await?;
    Ok(())
}

/// Commands on the database files and servers themselves, without opening the server.
async fn data(config: &Config, data_dir: &DataDir, command: DataCommand) -> anyhow::Result<()> {
    match command {
        DataCommand::Backup { directory } => backup(config, data_dir, &directory).await,
        DataCommand::Restore { directory } => restore(config, data_dir, &directory),
        DataCommand::MigrateToPostgres { url } => {
            let source = sqlite_file(config, data_dir).context(
                "migrate-to-postgres moves an SQLite database; this server is on PostgreSQL",
            )?;
            let migrated = transfer::sqlite_to_postgres(&source, &url).await?;
            let rows: i64 = migrated.rows.values().sum();
            println!(
                "copied {rows} rows in {} tables; counts and the heads of {} guild logs match",
                migrated.rows.len(),
                migrated.guild_heads
            );
            println!("now set [database] url to the PostgreSQL database and start the server");
            Ok(())
        }
    }
}

/// The SQLite file the configuration names (`None`: the server is on PostgreSQL).
fn sqlite_file(config: &Config, data_dir: &DataDir) -> Option<PathBuf> {
    let url = &config.database.url;
    if url.is_empty() {
        return Some(data_dir.database());
    }
    url.strip_prefix("sqlite://").map(PathBuf::from)
}

const BACKUP_SQLITE: &str = "database.sqlite3";
const BACKUP_POSTGRES: &str = "database.pgdump";
const BACKUP_KEYS: &str = "signing-keys.json";
const BACKUP_CONFIG: &str = "guildhall.toml";

async fn backup(config: &Config, data_dir: &DataDir, directory: &Path) -> anyhow::Result<()> {
    std::fs::create_dir(directory)
        .with_context(|| format!("creating {} (it must not exist yet)", directory.display()))?;
    match sqlite_file(config, data_dir) {
        Some(file) => transfer::backup_sqlite(&file, &directory.join(BACKUP_SQLITE)).await?,
        None => transfer::backup_postgres(&config.database.url, &directory.join(BACKUP_POSTGRES))?,
    }
    std::fs::copy(data_dir.key_file(), directory.join(BACKUP_KEYS)).context("copying the keys")?;
    std::fs::copy(data_dir.config_file(), directory.join(BACKUP_CONFIG))
        .context("copying the configuration")?;
    println!("backed up to {} (it holds the signing keys: keep it private)", directory.display());
    Ok(())
}

fn restore(config: &Config, data_dir: &DataDir, directory: &Path) -> anyhow::Result<()> {
    data_dir.initialize()?;
    let keys = directory.join(BACKUP_KEYS);
    let here = data_dir.key_file();
    if here.exists() && std::fs::read(&here)? != std::fs::read(&keys)? {
        bail!("{} holds other signing keys: restore into a fresh data directory", here.display());
    }
    match sqlite_file(config, data_dir) {
        Some(file) => {
            let copy = directory.join(BACKUP_SQLITE);
            if !copy.exists() {
                bail!(
                    "{} holds no SQLite database (was it a PostgreSQL server?)",
                    directory.display()
                );
            }
            if file.exists() {
                bail!("{} exists: move it away first", file.display());
            }
            std::fs::copy(&copy, &file).context("copying the database")?;
        }
        None => {
            let archive = directory.join(BACKUP_POSTGRES);
            if !archive.exists() {
                bail!(
                    "{} holds no PostgreSQL archive (was it an SQLite server?)",
                    directory.display()
                );
            }
            transfer::restore_postgres(&config.database.url, &archive)?;
        }
    }
    std::fs::copy(&keys, &here).context("copying the keys")?;
    println!("restored from {}; start the server", directory.display());
    Ok(())
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

async fn admin(config: Config, data_dir: &DataDir, command: AdminCommand) -> anyhow::Result<()> {
    let server_name = effective_server_name(&config)?;
    let state = AppState::open(config, data_dir, server_name.clone()).await?;
    match command {
        AdminCommand::CreateUser { username, password, admin } => {
            let user_id = UserId::new(&username, &server_name)
                .with_context(|| format!("invalid username {username:?}"))?;
            let created = guildhall_homeserver::api::create_account(
                &state.store,
                &state.passwords,
                &user_id,
                &password,
            )
            .await;
            let user = match created {
                Ok(user) => user,
                Err(error) => bail!("cannot create {user_id}: {}", error.code()),
            };
            if admin {
                state.store.make_admin(&user_id).await?;
            }
            let detail = serde_json::json!({"admin": admin || user.is_admin});
            state
                .store
                .audit(Audit {
                    actor: CLI_ACTOR,
                    action: "admin.create_user",
                    target: Some(user_id.as_str()),
                    detail: Some(&detail),
                })
                .await?;
            println!(
                "created {}{}",
                user.user_id,
                if admin || user.is_admin { " (admin)" } else { "" }
            );
        }
        AdminCommand::MakeAdmin { username } => {
            let user_id = UserId::new(&username, &server_name)
                .with_context(|| format!("invalid username {username:?}"))?;
            if !state.store.make_admin(&user_id).await? {
                bail!("no user {user_id}");
            }
            let target = Some(user_id.as_str());
            let audit =
                Audit { actor: CLI_ACTOR, action: "admin.make_admin", target, detail: None };
            state.store.audit(audit).await?;
            println!("{user_id} is now an admin");
        }
        AdminCommand::Trust(command) => trust(&state, command).await?,
        AdminCommand::Bot(command) => bot(&state, &server_name, command).await?,
        AdminCommand::Audit { limit } => {
            for entry in state.store.audit_log(None, limit.clamp(1, 10_000)).await? {
                let detail = entry.detail.map(|detail| detail.to_string()).unwrap_or_default();
                println!(
                    "#{} {} {} {} {} {detail}",
                    entry.id,
                    entry.ts,
                    entry.actor,
                    entry.action,
                    entry.target.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

async fn bot(
    state: &AppState,
    server_name: &guildhall_spec::ServerName,
    command: BotCommand,
) -> anyhow::Result<()> {
    use guildhall_homeserver::api::discord::bots;
    match command {
        BotCommand::Create { owner, name, username, intents, public } => {
            let owner = UserId::new(&owner, server_name)
                .with_context(|| format!("invalid username {owner:?}"))?;
            if state.store.user(&owner).await?.is_none() {
                bail!("no account {owner}");
            }
            let intents = bots::intent_bits(&intents)
                .map_err(|error| anyhow::anyhow!("{}", error.message()))?;
            let (application, token) =
                bots::create(state, &owner, &name, &username, "", public, intents).await.map_err(
                    |error| anyhow::anyhow!("cannot create the bot: {}", error.message()),
                )?;
            let detail = serde_json::json!({"owner": owner, "bot": application.bot_user});
            let target = application.application_id.to_string();
            state
                .store
                .audit(Audit {
                    actor: CLI_ACTOR,
                    action: "admin.bot_create",
                    target: Some(&target),
                    detail: Some(&detail),
                })
                .await?;
            println!("application {}", application.application_id);
            println!("bot user    {}", application.bot_user);
            println!("token       {token}");
        }
        BotCommand::List { owner } => {
            let owner = UserId::new(&owner, server_name)
                .with_context(|| format!("invalid username {owner:?}"))?;
            for application in state.store.applications_of(&owner).await? {
                println!(
                    "{} {} {} intents={}",
                    application.application_id,
                    application.bot_user,
                    application.name,
                    bots::intent_names(application.intents).join(",")
                );
            }
        }
        BotCommand::Intents { application_id, intents } => {
            let Some(mut application) = state.store.application(application_id).await? else {
                bail!("no application {application_id}");
            };
            application.intents = bots::intent_bits(&intents)
                .map_err(|error| anyhow::anyhow!("{}", error.message()))?;
            state.store.update_application(&application).await?;
            let detail = serde_json::json!({"intents": bots::intent_names(application.intents)});
            let target = application_id.to_string();
            state
                .store
                .audit(Audit {
                    actor: CLI_ACTOR,
                    action: "admin.bot_intents",
                    target: Some(&target),
                    detail: Some(&detail),
                })
                .await?;
            println!(
                "{} intents={}",
                application.bot_user,
                bots::intent_names(application.intents).join(",")
            );
        }
    }
    Ok(())
}

/// The actor the audit log records for the command line.
const CLI_ACTOR: &str = "cli";

async fn trust(state: &AppState, command: TrustCommand) -> anyhow::Result<()> {
    use guildhall_federation::policy::Action;
    let trust = &state.federation.trust;
    let why = |server: &str| -> anyhow::Result<()> {
        let name = guildhall_spec::ServerName::parse(server)?;
        let decision = trust.policy().decide(&name).context("no policy")?;
        let verdict = if decision.allowed { "allowed" } else { "refused" };
        println!("{name}: {verdict} ({})", serde_json::to_string(&decision.rule)?);
        if let Some(pin) = trust.policy().pinned(&name) {
            println!("  pinned key {}", pin.key_id);
        }
        Ok(())
    };
    match command {
        TrustCommand::List => {
            println!("{}", serde_json::to_string_pretty(&trust.view().await?)?);
        }
        TrustCommand::Allow { server, reason } => {
            trust.set_entry(CLI_ACTOR, &server, Action::Allow, reason, None).await?;
            why(&server)?;
        }
        TrustCommand::Deny { server, reason } => {
            trust.set_entry(CLI_ACTOR, &server, Action::Deny, reason, None).await?;
            why(&server)?;
        }
        TrustCommand::Pin { server, key_id, key, reason } => {
            trust.set_entry(CLI_ACTOR, &server, Action::Allow, reason, Some((key_id, key))).await?;
            why(&server)?;
        }
        TrustCommand::Remove { server } => {
            trust.remove_entry(CLI_ACTOR, &server).await?;
            why(&server)?;
        }
        TrustCommand::Mode { mode } => {
            let mode = guildhall_homeserver::trust::parse_mode(&mode)
                .context("the mode is open, allowlist or closed")?;
            trust.set_mode(CLI_ACTOR, mode).await?;
            println!("mode is now {}", guildhall_homeserver::trust::mode_name(mode));
        }
        TrustCommand::Subscribe { url, publisher, key_id, key, refresh_secs } => {
            let (subscription, fetched) =
                trust.subscribe(CLI_ACTOR, &url, &publisher, &key_id, &key, refresh_secs).await?;
            println!("subscribed: {} ({})", subscription.id, subscription.url);
            match fetched {
                Ok(_) => println!("fetched: the list is in effect"),
                Err(error) => println!("first fetch failed ({error}); retrying in the background"),
            }
        }
        TrustCommand::Unsubscribe { id } => {
            trust.unsubscribe(CLI_ACTOR, &id).await?;
            println!("unsubscribed {id}");
        }
        TrustCommand::Why { server } => why(&server)?,
    }
    Ok(())
}
