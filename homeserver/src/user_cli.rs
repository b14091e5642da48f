//! `guildhall user …`: a command-line client on top of `guildhall-client`.
//!
//! The identity lives in a passphrase-encrypted file (default
//! `~/.config/guildhall/identity.json`, or `--identity FILE`); the tokens of the servers logged
//! in to live beside it in `sessions.json` (owner-only), with the home account the identity is
//! bound to. Commands that talk to one server take `--server <url or name>`; without it they
//! use the server that knows the channel, or the home server.
//!
//! The passphrase comes from `GUILDHALL_PASSPHRASE` or is read as one line from standard
//! input; a password for `login --register` from `GUILDHALL_PASSWORD` or likewise. The hidden
//! `--kdf-fast` flag seals new identity files with cheap Argon2 parameters: for tests only.
//!
//! `guildhall user e2e …` ([`encrypted`]) sends and reads end-to-end encrypted direct messages.

mod encrypted;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt as _;
use guildhall_client::{
    Channel, ChannelId, Client, GatewayEvent, Guild, History, Identity, InviteCode, KdfParams,
    Message, NewInvite, Ready, SavedSession, Sent, ServerName, Session, UserId,
};
use serde::{Deserialize, Serialize};

/// Talk to Guildhall servers as a user, with one identity key for all of them.
#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    /// The identity file [default: ~/.config/guildhall/identity.json]; `sessions.json` is kept
    /// beside it.
    #[arg(long, global = true, env = "GUILDHALL_IDENTITY", value_name = "FILE")]
    identity: Option<PathBuf>,
    /// The server to act on, by URL or name, when logged in to several.
    #[arg(long, global = true, value_name = "SERVER")]
    server: Option<String>,
    /// For tests only: seal new identity files with cheap Argon2 parameters, which make the
    /// passphrase easy to guess. Never for a real identity.
    #[arg(long, global = true, hide = true)]
    kdf_fast: bool,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create, recover or show the identity key.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Log in to a server with the identity key.
    ///
    /// On a server other than the home server, this is the account there linked to the
    /// identity, created on the first login.
    Login {
        /// The server's URL, e.g. `https://chat.example.org`.
        url: String,
        /// First register this username with a password (from GUILDHALL_PASSWORD) and bind the
        /// identity key to the new account, which becomes the home account.
        #[arg(long, value_name = "USERNAME")]
        register: Option<String>,
        /// The home account the identity is bound to, when `sessions.json` does not know it.
        #[arg(long = "as", value_name = "USER_ID")]
        home: Option<String>,
        /// The username wanted on this server when the home one is taken there.
        #[arg(long)]
        localpart: Option<String>,
        /// The server's name, when it is not the URL's host (a delegated name). Without it
        /// the name is the one the server gives, which must be the URL's host.
        #[arg(long)]
        server_name: Option<String>,
    },
    /// Log out of a server and forget its session.
    Logout,
    /// List the guilds, channels and direct messages on every server logged in to.
    Guilds,
    /// Create a guild (with a #general channel) on a server.
    CreateGuild {
        /// The guild's name.
        name: String,
    },
    /// Create an invite to a channel.
    Invite {
        /// The channel id.
        channel: String,
    },
    /// Join a guild by invite code.
    Join {
        /// The invite code.
        code: String,
        /// The server hosting the guild, when it is another server.
        #[arg(long)]
        host: Option<String>,
    },
    /// Send a message to a channel.
    Send {
        /// The channel id.
        channel: String,
        /// The text.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Show a channel's latest messages, oldest first.
    Read {
        /// The channel id.
        channel: String,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Print messages as they arrive, until Ctrl-C.
    Tail {
        /// Only this channel.
        channel: Option<String>,
    },
    /// End-to-end encrypted direct messages: set up this login as a device, send, read.
    #[command(subcommand)]
    E2e(encrypted::EncryptedCommand),
    /// Send a direct message, opening the conversation if needed (not encrypted: the servers
    /// can read it; see `e2e send`).
    Dm {
        /// The recipient, e.g. `@bob:example.org`.
        user: String,
        /// The text.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create a new identity and show its recovery phrase once.
    New {
        /// Replace an existing identity file.
        #[arg(long)]
        force: bool,
    },
    /// Restore the identity from its recovery phrase (read from standard input).
    Recover {
        /// The index of the current key (after rotations).
        #[arg(long, conflicts_with = "key")]
        index: Option<u32>,
        /// The current identity key, to search the phrase's keys for.
        #[arg(long)]
        key: Option<String>,
        /// Replace an existing identity file.
        #[arg(long)]
        force: bool,
    },
    /// Show the identity key and where it is logged in.
    Show,
}

/// Runs a `user` command; errors are printed as `error: …` and exit with status 1.
pub(crate) async fn run(args: UserArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause left out where the message before already says it.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

async fn execute(args: UserArgs) -> anyhow::Result<()> {
    let files = Files::new(args.identity)?;
    let kdf = if args.kdf_fast {
        KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }
    } else {
        KdfParams::default()
    };
    let server = args.server.as_deref();
    match args.command {
        UserCommand::Identity(IdentityCommand::New { force }) => identity_new(&files, kdf, force),
        UserCommand::Identity(IdentityCommand::Recover { index, key, force }) => {
            identity_recover(&files, kdf, index, key.as_deref(), force)
        }
        UserCommand::Identity(IdentityCommand::Show) => identity_show(&files),
        UserCommand::Login { url, register, home, localpart, server_name } => {
            let client = match server_name {
                Some(name) => Client::with_server_name(&url, ServerName::parse(&name)?)?,
                None => Client::connect(&url).await?,
            };
            login(&files, &client, register.as_deref(), home.as_deref(), localpart.as_deref()).await
        }
        UserCommand::Logout => logout(&files, server).await,
        UserCommand::Guilds => guilds(&files, server).await,
        UserCommand::CreateGuild { name } => {
            let session = files.sessions()?.one(server)?;
            let guild = session.create_guild(&name).await?;
            println!("created {} ({}) on {}", guild.name, guild.id, session.server_name());
            print_channels(&guild.channels, "  ");
            Ok(())
        }
        UserCommand::Invite { channel } => {
            let (session, channel) = files.sessions()?.for_channel(server, &channel).await?;
            let invite = session.create_invite(&channel.id, NewInvite::default()).await?;
            println!(
                "invite {} to {} (hosted on {})",
                invite.code, invite.guild_name, invite.server
            );
            println!("  join with: guildhall user join {} --host {}", invite.code, invite.server);
            Ok(())
        }
        UserCommand::Join { code, host } => {
            let session = files.sessions()?.one(server)?;
            let code = InviteCode::parse(&code).context("invalid invite code")?;
            let host = host.map(|host| ServerName::parse(&host)).transpose()?;
            let guild = session.accept_invite(&code, host.as_ref()).await?;
            println!("joined {} ({}) as {}", guild.name, guild.id, session.user_id());
            print_channels(&guild.channels, "  ");
            Ok(())
        }
        UserCommand::Send { channel, text } => {
            let (session, channel) = files.sessions()?.for_channel(server, &channel).await?;
            report_sent(session.send_message(&channel.id, &text.join(" ")).await?);
            Ok(())
        }
        UserCommand::Read { channel, limit } => {
            let (session, channel) = files.sessions()?.for_channel(server, &channel).await?;
            let mut messages = session.messages(&channel.id, &History::latest(limit)).await?;
            messages.reverse();
            for message in &messages {
                println!("{}", line(message));
            }
            Ok(())
        }
        UserCommand::Tail { channel } => tail(&files, server, channel.as_deref()).await,
        UserCommand::E2e(command) => encrypted::run(&files, server, command).await,
        UserCommand::Dm { user, text } => {
            let session = files.sessions()?.one(server)?;
            let recipient = UserId::parse(&user).context("invalid user id")?;
            let conversation = session.open_direct_message(&recipient).await?;
            report_sent(session.send_message(&conversation.channel_id, &text.join(" ")).await?);
            println!("  not encrypted: the servers can read it (`e2e send` encrypts end to end)");
            Ok(())
        }
    }
}

fn identity_new(files: &Files, kdf: KdfParams, force: bool) -> anyhow::Result<()> {
    files.refuse_overwrite(force)?;
    let passphrase = new_passphrase()?;
    let identity = Identity::generate();
    identity.save(&files.identity, &passphrase, kdf)?;
    println!("Your recovery phrase:\n");
    let words: Vec<String> = identity.phrase().words().split(' ').map(str::to_owned).collect();
    for row in words.chunks(6) {
        println!("    {}", row.join(" "));
    }
    println!(
        "\nWARNING: write these 24 words down and keep them offline. They are the only way back\n\
         to this identity if the file or its passphrase is lost, and anyone who reads them can\n\
         act as you. They are not shown again.\n"
    );
    println!("identity key: {}", identity.public_key());
    println!("saved in {}", files.identity.display());
    Ok(())
}

fn identity_recover(
    files: &Files,
    kdf: KdfParams,
    index: Option<u32>,
    key: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    files.refuse_overwrite(force)?;
    let phrase = read_line("recovery phrase (24 words): ")?;
    let identity = match key {
        Some(key) => Identity::recover_key(&phrase, key)?,
        None => Identity::recover(&phrase, index.unwrap_or(0))?,
    };
    let passphrase = new_passphrase()?;
    identity.save(&files.identity, &passphrase, kdf)?;
    println!("identity key: {} (key {})", identity.public_key(), identity.key_index());
    println!("saved in {}", files.identity.display());
    Ok(())
}

fn identity_show(files: &Files) -> anyhow::Result<()> {
    let identity = files.identity()?;
    println!("identity key: {} (key {})", identity.public_key(), identity.key_index());
    println!("file: {}", files.identity.display());
    let sessions = files.sessions()?;
    if let Some(home) = &sessions.file.home {
        println!("home account: {home}");
    }
    for saved in &sessions.file.sessions {
        println!("logged in to {} ({}) as {}", saved.server_name, saved.url, saved.user_id);
    }
    Ok(())
}

async fn login(
    files: &Files,
    client: &Client,
    register: Option<&str>,
    home: Option<&str>,
    localpart: Option<&str>,
) -> anyhow::Result<()> {
    let identity = files.identity()?;
    let mut sessions = files.sessions()?;
    let session = match register {
        Some(username) => {
            let password = secret("GUILDHALL_PASSWORD", &format!("password for {username}: "))?;
            let session = client.register(username, &password).await?;
            session.bind_identity(&identity).await.with_context(|| {
                format!("registered {}, but binding the identity key failed", session.user_id())
            })?;
            println!(
                "registered {} with identity key {}",
                session.user_id(),
                identity.public_key()
            );
            sessions.file.home.get_or_insert_with(|| session.user_id().clone());
            session
        }
        None => {
            let home = match home {
                Some(home) => UserId::parse(home).context("invalid user id for --as")?,
                None => sessions.file.home.clone().ok_or_else(|| {
                    anyhow!(
                        "which account is this identity bound to? Register at home first \
                         (`login <url> --register <name>`) or name it with `--as @you:server`"
                    )
                })?,
            };
            let session = client.login_with_key(&identity, &home, localpart).await?;
            sessions.file.home.get_or_insert(home);
            session
        }
    };
    println!("logged in to {} as {}", session.server_name(), session.user_id());
    sessions.put(session.saved());
    sessions.save()
}

async fn logout(files: &Files, server: Option<&str>) -> anyhow::Result<()> {
    let mut sessions = files.sessions()?;
    let session = sessions.one(server)?;
    let saved = session.saved();
    if let Err(error) = session.logout().await {
        eprintln!("warning: the server did not confirm the logout: {error}");
    }
    sessions.file.sessions.retain(|other| other.url != saved.url);
    sessions.save()?;
    println!("logged out of {}", saved.server_name);
    Ok(())
}

async fn guilds(files: &Files, server: Option<&str>) -> anyhow::Result<()> {
    for session in files.sessions()?.chosen(server)? {
        println!("{} as {}", session.server_name(), session.user_id());
        let guilds = match session.guilds().await {
            Ok(guilds) => guilds,
            Err(error) => {
                println!("  error: {error}");
                continue;
            }
        };
        for guild in guilds {
            if guild.kind == "dm" {
                let others: Vec<String> = guild
                    .members
                    .iter()
                    .filter(|member| member.user_id != *session.user_id())
                    .map(|member| member.user_id.to_string())
                    .collect();
                let channel = guild.channels.first().map(|c| c.id.to_string()).unwrap_or_default();
                println!("  direct message (not encrypted) with {}: {channel}", others.join(", "));
            } else {
                println!("  {} ({})", guild.name, guild.id);
                print_channels(&guild.channels, "    ");
            }
        }
    }
    Ok(())
}

async fn tail(files: &Files, server: Option<&str>, channel: Option<&str>) -> anyhow::Result<()> {
    let only = channel.map(ChannelId::parse).transpose().context("invalid channel id")?;
    let mut streams = Vec::new();
    let mut names = ChannelNames::default();
    for session in files.sessions()?.chosen(server)? {
        let gateway = session
            .gateway()
            .await
            .with_context(|| format!("connecting to {}'s gateway", session.server_name()))?;
        names.learn(gateway.ready());
        eprintln!("watching {} as {} (Ctrl-C to stop)", session.server_name(), session.user_id());
        let server_name = session.server_name().clone();
        streams.push(gateway.map(move |event| (server_name.clone(), event)));
    }
    let mut merged = futures_util::stream::select_all(streams);
    // A guild shared by two of the servers shows each message on both; print it once.
    let mut seen = HashSet::new();
    loop {
        let next = tokio::select! {
            next = merged.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some((server_name, event)) = next else {
            bail!("every gateway connection has ended");
        };
        match event {
            Ok(GatewayEvent::MessageCreate(message)) => {
                let wanted = only.as_ref().is_none_or(|only| *only == message.channel_id);
                if wanted && seen.insert(message.id.clone()) {
                    println!("{}", names.line(&message));
                }
            }
            Ok(GatewayEvent::Ready(ready)) => {
                names.learn(&ready);
                eprintln!("{server_name}: reconnected; messages meanwhile may be missing");
            }
            Ok(GatewayEvent::Other { name, data }) if name == "GUILD_CREATE" => {
                if let Ok(guild) = serde_json::from_value::<Guild>(data) {
                    names.learn_guild(&guild);
                }
            }
            Ok(_) => {}
            Err(error) => eprintln!("error: {server_name}: {error}"),
        }
    }
}

fn report_sent(sent: Sent) {
    match sent {
        Sent::Delivered(message) => println!("sent {}", message.id),
        Sent::Queued { nonce } => {
            println!("queued as {nonce}: the guild's host is unreachable; it is delivered later");
        }
    }
}

fn print_channels(channels: &[Channel], indent: &str) {
    for channel in channels {
        println!("{indent}#{} {}", channel.name, channel.id);
    }
}

/// `[2024-01-31 12:00:00] @alice:example.org: text`, in UTC.
fn line(message: &Message) -> String {
    format!("[{}] {}: {}", utc(message.created_ts), message.author_id, message.content)
}

/// Channel and guild names for the messages `tail` prints.
#[derive(Debug, Default)]
struct ChannelNames {
    names: BTreeMap<ChannelId, String>,
}

impl ChannelNames {
    fn learn(&mut self, ready: &Ready) {
        for guild in &ready.guilds {
            self.learn_guild(guild);
        }
    }

    fn learn_guild(&mut self, guild: &Guild) {
        for channel in &guild.channels {
            let name = if guild.kind == "dm" {
                "direct message (not encrypted)".to_owned()
            } else {
                format!("#{} ({})", channel.name, guild.name)
            };
            self.names.insert(channel.id.clone(), name);
        }
    }

    fn line(&self, message: &Message) -> String {
        let place = self.names.get(&message.channel_id).cloned();
        let place = place.unwrap_or_else(|| format!("#{}", message.channel_id));
        format!("[{}] {place} {}: {}", utc(message.created_ts), message.author_id, message.content)
    }
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC, proleptic Gregorian).
fn utc(ms: u64) -> String {
    let seconds = ms / 1000;
    let (hour, minute, second) = (seconds / 3600 % 24, seconds / 60 % 60, seconds % 60);
    // Days to a civil date (Howard Hinnant's `civil_from_days`), with eras of 400 years.
    let days = (seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}")
}

/// Where the identity and the sessions are kept.
struct Files {
    identity: PathBuf,
    sessions: PathBuf,
}

impl Files {
    fn new(identity: Option<PathBuf>) -> anyhow::Result<Self> {
        let identity = match identity {
            Some(path) => path,
            None => default_identity_path()?,
        };
        let sessions = identity.with_file_name("sessions.json");
        Ok(Self { identity, sessions })
    }

    fn refuse_overwrite(&self, force: bool) -> anyhow::Result<()> {
        if !force && self.identity.exists() {
            bail!(
                "{} exists; pass --force to replace it (the identity in it is lost unless its \
                 phrase is written down)",
                self.identity.display()
            );
        }
        Ok(())
    }

    fn identity(&self) -> anyhow::Result<Identity> {
        if !self.identity.exists() {
            bail!(
                "no identity at {}: create one with `guildhall user identity new`",
                self.identity.display()
            );
        }
        let passphrase = secret("GUILDHALL_PASSPHRASE", "passphrase: ")?;
        Ok(Identity::load(&self.identity, &passphrase)?)
    }

    fn sessions(&self) -> anyhow::Result<Sessions> {
        let file = match std::fs::read_to_string(&self.sessions) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("reading {}", self.sessions.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => SessionsFile::default(),
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", self.sessions.display()));
            }
        };
        Ok(Sessions { path: self.sessions.clone(), file })
    }
}

/// `$XDG_CONFIG_HOME/guildhall/identity.json`, else `~/.config/guildhall/identity.json`.
fn default_identity_path() -> anyhow::Result<PathBuf> {
    let config = match std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|dir| !dir.is_empty())
                .context("HOME is not set; give the identity file with --identity")?;
            Path::new(&home).join(".config")
        }
    };
    Ok(config.join("guildhall").join("identity.json"))
}

/// `sessions.json`: the home account and a saved session per server.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionsFile {
    /// The account the identity is bound to, which key logins name.
    #[serde(default)]
    home: Option<UserId>,
    #[serde(default)]
    sessions: Vec<SavedSession>,
}

struct Sessions {
    path: PathBuf,
    file: SessionsFile,
}

impl Sessions {
    /// Adds or replaces the session with the same server.
    fn put(&mut self, saved: SavedSession) {
        self.file.sessions.retain(|other| other.server_name != saved.server_name);
        self.file.sessions.push(saved);
    }

    fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.file)?;
        guildhall_client::write_secret(&self.path, text.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// The session on `server`, or every session.
    fn chosen(&self, server: Option<&str>) -> anyhow::Result<Vec<Session>> {
        if self.file.sessions.is_empty() {
            bail!("not logged in anywhere: run `guildhall user login <server-url>` first");
        }
        match server {
            Some(server) => Ok(vec![self.named(server)?]),
            None => self.file.sessions.iter().map(|saved| Ok(Session::restore(saved)?)).collect(),
        }
    }

    /// The session on `server`; else the home server's; else the only one.
    fn one(&self, server: Option<&str>) -> anyhow::Result<Session> {
        if let Some(server) = server {
            return self.named(server);
        }
        let home = self.file.home.as_ref().map(UserId::server_name);
        let saved =
            self.file.sessions.iter().find(|saved| Some(&saved.server_name) == home.as_ref()).or(
                match self.file.sessions.as_slice() {
                    [only] => Some(only),
                    _ => None,
                },
            );
        match saved {
            Some(saved) => Ok(Session::restore(saved)?),
            None if self.file.sessions.is_empty() => {
                bail!("not logged in anywhere: run `guildhall user login <server-url>` first")
            }
            None => bail!("logged in to several servers: choose one with --server"),
        }
    }

    fn named(&self, server: &str) -> anyhow::Result<Session> {
        let wanted = server.trim_end_matches('/');
        let saved = self.file.sessions.iter().find(|saved| {
            saved.url.trim_end_matches('/') == wanted || saved.server_name.as_str() == wanted
        });
        match saved {
            Some(saved) => Ok(Session::restore(saved)?),
            None => bail!("not logged in to {server}"),
        }
    }

    /// The session to use for a channel: on `server` if given; else whichever server knows it,
    /// preferring the guild's host when several do (a guild joined from another server is
    /// known to both).
    async fn for_channel(
        &self,
        server: Option<&str>,
        channel: &str,
    ) -> anyhow::Result<(Session, Channel)> {
        let channel_id = ChannelId::parse(channel).context("invalid channel id")?;
        let candidates = self.chosen(server)?;
        if let [session] = candidates.as_slice() {
            let channel = session.channel(&channel_id).await?;
            return Ok((session.clone(), channel));
        }
        let mut found = Vec::new();
        for session in candidates {
            if let Ok(channel) = session.channel(&channel_id).await {
                found.push((session, channel));
            }
        }
        let host = found
            .iter()
            .position(|(session, channel)| *session.server_name() == channel.guild_id.host());
        match host {
            Some(index) => Ok(found.swap_remove(index)),
            None if !found.is_empty() => Ok(found.swap_remove(0)),
            None => bail!("no server you are logged in to knows channel {channel}"),
        }
    }
}

/// A secret from `variable`, else a line read from standard input after `prompt`.
fn secret(variable: &str, prompt: &str) -> anyhow::Result<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => read_line(prompt).with_context(|| format!("set {variable}, or type it")),
    }
}

/// A passphrase for a new identity file: from `GUILDHALL_PASSPHRASE`, or typed (twice, at a
/// terminal).
fn new_passphrase() -> anyhow::Result<String> {
    if let Ok(value) = std::env::var("GUILDHALL_PASSPHRASE")
        && !value.is_empty()
    {
        return Ok(value);
    }
    let passphrase = read_line("new passphrase for the identity file: ")?;
    if std::io::stdin().is_terminal() && read_line("the same passphrase again: ")? != passphrase {
        bail!("the passphrases differ");
    }
    Ok(passphrase)
}

/// One line from standard input, without its line ending; at a terminal, after `prompt` on
/// standard error.
fn read_line(prompt: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        bail!("nothing was typed");
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_each_cause_once() {
        let io = || std::io::Error::other("disk on fire");
        let error = anyhow::Error::new(io()).context("writing sessions.json");
        assert_eq!(describe(&error), "writing sessions.json: disk on fire");
        let path = PathBuf::from("/id.json");
        let error = anyhow::Error::new(guildhall_client::IdentityError::Io { path, source: io() });
        assert_eq!(describe(&error), "/id.json: disk on fire");
    }

    #[test]
    fn utc_dates() {
        let check = |ms: u64, expected: &str| assert_eq!(utc(ms), expected, "{ms}");
        check(0, "1970-01-01 00:00:00");
        check(1_700_000_000_000, "2023-11-14 22:13:20");
        check(951_782_400_000, "2000-02-29 00:00:00");
        check(4_107_542_399_999, "2100-02-28 23:59:59");
    }
}
