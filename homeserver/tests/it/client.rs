//! The client library (`guildhall-client`) and the `guildhall user` command line against real
//! servers: one identity logged in to two federating servers, a guild on one joined from the
//! other, messages sent, read and received live over the gateway; direct messages; a gateway
//! that resumes; the identity file; and the command line end to end.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use guildhall_client::{
    Client, Error, Gateway, GatewayEvent, History, Identity, IdentityError, KdfParams, Message,
    NewInvite, Sent, Session, UserId,
};
use guildhall_identity::keyfile::KeyFileError;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::federation::{eventually, federating};
use crate::harness::{PASSWORD, Server};

/// Cheap Argon2 parameters, so tests do not spend seconds in the KDF.
const FAST: KdfParams = KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 };
/// How long a dispatch or a replicated message may take to arrive on a busy machine.
const ARRIVAL: Duration = Duration::from_secs(60);
/// The identity file's passphrase in these tests.
const PASSPHRASE: &str = "a long passphrase";

#[tokio::test]
async fn one_identity_logs_in_to_two_servers_and_talks_across_them() {
    let (a, b) = tokio::join!(federating(), federating());
    let identity = Identity::generate();
    let home = Client::connect(&a.base_url()).await.unwrap();
    assert_eq!(home.server_name().as_str(), a.name());
    let alice = home.register("alice", PASSWORD).await.unwrap();
    alice.bind_identity(&identity).await.unwrap();
    let again = alice.bind_identity(&identity).await.unwrap_err();
    assert_eq!(again.code(), Some("conflict"), "{again}");

    // A key login at home is the bound account; elsewhere it links an account to the identity.
    let at_home = home.login_with_key(&identity, alice.user_id(), None).await.unwrap();
    assert_eq!(at_home.user_id(), alice.user_id());
    let other = Client::connect(&b.base_url()).await.unwrap();
    let there = other.login_with_key(&identity, alice.user_id(), None).await.unwrap();
    assert_eq!(there.user_id().as_str(), b.user_id("alice"));
    assert_eq!(there.me().await.unwrap().identity_key, Some(identity.public_key()));
    let stranger = Identity::generate();
    let refused = other.login_with_key(&stranger, alice.user_id(), None).await.unwrap_err();
    assert_eq!(refused.code(), Some("bad_proof"), "{refused}");
    assert!(refused.to_string().starts_with("the server refused: bad_proof ("), "{refused}");

    // A guild on A, joined from B through an invite naming its host.
    let guild = alice.create_guild("Lobby").await.unwrap();
    let general = guild.channels[0].id.clone();
    let mut on_a = alice.gateway().await.unwrap();
    assert!(on_a.ready().guilds.iter().any(|g| g.id == guild.id), "READY lacks the guild");
    let invite = alice.create_invite(&general, NewInvite::default()).await.unwrap();
    assert_eq!(invite.server, *home.server_name());
    let joined = there.accept_invite(&invite.code, Some(&invite.server)).await.unwrap();
    assert_eq!(joined.id, guild.id);
    assert!(there.guilds().await.unwrap().iter().any(|g| g.id == guild.id));
    let mut on_b = there.gateway().await.unwrap();

    // B's account writes; A's gateway shows it live, and both servers' histories hold it.
    let from_b = delivered(there.send_message(&general, "hello from b").await.unwrap());
    let live = next_message(&mut on_a, |m| m.id == from_b.id).await;
    assert_eq!((live.author_id, live.content), (there.user_id().clone(), "hello from b".into()));
    let history = alice.messages(&general, &History::latest(10)).await.unwrap();
    assert_eq!(contents(&history), ["hello from b"]);

    // A's account answers; it crosses to B's gateway and B's replica.
    let from_a = delivered(alice.send_message(&general, "welcome").await.unwrap());
    let live = next_message(&mut on_b, |m| m.id == from_a.id).await;
    assert_eq!(live.author_id, *alice.user_id());
    let replica = eventually(
        ARRIVAL,
        || async { there.messages(&general, &History::latest(10)).await.map(|m| contents(&m)) },
        |list| list.as_ref().is_ok_and(|list| list.len() == 2),
    )
    .await;
    assert_eq!(replica.unwrap(), ["welcome", "hello from b"], "newest first");
}

#[tokio::test]
async fn direct_messages_open_send_and_list() {
    let server = Server::start().await;
    let client = Client::connect(&server.base_url()).await.unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let bob = client.register("bob", PASSWORD).await.unwrap();
    let dm = alice.open_direct_message(bob.user_id()).await.unwrap();
    assert_eq!(dm.recipients, [bob.user_id().clone()]);
    assert_eq!(alice.open_direct_message(bob.user_id()).await.unwrap(), dm, "opened once");
    delivered(alice.send_message(&dm.channel_id, "psst").await.unwrap());

    let listed = bob.direct_messages().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].recipients, [alice.user_id().clone()]);
    let read = bob.messages(&listed[0].channel_id, &History::default()).await.unwrap();
    assert_eq!(contents(&read), ["psst"]);
    let nobody = UserId::parse(&server.user_id("nobody")).unwrap();
    let refused = alice.open_direct_message(&nobody).await.unwrap_err();
    assert_eq!(refused.code(), Some("unknown_user"), "{refused}");
}

#[tokio::test]
async fn a_gateway_resumes_after_the_server_drops_it() {
    // Two client frames a minute and a heartbeat every 1.5 s: the server closes every
    // connection with the resumable 4008 a few seconds in, and the client resumes each time.
    let server = Server::builder()
        .env("GUILDHALL_GATEWAY__HEARTBEAT_INTERVAL_MS", "3000")
        .env("GUILDHALL_GATEWAY__FRAMES_PER_MINUTE", "2")
        .start()
        .await;
    let client = Client::connect(&server.base_url()).await.unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let general = alice.create_guild("Lobby").await.unwrap().channels[0].id.clone();
    let mut gateway = alice.gateway().await.unwrap();
    let resumed = tokio::time::timeout(ARRIVAL, async {
        loop {
            match gateway.next().await {
                Some(Ok(GatewayEvent::Resumed)) => return,
                Some(Ok(_)) => {}
                other => panic!("gateway ended: {other:?}"),
            }
        }
    })
    .await;
    assert!(resumed.is_ok(), "no RESUMED");
    let sent = delivered(alice.send_message(&general, "after the resume").await.unwrap());
    assert_eq!(next_message(&mut gateway, |m| m.id == sent.id).await.content, "after the resume");
}

#[tokio::test]
async fn a_revoked_token_ends_the_gateway_stream() {
    let server = Server::start().await;
    let client = Client::connect(&server.base_url()).await.unwrap();
    let alice = client.register("alice", PASSWORD).await.unwrap();
    let mut gateway = alice.gateway().await.unwrap();
    let restored = Session::restore(&alice.saved()).unwrap();
    restored.logout().await.unwrap();
    let ended = tokio::time::timeout(ARRIVAL, async {
        loop {
            match gateway.next().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the stream did not end");
    assert!(
        matches!(ended, Some(Err(Error::GatewayClosed { code: 4004, .. }))),
        "expected close 4004, got {ended:?}"
    );
    assert!(gateway.next().await.is_none(), "nothing after the error");
    let refused = alice.me().await.unwrap_err();
    assert_eq!(refused.code(), Some("unauthorized"), "{refused}");
}

#[tokio::test]
async fn the_identity_file_opens_only_with_its_passphrase() {
    let dir = ScratchDir::new("identity-file");
    let path = dir.0.join("identity.json");
    let identity = Identity::generate();
    identity.save(&path, PASSPHRASE, FAST).unwrap();
    let loaded = Identity::load(&path, PASSPHRASE).unwrap();
    assert_eq!(loaded.public_key(), identity.public_key());
    let wrong = Identity::load(&path, "another passphrase").unwrap_err();
    assert!(
        matches!(wrong, IdentityError::KeyFile { source: KeyFileError::WrongPassphrase, .. }),
        "{wrong}"
    );
    let words = identity.phrase().words();
    let recovered = Identity::recover(&words, 0).unwrap();
    assert_eq!(recovered.public_key(), identity.public_key());
}

#[tokio::test]
async fn the_command_line_logs_in_to_two_servers_sends_and_reads() {
    let (a, b) = tokio::join!(federating(), federating());
    let cli = Cli::new("two-servers");
    let alice_a = a.user_id("alice");
    let alice_b = b.user_id("alice");

    let created = cli.ok(&["identity", "new"]).await;
    assert!(created.contains("WARNING: write these 24 words down"), "{created}");
    let phrase: Vec<&str> = created
        .lines()
        .filter(|line| line.starts_with("    "))
        .flat_map(str::split_whitespace)
        .collect();
    assert_eq!(phrase.len(), 24, "{created}");
    let key = value_after(&created, "identity key: ");
    assert!(cli.ok(&["identity", "show"]).await.contains(&key));
    let wrong = cli.run_with(&["identity", "show"], &[("GUILDHALL_PASSPHRASE", "wrong")], "").await;
    assert_failed(&wrong, "wrong passphrase, or the file was altered");

    // Recovery from the phrase gives the same key.
    let copy = cli.with_identity("copy/identity.json");
    let recovered = copy.run_with(&["identity", "recover"], &[], &phrase.join(" ")).await;
    assert!(recovered.status.success(), "recover: {}", stderr(&recovered));
    assert!(stdout(&recovered).contains(&key), "{}", stdout(&recovered));

    let registered = cli
        .run_with(
            &["login", &a.base_url(), "--register", "alice"],
            &[("GUILDHALL_PASSWORD", PASSWORD)],
            "",
        )
        .await;
    assert!(registered.status.success(), "register: {}", stderr(&registered));
    let registered = stdout(&registered);
    assert!(registered.contains(&format!("registered {alice_a} with identity key {key}")));
    assert!(registered.contains(&format!("logged in to {} as {alice_a}", a.name())));
    let linked = cli.ok(&["login", &b.base_url()]).await;
    assert!(linked.contains(&format!("logged in to {} as {alice_b}", b.name())), "{linked}");

    // A guild on each server, and a message in each.
    let lobby = channel_of(&cli.ok(&["--server", &a.name(), "create-guild", "Lobby"]).await);
    let den = channel_of(&cli.ok(&["--server", &b.base_url(), "create-guild", "Den"]).await);
    assert!(cli.ok(&["send", &lobby, "hello", "from", "the", "shell"]).await.starts_with("sent $"));
    assert!(cli.ok(&["send", &den, "hi on b"]).await.starts_with("sent $"));
    let read = cli.ok(&["read", &den, "--limit", "5"]).await;
    assert!(read.trim_end().ends_with(&format!("] {alice_b}: hi on b")), "{read}");

    // B's account joins the Lobby on A and writes there; A shows both, oldest first.
    let invited = cli.ok(&["invite", &lobby]).await;
    let code = invited.split_whitespace().nth(1).unwrap().to_owned();
    let joined = cli.ok(&["--server", &b.name(), "join", &code, "--host", &a.name()]).await;
    assert!(joined.starts_with("joined Lobby ("), "{joined}");
    cli.ok(&["--server", &b.name(), "send", &lobby, "from b"]).await;
    let read = cli.ok(&["read", &lobby]).await;
    let lines: Vec<&str> = read.lines().collect();
    assert_eq!(lines.len(), 2, "{read}");
    assert!(lines[0].ends_with(&format!("] {alice_a}: hello from the shell")), "{read}");
    assert!(lines[1].ends_with(&format!("] {alice_b}: from b")), "{read}");

    let listed = cli.ok(&["guilds"]).await;
    for expected in [a.name(), b.name(), "Lobby".into(), "Den".into(), lobby.clone(), den] {
        assert!(listed.contains(&expected), "guilds lacks {expected}: {listed}");
    }
    let refused = cli.run_with(&["--server", &a.name(), "send", "nochannel", "x"], &[], "").await;
    assert_failed(&refused, "error: the server refused: unknown_channel (");
}

#[tokio::test]
async fn the_command_line_tails_messages_live() {
    let server = Server::start().await;
    let cli = Cli::new("tail");
    cli.ok(&["identity", "new"]).await;
    let registered = cli
        .run_with(
            &["login", &server.base_url(), "--register", "alice"],
            &[("GUILDHALL_PASSWORD", PASSWORD)],
            "",
        )
        .await;
    assert!(registered.status.success(), "register: {}", stderr(&registered));
    let lobby = channel_of(&cli.ok(&["create-guild", "Lobby"]).await);

    let mut tail = cli.command(&["tail", &lobby]);
    let mut child = tail.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut errors = BufReader::new(child.stderr.take().unwrap()).lines();
    let watching = tokio::time::timeout(ARRIVAL, errors.next_line()).await;
    let watching = watching.expect("tail did not start").unwrap().unwrap_or_default();
    assert!(watching.starts_with("watching "), "{watching}");

    cli.ok(&["send", &lobby, "live", "words"]).await;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let printed = tokio::time::timeout(ARRIVAL, lines.next_line()).await;
    let printed = printed.expect("nothing printed").unwrap().unwrap_or_default();
    let alice = server.user_id("alice");
    assert!(printed.ends_with(&format!("] #general (Lobby) {alice}: live words")), "{printed}");
    child.kill().await.unwrap();
}

/// The message a send delivered.
#[track_caller]
fn delivered(sent: Sent) -> Message {
    match sent {
        Sent::Delivered(message) => message,
        Sent::Queued { nonce } => panic!("queued as {nonce}"),
    }
}

/// The next `MESSAGE_CREATE` matching `wanted`, skipping everything else.
async fn next_message(gateway: &mut Gateway, wanted: impl Fn(&Message) -> bool) -> Message {
    let found = tokio::time::timeout(ARRIVAL, async {
        loop {
            match gateway.next().await {
                Some(Ok(GatewayEvent::MessageCreate(message))) if wanted(&message) => {
                    return message;
                }
                Some(Ok(_)) => {}
                other => panic!("gateway ended: {other:?}"),
            }
        }
    })
    .await;
    found.expect("the message did not arrive")
}

fn contents(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|message| message.content.clone()).collect()
}

/// The `guildhall user` command line with its own identity file and fast key derivation.
#[derive(Clone)]
struct Cli {
    dir: Arc<ScratchDir>,
    identity: PathBuf,
}

impl Cli {
    fn new(name: &str) -> Self {
        let dir = Arc::new(ScratchDir::new(name));
        Self { identity: dir.0.join("identity.json"), dir }
    }

    /// The same command line with another identity file in the same directory.
    fn with_identity(&self, relative: &str) -> Self {
        Self { identity: self.dir.0.join(relative), dir: self.dir.clone() }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_guildhall"));
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("GUILDHALL_")) {
            command.env_remove(key);
        }
        command
            .env("HOME", &self.dir.0)
            .env("GUILDHALL_PASSPHRASE", PASSPHRASE)
            .arg("user")
            .arg("--kdf-fast")
            .arg("--identity")
            .arg(&self.identity)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Runs a command with extra environment and `input` on standard input.
    async fn run_with(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
        let mut command = self.command(args);
        command.envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, format!("{input}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        child.wait_with_output().await.unwrap()
    }

    /// Runs a command that must succeed; returns its standard output.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run_with(args, &[], "").await;
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    }
}

#[track_caller]
fn assert_failed(output: &Output, expected: &str) {
    assert!(!output.status.success(), "succeeded: {}", stdout(output));
    assert!(stderr(output).contains(expected), "expected {expected:?}: {}", stderr(output));
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What follows `prefix` on the line that starts with it.
fn value_after(text: &str, prefix: &str) -> String {
    let line = text.lines().find_map(|line| line.strip_prefix(prefix));
    line.unwrap_or_else(|| panic!("no {prefix:?} in {text}")).to_owned()
}

/// The id of `#general` in `create-guild`'s output.
fn channel_of(created: &str) -> String {
    value_after(created, "  #general ")
}

/// A new empty directory under the system temp dir, removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir()
            .join(format!("guildhall-client-it-{}-{name}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
