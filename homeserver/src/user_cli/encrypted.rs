//! `guildhall user e2e …`: end-to-end encrypted direct messages (spec 17) from the command
//! line, on top of `guildhall_client::e2e`.
//!
//! The login to a server is the device: `setup` registers it and keeps its Olm account and
//! sessions in `e2e-<server>.json` beside the identity file, sealed with a key derived from the
//! identity (so every command here asks for the identity's passphrase). Everything printed
//! about these conversations says that it is encrypted, and a send names each recipient whose
//! devices did not get the message; nothing is ever sent unencrypted instead.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use guildhall_client::e2e::{
    self, Conversation, Device, Incoming, ReceivedMessage, ResetOutcome, SendReport, Undecryptable,
};
use guildhall_client::{GatewayEvent, Session, UserId};

use super::{Files, utc};

/// What `guildhall user e2e` does.
#[derive(Debug, Subcommand)]
pub(super) enum EncryptedCommand {
    /// Make this login a device for encrypted messages: certify its keys with the identity
    /// and publish them.
    Setup {
        /// Make a new device even if this login has one (the old one's messages are lost).
        #[arg(long)]
        force: bool,
    },
    /// Certify this device again with the identity's current key (needed after the identity
    /// key was rotated).
    Certify,
    /// Send an end-to-end encrypted message to one or more people (a group of up to 10).
    Send {
        /// The recipients, e.g. `@bob:example.org` (may be left out with --conversation).
        users: Vec<String>,
        /// The text. Without it, the text is read from standard input (to its end), which is
        /// safer: a text on the command line can be seen by other users of the machine (in
        /// the process list) and is kept in the shell's history.
        #[arg(long)]
        text: Option<String>,
        /// Continue this conversation (by id) instead of the one with exactly these people.
        #[arg(long)]
        conversation: Option<String>,
    },
    /// Read new encrypted messages (and show the conversations' history with --all).
    Read {
        /// Show every conversation's history after reading.
        #[arg(long)]
        all: bool,
        /// Keep printing messages as they arrive, until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// List the encrypted conversations this device knows.
    Conversations,
    /// Accept the new identity key of a person whose key changed (check with them another
    /// way first: if they did not rotate it, someone else may be reading). Until then nothing
    /// is sent to them or read from their new devices.
    Accept {
        /// The person, e.g. `@bob:example.org`.
        user: String,
    },
}

/// Runs an `e2e` command on the session of `server` (or the home server).
pub(super) async fn run(
    files: &Files,
    server: Option<&str>,
    command: EncryptedCommand,
) -> anyhow::Result<()> {
    let session = files.sessions()?.one(server)?;
    let store = store_path(files, &session);
    match command {
        EncryptedCommand::Setup { force } => setup(files, &session, &store, force).await,
        EncryptedCommand::Certify => {
            check_set_up(&session, &store)?;
            let identity = files.identity()?;
            let mut device = open_with(&identity, &session, &store)?;
            device.certify(&session, &identity).await?;
            println!(
                "device {} certified again by identity {}",
                device.device_id(),
                identity.public_key()
            );
            Ok(())
        }
        EncryptedCommand::Send { users, text, conversation } => {
            let text = match text {
                Some(text) => text,
                None => read_text()?,
            };
            let mut device = open(files, &session, &store)?;
            send(&mut device, &session, &users, &text, conversation.as_deref()).await
        }
        EncryptedCommand::Accept { user } => {
            let user = UserId::parse(&user).with_context(|| format!("invalid user id {user}"))?;
            let mut device = open(files, &session, &store)?;
            if device.accept_identity(&user)? {
                println!("accepted {user}'s new identity key; messages to and from them go on");
                // What they sent meanwhile was kept: read it now.
                for item in device.receive(&session).await? {
                    print_incoming(&item, session.user_id());
                }
            } else {
                println!("no identity change of {user} to accept");
            }
            Ok(())
        }
        EncryptedCommand::Read { all, follow } => {
            let mut device = open(files, &session, &store)?;
            read(&mut device, &session, all, follow).await
        }
        EncryptedCommand::Conversations => {
            let device = open(files, &session, &store)?;
            let mut any = false;
            for conversation in device.conversations() {
                any = true;
                let last = conversation.messages.last().map(|m| utc(m.sent_ts));
                println!(
                    "[encrypted] {} with {} ({} messages{})",
                    conversation.id,
                    others(conversation, session.user_id()),
                    conversation.messages.len(),
                    last.map(|ts| format!(", last {ts}")).unwrap_or_default()
                );
            }
            if !any {
                println!("no encrypted conversations yet");
            }
            Ok(())
        }
    }
}

/// The text of a message from standard input, without the final line break.
fn read_text() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading the text from standard input")?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.to_owned())
}

/// `e2e-<server>.json` beside the identity file, one per server logged in to.
fn store_path(files: &Files, session: &Session) -> PathBuf {
    let server: String = session
        .server_name()
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .collect();
    files.identity.with_file_name(format!("e2e-{server}.json"))
}

async fn setup(
    files: &Files,
    session: &Session,
    store: &std::path::Path,
    force: bool,
) -> anyhow::Result<()> {
    if store.exists() && !force {
        bail!(
            "{} exists: this login is a device already (pass --force to make a new one; \
             messages only the old one could read are then lost)",
            store.display()
        );
    }
    let identity = files.identity()?;
    let device = Device::create(session, &identity, store)
        .await
        .context("setting up end-to-end encryption")?;
    println!(
        "this login to {} is now device {} for end-to-end encrypted messages",
        session.server_name(),
        device.device_id()
    );
    println!("  keys certified by identity {}", identity.public_key());
    println!("  store: {}", store.display());
    Ok(())
}

fn open(files: &Files, session: &Session, store: &std::path::Path) -> anyhow::Result<Device> {
    check_set_up(session, store)?;
    open_with(&files.identity()?, session, store)
}

fn open_with(
    identity: &guildhall_client::Identity,
    session: &Session,
    store: &std::path::Path,
) -> anyhow::Result<Device> {
    check_set_up(session, store)?;
    Ok(Device::open(store, identity)?)
}

fn check_set_up(session: &Session, store: &std::path::Path) -> anyhow::Result<()> {
    if !store.exists() {
        bail!(
            "this login to {} is not set up for encrypted messages: run `guildhall user e2e setup`",
            session.server_name()
        );
    }
    Ok(())
}

async fn send(
    device: &mut Device,
    session: &Session,
    users: &[String],
    text: &str,
    conversation: Option<&str>,
) -> anyhow::Result<()> {
    let mut members = users
        .iter()
        .map(|user| UserId::parse(user).with_context(|| format!("invalid user id {user}")))
        .collect::<anyhow::Result<Vec<UserId>>>()?;
    let conversation = match conversation {
        Some(id) => {
            if members.is_empty() {
                let known = device.conversation(id).with_context(|| {
                    format!("no conversation {id} here: name its members to start it")
                })?;
                members.clone_from(&known.members);
            }
            id.to_owned()
        }
        None if members.is_empty() => bail!("name the recipients, or a conversation"),
        None => device
            .conversation_with(&members)
            .map_or_else(e2e::new_conversation_id, |known| known.id.clone()),
    };
    let report = device.send(session, &conversation, &members, text).await?;
    let me = session.user_id();
    let failed = report_send(&report, &conversation, &members, me);
    if failed > 0 {
        bail!("the message did not reach {failed} of the recipients (it was not sent unencrypted)");
    }
    if report.failed.contains_key(me) {
        bail!("the message was not copied to your other devices (it was not sent unencrypted)");
    }
    Ok(())
}

/// Prints what became of a send; returns how many recipients did not get it.
fn report_send(report: &SendReport, conversation: &str, members: &[UserId], me: &UserId) -> usize {
    let others: Vec<&UserId> = members.iter().filter(|member| *member != me).collect();
    println!(
        "[encrypted] conversation {conversation} with {}: end-to-end encrypted, servers cannot read it",
        join(&others)
    );
    for user in &report.identity_changed {
        println!("{}", identity_warning(user));
    }
    for user in &report.delivered {
        if user == me {
            println!("  copied to your other devices");
        } else {
            println!("  delivered to {user} (every device)");
        }
    }
    for (user, failure) in &report.failed {
        if user == me {
            println!("  NOT copied to your other devices: {failure}");
        } else {
            println!("  NOT DELIVERED to {user}: {failure}");
        }
    }
    report.failed.keys().filter(|user| *user != me).count()
}

async fn read(
    device: &mut Device,
    session: &Session,
    all: bool,
    follow: bool,
) -> anyhow::Result<()> {
    // Keys first: a device that was away may have run out.
    if let Err(error) = device.upload_keys(session).await {
        eprintln!("warning: could not top up the device's one-time keys: {error}");
    }
    let incoming = device.receive(session).await?;
    let me = session.user_id().clone();
    if incoming.is_empty() && !follow {
        println!("no new encrypted messages");
    }
    for item in &incoming {
        print_incoming(item, &me);
    }
    if all {
        for conversation in device.conversations() {
            println!(
                "[encrypted] conversation {} with {}",
                conversation.id,
                others(conversation, &me)
            );
            for message in &conversation.messages {
                let missed: Vec<&UserId> = message.not_delivered.iter().collect();
                let note = if missed.is_empty() {
                    String::new()
                } else {
                    format!(" (not delivered to {})", join(&missed))
                };
                println!("  [{}] {}: {}{note}", utc(message.sent_ts), message.sender, message.body);
            }
        }
    }
    if !follow {
        return Ok(());
    }
    let mut gateway = session.gateway().await.context("connecting to the gateway")?;
    // Anything that arrived between the read above and the connection is in the inbox.
    for item in device.receive(session).await? {
        print_incoming(&item, &me);
    }
    eprintln!("waiting for encrypted messages as {me} (Ctrl-C to stop)");
    loop {
        let event = tokio::select! {
            event = gateway.next() => event,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => bail!("the gateway connection failed: {error}"),
            None => bail!("the gateway connection ended"),
        };
        if matches!(event, GatewayEvent::Ready(_)) {
            eprintln!("reconnected; reading what arrived meanwhile");
        }
        match device.handle(session, &event).await {
            Ok(items) => items.iter().for_each(|item| print_incoming(item, &me)),
            Err(error) => eprintln!("warning: {error} (the message stays in the inbox)"),
        }
    }
}

fn print_incoming(item: &Incoming, me: &UserId) {
    match item {
        Incoming::Message(message) => {
            if let Some(before) = &message.members_changed {
                let before: Vec<&UserId> = before.iter().collect();
                println!(
                    "NOTE: {} wrote in conversation {} with other members than before (before: \
                     {}); it is shown as a conversation of its own",
                    message.sender,
                    message.conversation,
                    join(&before)
                );
            }
            println!("{}", message_line(message, me));
        }
        Incoming::SessionReset { sender, sender_device } => {
            println!(
                "[encrypted] {sender} (device {sender_device}) started a new session with this device"
            );
        }
        Incoming::Undecryptable(dropped) => println!("{}", undecryptable_line(dropped)),
        Incoming::IdentityChanged { sender, sender_device, .. } => {
            println!("{}", identity_warning(sender));
            println!(
                "  a message from {sender} (device {sender_device}) is kept unread until then"
            );
        }
    }
}

fn identity_warning(user: &UserId) -> String {
    format!(
        "WARNING: {user}'s identity key changed since this device last saw it. If they did not \
         rotate it, someone else may be reading: check with them another way, then run \
         `guildhall user e2e accept {user}`. Until then nothing is sent to or read from them."
    )
}

/// `[2024-01-31 12:00:00] [encrypted] conversation c (with @bob:b) @alice:a: text`.
fn message_line(message: &ReceivedMessage, me: &UserId) -> String {
    let others: Vec<&UserId> = message.members.iter().filter(|member| *member != me).collect();
    format!(
        "[{}] [encrypted] conversation {} (with {}) {}: {}",
        utc(message.sent_ts),
        message.conversation,
        join(&others),
        message.sender,
        message.body
    )
}

fn undecryptable_line(dropped: &Undecryptable) -> String {
    let reset = match &dropped.reset {
        Some(ResetOutcome::Sent) => "; asked the sender's device for a new session",
        Some(ResetOutcome::Recent(_)) => "; a new session was asked for within the hour",
        Some(ResetOutcome::Failed(_)) => "; could not ask for a new session",
        None => "",
    };
    format!(
        "WARNING: a message from {} (device {}) could not be read and was dropped: {}{reset}",
        dropped.sender, dropped.sender_device, dropped.error
    )
}

fn others(conversation: &Conversation, me: &UserId) -> String {
    join(&conversation.members.iter().filter(|member| *member != me).collect::<Vec<_>>())
}

fn join(users: &[&UserId]) -> String {
    users.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
