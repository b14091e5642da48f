//! The Discord-compatible bot API: a stock discord.py bot (PyPI) runs unchanged against real
//! servers, and the wire details it depends on are checked directly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::federation::{eventually, federating};
use crate::harness::{Server, StatusCode, User, Value, bits, community, json};

/// How long a bot process may take to start and get ready (it imports aiohttp and discord.py).
const BOT_READY: Duration = Duration::from_secs(90);
/// How long a bot's answer may take to show up.
const ANSWER: Duration = Duration::from_secs(30);

/// SEND_MESSAGES.
const SEND_MESSAGES: u64 = 1 << 11;

/// A bot application and its token.
struct Bot {
    application_id: String,
    user_id: String,
    token: String,
}

/// `owner` creates a bot with the privileged intents `intents`.
async fn create_bot(owner: &User, username: &str, intents: &[&str]) -> Bot {
    let body = json!({"name": username, "username": username, "intents": intents});
    let (status, body) = owner.post("/applications", body).await;
    assert_eq!(status, StatusCode::CREATED, "create bot: {body}");
    Bot {
        application_id: body["application"]["id"].as_str().unwrap().to_owned(),
        user_id: body["application"]["bot_user_id"].as_str().unwrap().to_owned(),
        token: body["token"].as_str().unwrap().to_owned(),
    }
}

/// A guild admin adds the bot to a guild with `permissions`.
async fn authorize(admin: &User, bot: &Bot, guild: &str, permissions: u64) {
    let body = json!({"guild_id": guild, "permissions": permissions.to_string()});
    let (status, body) =
        admin.post(&format!("/applications/{}/authorize", bot.application_id), body).await;
    assert_eq!(status, StatusCode::OK, "authorize: {body}");
}

/// An HTTP client of the compatibility API with the bot's token.
fn discord_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn discord_call(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value, Option<String>) {
    let mut request = discord_client()
        .request(method, format!("{}/api/v10{path}", server.base_url()))
        .header("Authorization", format!("Bot {token}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), content_type)
}

/// A discord.py bot process (`examples/discord/ping_bot.py`), killed when dropped.
struct BotProcess {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl BotProcess {
    /// Starts the bot against `server` and waits for its `on_ready`; returns the ready line.
    fn start(server: &Server, token: &str, sharded: bool) -> (Self, String) {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let dir = std::env::temp_dir().join(format!("guildhall-bot-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("bot.log");
        let mut child = Command::new("python3")
            .arg(root.join("examples/discord/ping_bot.py"))
            .env("PYTHONPATH", root.join("examples/discord"))
            .env("DISCORD_API_BASE", format!("{}/api/v10", server.base_url()))
            .env("DISCORD_GATEWAY_URL", format!("{}/discord/gateway", ws_base(server)))
            .env("DISCORD_TOKEN", token)
            .env("BOT_SHARDED", if sharded { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 with discord.py (pip install -r interop/discordpy/requirements.txt)");
        let stdout = child.stdout.take().unwrap();
        let (lines, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let process = Self { child, log, _dir: tempdir::Dir(dir) };
        let line = ready.recv_timeout(BOT_READY).unwrap_or_else(|_| {
            panic!("the bot did not get ready; its log ends:\n{}", process.log_tail())
        });
        assert!(line.starts_with("ready "), "unexpected bot output {line:?}");
        (process, line)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for BotProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    format!("{}-{:?}", std::process::id(), std::time::SystemTime::now())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "")
}

fn ws_base(server: &Server) -> String {
    server.base_url().replacen("http://", "ws://", 1)
}

/// The messages of a channel as `user` reads them (native API), newest first.
async fn messages(user: &User, channel: &str) -> Vec<Value> {
    let (status, body) = user.get(&format!("/channels/{channel}/messages?limit=100")).await;
    if status != StatusCode::OK {
        return Vec::new();
    }
    body["messages"].as_array().cloned().unwrap_or_default()
}

fn by<'a>(list: &'a [Value], author: &str, content: &str) -> Option<&'a Value> {
    list.iter().find(|m| m["author_id"] == author && m["content"] == content)
}

#[tokio::test]
async fn a_stock_discord_py_bot_answers_reacts_edits_deletes_and_greets() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice"]).await;
    let alice = &users[0];
    let bot = create_bot(alice, "pingbot", &["members", "message_content"]).await;
    authorize(alice, &bot, &guild.id, SEND_MESSAGES).await;
    let (_process, ready) = BotProcess::start(&server, &bot.token, false);
    assert!(ready.contains("guilds=1"), "{ready}");

    alice.send(&guild.general, "!ping").await;
    let seen = eventually(
        ANSWER,
        || messages(alice, &guild.general),
        |list| {
            by(list, &bot.user_id, "pong!").is_some_and(|m| {
                m["edited_ts"].is_u64() && m["reactions"][0]["emoji"] == "\u{1f44d}"
            })
        },
    )
    .await;
    let answer = by(&seen, &bot.user_id, "pong!").expect("the bot's edited answer");
    assert_eq!(answer["reactions"][0]["count"], 1, "one reaction, the bot's");

    alice.send(&guild.general, "!cleanup").await;
    let seen = eventually(
        ANSWER,
        || messages(alice, &guild.general),
        |list| {
            by(list, &bot.user_id, "cleaned up").is_some()
                && by(list, &bot.user_id, "pong!").is_none()
        },
    )
    .await;
    assert!(by(&seen, &bot.user_id, "pong!").is_none(), "the answer was deleted");
    assert!(by(&seen, &bot.user_id, "cleaned up").is_some(), "the bot said so");

    // A member joins: the bot sees it (members intent) and greets them.
    let bob = server.register("bob").await;
    bob.join(&alice.invite(&guild.general).await).await;
    let seen = eventually(
        ANSWER,
        || messages(alice, &guild.general),
        |list| by(list, &bot.user_id, "welcome bob").is_some(),
    )
    .await;
    assert!(by(&seen, &bot.user_id, "welcome bob").is_some(), "the bot greeted bob");
}

#[tokio::test]
async fn an_auto_sharded_bot_connects_through_gateway_bot() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice"]).await;
    let alice = &users[0];
    let bot = create_bot(alice, "shardbot", &["members", "message_content"]).await;
    authorize(alice, &bot, &guild.id, 0).await;
    let (_process, ready) = BotProcess::start(&server, &bot.token, true);
    assert!(ready.contains("shards=1"), "{ready}");
    alice.send(&guild.general, "!ping").await;
    let seen = eventually(
        ANSWER,
        || messages(alice, &guild.general),
        |list| by(list, &bot.user_id, "pong!").is_some(),
    )
    .await;
    assert!(by(&seen, &bot.user_id, "pong!").is_some(), "the sharded bot answered");
}

#[tokio::test]
async fn a_bot_in_a_guild_hosted_elsewhere_works_through_its_home_server() {
    let home = federating().await;
    let host = federating().await;
    let owner = home.register("owner").await;
    let bot = create_bot(&owner, "farbot", &["members", "message_content"]).await;
    let carol = host.register("carol").await;
    let guild = carol.create_guild("Far away").await;
    let code = carol.invite(&guild.general).await;
    // The guild's admins are on another server: they send the bot's owner an invite, and the
    // owner has the bot accept it through its own server.
    let body = json!({"code": code, "server": host.name()});
    let (status, joined) =
        owner.post(&format!("/applications/{}/join", bot.application_id), body).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let (_process, ready) = BotProcess::start(&home, &bot.token, false);
    assert!(ready.contains("guilds=1"), "{ready}");

    carol.send(&guild.general, "!ping").await;
    let seen = eventually(
        ANSWER,
        || messages(&carol, &guild.general),
        |list| by(list, &bot.user_id, "pong!").is_some(),
    )
    .await;
    assert!(by(&seen, &bot.user_id, "pong!").is_some(), "the remote bot answered on the host");
}

#[tokio::test]
async fn bots_are_held_to_permissions_and_see_discord_shapes() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice"]).await;
    let alice = &users[0];
    let bot = create_bot(alice, "quietbot", &[]).await;
    authorize(alice, &bot, &guild.id, 0).await;

    let (status, me, content_type) =
        discord_call(&server, &bot.token, reqwest::Method::GET, "/users/@me", None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(content_type.as_deref(), Some("application/json"));
    assert_eq!(me["bot"], true);
    assert_eq!(me["id"], bot.application_id, "a bot's user id is its application id");
    let (_, app, _) =
        discord_call(&server, &bot.token, reqwest::Method::GET, "/oauth2/applications/@me", None)
            .await;
    assert_eq!(app["id"], bot.application_id);
    assert_eq!(app["owner"]["username"], "alice");

    let (status, guilds, _) =
        discord_call(&server, &bot.token, reqwest::Method::GET, "/users/@me/guilds", None).await;
    assert_eq!(status, StatusCode::OK);
    let guild_snowflake = guilds[0]["id"].as_str().unwrap().to_owned();
    assert!(guild_snowflake.parse::<u64>().is_ok(), "snowflakes are numbers: {guild_snowflake}");
    let path = format!("/guilds/{guild_snowflake}/channels");
    let (_, channels, _) =
        discord_call(&server, &bot.token, reqwest::Method::GET, &path, None).await;
    let channel = channels[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(channels[0]["type"], 0);

    // A send with enforce_nonce, retried: one message, the same answer.
    let send = |nonce: &str| json!({"content": "hello from a bot", "nonce": nonce, "enforce_nonce": true, "tts": false});
    let path = format!("/channels/{channel}/messages");
    let (status, first, _) =
        discord_call(&server, &bot.token, reqwest::Method::POST, &path, Some(send("42"))).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (_, again, _) =
        discord_call(&server, &bot.token, reqwest::Method::POST, &path, Some(send("42"))).await;
    assert_eq!(first["id"], again["id"], "the retry answers with the first message");
    assert_eq!(first["author"]["id"], bot.application_id);
    let count = messages(alice, &guild.general).await;
    assert_eq!(count.iter().filter(|m| m["content"] == "hello from a bot").count(), 1);

    // Without SEND_MESSAGES in the channel the bot is refused as a user would be.
    let deny = json!({"kind": "member", "deny": bits::text(SEND_MESSAGES)});
    let (status, body) =
        alice.put(&format!("/channels/{}/permissions/{}", guild.general, bot.user_id), deny).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, refused, _) =
        discord_call(&server, &bot.token, reqwest::Method::POST, &path, Some(send("43"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["code"], 50013);

    // Unknown ids and bad bodies get Discord's errors.
    let (status, unknown, _) =
        discord_call(&server, &bot.token, reqwest::Method::GET, "/channels/12345", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(unknown["code"], 10003);
    let (status, empty, _) = discord_call(
        &server,
        &bot.token,
        reqwest::Method::POST,
        &path,
        Some(json!({"content": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{empty}");
    // The members list needs the privileged intent this bot lacks.
    let path = format!("/guilds/{guild_snowflake}/members?limit=10");
    let (status, _, _) = discord_call(&server, &bot.token, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A DM with a person: the bot opens it, says something, and she reads it natively.
    let (_, owner, _) = discord_call(
        &server,
        &bot.token,
        reqwest::Method::GET,
        &format!("/guilds/{guild_snowflake}"),
        None,
    )
    .await;
    let body = json!({"recipient_id": owner["owner_id"]});
    let (status, dm, _) =
        discord_call(&server, &bot.token, reqwest::Method::POST, "/users/@me/channels", Some(body))
            .await;
    assert_eq!(status, StatusCode::OK, "{dm}");
    assert_eq!(dm["type"], 1);
    assert_eq!(dm["recipients"][0]["username"], "alice");
    let path = format!("/channels/{}/messages", dm["id"].as_str().unwrap());
    let (status, said, _) = discord_call(
        &server,
        &bot.token,
        reqwest::Method::POST,
        &path,
        Some(json!({"content": "hello in private"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{said}");
    assert!(said.get("guild_id").is_none(), "a DM message has no guild");
    let (_, dms) = alice.get("/users/@me/channels").await;
    let dm_channel = dms["channels"][0]["channels"][0]["id"].as_str().unwrap().to_owned();
    let seen = eventually(
        ANSWER,
        || messages(alice, &dm_channel),
        |list| by(list, &bot.user_id, "hello in private").is_some(),
    )
    .await;
    assert!(by(&seen, &bot.user_id, "hello in private").is_some());
}

/// A raw gateway v10 connection.
struct DiscordGateway {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    inflate: Option<flate2::Decompress>,
    last_seq: Option<i64>,
}

impl DiscordGateway {
    async fn connect(server: &Server, zlib: bool) -> Self {
        let query =
            if zlib { "?v=10&encoding=json&compress=zlib-stream" } else { "?v=10&encoding=json" };
        let url = format!("{}/discord/gateway{query}", ws_base(server));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect");
        let mut gateway =
            Self { socket, inflate: zlib.then(|| flate2::Decompress::new(true)), last_seq: None };
        let hello = gateway.next().await.expect("hello");
        assert_eq!(hello["op"], 10, "hello first");
        gateway
    }

    async fn send(&mut self, frame: Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.unwrap();
    }

    /// The next frame, or the close code once closed.
    async fn next(&mut self) -> Result<Value, Option<u16>> {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(15), self.socket.next())
                .await
                .map_err(|_| None)?;
            let frame = match message {
                Some(Ok(Message::Text(text))) => {
                    // Before identifying, frames are text; compression starts with READY.
                    let frame = serde_json::from_str::<Value>(&text).unwrap();
                    assert!(
                        self.inflate.is_none() || frame["t"] != "READY",
                        "zlib-stream: READY and what follows are compressed"
                    );
                    frame
                }
                Some(Ok(Message::Binary(bytes))) => {
                    let inflate = self.inflate.as_mut().expect("binary only with zlib-stream");
                    assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]), "each frame is flushed");
                    let mut out = Vec::with_capacity(bytes.len() * 8 + 1024);
                    loop {
                        let before = inflate.total_in();
                        inflate
                            .decompress_vec(&bytes[..], &mut out, flate2::FlushDecompress::Sync)
                            .unwrap();
                        if inflate.total_in() - before == bytes.len() as u64 {
                            break;
                        }
                        out.reserve(out.capacity());
                    }
                    serde_json::from_slice::<Value>(&out).unwrap()
                }
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                _ => return Err(None),
            };
            if let Some(seq) = frame["s"].as_i64() {
                self.last_seq = Some(seq);
            }
            return Ok(frame);
        }
    }

    /// Frames until a dispatch named `name`.
    async fn dispatch(&mut self, name: &str) -> Value {
        loop {
            let frame =
                self.next().await.unwrap_or_else(|code| panic!("closed ({code:?}) before {name}"));
            if frame["t"] == name {
                return frame["d"].clone();
            }
        }
    }
}

#[tokio::test]
async fn the_gateway_speaks_discords_dialect_compressed_resumable_and_intent_checked() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice"]).await;
    let alice = &users[0];
    let bot = create_bot(alice, "rawbot", &["message_content"]).await;
    authorize(alice, &bot, &guild.id, 0).await;

    // A privileged intent the bot was not granted (members) closes with 4014.
    let mut refused = DiscordGateway::connect(&server, false).await;
    refused.send(json!({"op": 2, "d": {"token": bot.token, "intents": (1 << 1) | (1 << 9), "properties": {}}})).await;
    let close = loop {
        match refused.next().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(close, Some(4014));

    // Compressed: heartbeat first (as discord.py does), identify, READY, one GUILD_CREATE.
    let mut gateway = DiscordGateway::connect(&server, true).await;
    gateway.send(json!({"op": 1, "d": null})).await;
    assert_eq!(gateway.next().await.unwrap()["op"], 11);
    let intents = 1 | (1 << 9) | (1 << 15);
    gateway
        .send(json!({"op": 2, "d": {"token": bot.token, "intents": intents, "properties": {}}}))
        .await;
    let ready = gateway.dispatch("READY").await;
    assert_eq!(ready["v"], 10);
    assert_eq!(ready["user"]["id"], bot.application_id);
    assert_eq!(ready["guilds"][0]["unavailable"], true);
    assert!(ready["resume_gateway_url"].as_str().unwrap().ends_with("/discord/gateway"));
    let session_id = ready["session_id"].as_str().unwrap().to_owned();
    let created = gateway.dispatch("GUILD_CREATE").await;
    assert_eq!(created["id"], ready["guilds"][0]["id"]);
    assert_eq!(
        created["members"].as_array().map(Vec::len),
        Some(1),
        "without the members intent, itself only"
    );
    let channel = created["channels"][0]["id"].clone();

    alice.send(&guild.general, "first").await;
    let message = gateway.dispatch("MESSAGE_CREATE").await;
    assert_eq!(message["content"], "first");
    assert_eq!(message["channel_id"], channel);
    assert_eq!(message["author"]["username"], "alice");
    assert!(message["member"]["flags"].is_u64());

    // Gone for a while: what was said meanwhile is replayed on resume, then RESUMED {}.
    let seq = gateway.last_seq.expect("dispatches carry s");
    drop(gateway);
    alice.send(&guild.general, "while away").await;
    let mut resumed = DiscordGateway::connect(&server, false).await;
    resumed
        .send(json!({"op": 6, "d": {"token": bot.token, "session_id": session_id, "seq": seq}}))
        .await;
    let missed = resumed.dispatch("MESSAGE_CREATE").await;
    assert_eq!(missed["content"], "while away");
    assert_eq!(resumed.dispatch("RESUMED").await, json!({}));

    // An unknown session cannot be resumed: op 9, identify afresh.
    let mut stale = DiscordGateway::connect(&server, false).await;
    stale.send(json!({"op": 6, "d": {"token": bot.token, "session_id": "nope", "seq": 1}})).await;
    let invalid = stale.next().await.expect("an answer");
    assert_eq!(invalid["op"], 9);
    assert_eq!(invalid["d"], false);

    // Without the message-content intent a bot sees messages, but not what they say.
    let mut blind = DiscordGateway::connect(&server, false).await;
    let other = create_bot(alice, "blindbot", &[]).await;
    authorize(alice, &other, &guild.id, 0).await;
    blind.send(json!({"op": 2, "d": {"token": other.token, "intents": 1 | (1 << 9)}})).await;
    blind.dispatch("GUILD_CREATE").await;
    alice.send(&guild.general, "secret").await;
    let hidden = blind.dispatch("MESSAGE_CREATE").await;
    assert_eq!(hidden["content"], "");
    // ...and not through REST either.
    let path = format!("/channels/{}/messages?limit=1", channel.as_str().unwrap());
    let (_, history, _) =
        discord_call(&server, &other.token, reqwest::Method::GET, &path, None).await;
    assert_eq!(history[0]["content"], "", "{history}");

    // Member requests (op 8): by id without the members intent, echoing a short nonce.
    let alice_id = message["author"]["id"].clone();
    let guild_snowflake = created["id"].clone();
    blind
        .send(json!({"op": 8, "d": {"guild_id": guild_snowflake, "user_ids": [alice_id], "nonce": "n1"}}))
        .await;
    let chunk = blind.dispatch("GUILD_MEMBERS_CHUNK").await;
    assert_eq!(chunk["nonce"], "n1");
    assert_eq!(chunk["members"].as_array().map(Vec::len), Some(1));
    assert_eq!(chunk["members"][0]["user"]["id"], alice_id);
    // Everyone (an empty query) needs the members intent: without it, nobody.
    blind.send(json!({"op": 8, "d": {"guild_id": guild_snowflake, "query": "", "limit": 0}})).await;
    let chunk = blind.dispatch("GUILD_MEMBERS_CHUNK").await;
    assert_eq!(chunk["members"], json!([]));
}

#[tokio::test]
async fn operators_create_bots_and_grant_intents_from_the_command_line() {
    let mut server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let (alice, bob) = (&users[0], &users[1]);
    let created = server.admin(&[
        "bot",
        "create",
        "--owner",
        "alice",
        "--name",
        "Helper",
        "--username",
        "helper",
        "--intents",
        "message_content",
    ]);
    assert!(created.status.success(), "bot create failed");
    let printed = String::from_utf8_lossy(&created.stdout).to_string();
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|line| line.strip_prefix(name).map(|rest| rest.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in the output"))
    };
    let bot = Bot {
        application_id: field("application"),
        user_id: field("bot user"),
        token: field("token"),
    };
    let (status, me, _) =
        discord_call(&server, &bot.token, reqwest::Method::GET, "/users/@me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["username"], "helper");
    let (_, listed) = alice.get("/applications").await;
    assert_eq!(listed["applications"][0]["intents"], json!(["message_content"]));

    // Only a guild admin adds a bot, and only its owner while it is not public.
    let body = json!({"guild_id": guild.id});
    let (status, _) =
        bob.post(&format!("/applications/{}/authorize", bot.application_id), body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not bob's, not public");
    authorize(alice, &bot, &guild.id, 0).await;

    // Revoked from the command line: identifying with message content is refused.
    let revoked = server.admin(&["bot", "intents", &bot.application_id, ""]);
    assert!(revoked.status.success(), "bot intents failed");
    let mut gateway = DiscordGateway::connect(&server, false).await;
    gateway.send(json!({"op": 2, "d": {"token": bot.token, "intents": 1 | (1 << 15)}})).await;
    let close = loop {
        match gateway.next().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(close, Some(4014));

    // A new token revokes the old one, and closes what it had open.
    let mut open = DiscordGateway::connect(&server, false).await;
    open.send(json!({"op": 2, "d": {"token": bot.token, "intents": 1 | (1 << 9)}})).await;
    open.dispatch("READY").await;
    let (status, reset) =
        alice.post_empty(&format!("/applications/{}/token", bot.application_id)).await;
    assert_eq!(status, StatusCode::OK, "{reset}");
    let close = loop {
        match open.next().await {
            Ok(_) => continue,
            Err(code) => break code,
        }
    };
    assert_eq!(close, Some(4004));
    let (status, _, _) =
        discord_call(&server, &bot.token, reqwest::Method::GET, "/users/@me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let new_token = reset["token"].as_str().unwrap();
    let (status, _, _) =
        discord_call(&server, new_token, reqwest::Method::GET, "/users/@me", None).await;
    assert_eq!(status, StatusCode::OK);
    let audit = server.admin(&["audit"]);
    assert!(String::from_utf8_lossy(&audit.stdout).contains("admin.bot_intents"));
}

#[tokio::test]
async fn a_bot_manages_channels_roles_members_and_invites_within_its_permissions() {
    let server = Server::start().await;
    let (guild, users) = community(&server, &["alice", "bob"]).await;
    let (alice, bob) = (&users[0], &users[1]);
    let bot = create_bot(alice, "modbot", &[]).await;
    let manage = bits::MANAGE_CHANNELS | bits::MANAGE_ROLES | (1 << 0) | bits::KICK_MEMBERS;
    authorize(alice, &bot, &guild.id, manage).await;
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let server = &server;
        let token = bot.token.clone();
        async move { discord_call(server, &token, method, &path, body).await }
    };
    let (_, guilds, _) = call(reqwest::Method::GET, "/users/@me/guilds".into(), None).await;
    let g = guilds[0]["id"].as_str().unwrap().to_owned();

    let (status, channel, _) = call(
        reqwest::Method::POST,
        format!("/guilds/{g}/channels"),
        Some(json!({"name": "bots", "type": 0, "topic": "made by a bot"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{channel}");
    assert_eq!(channel["topic"], "made by a bot");
    let c = channel["id"].as_str().unwrap().to_owned();
    let (status, renamed, _) =
        call(reqwest::Method::PATCH, format!("/channels/{c}"), Some(json!({"name": "robots"})))
            .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "robots");

    let (status, role, _) = call(
        reqwest::Method::POST,
        format!("/guilds/{g}/roles"),
        Some(json!({"name": "helpers", "permissions": "0", "color": 255})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    let r = role["id"].as_str().unwrap().to_owned();
    bob.send(&guild.general, "hi from bob").await;
    let bob_snowflake = {
        let (_, history, _) = call(
            reqwest::Method::GET,
            format!(
                "/channels/{}/messages?limit=5",
                first_text_channel(&server, &bot.token, &g).await
            ),
            None,
        )
        .await;
        history[0]["author"]["id"].as_str().unwrap().to_owned()
    };
    let (status, member, _) = call(
        reqwest::Method::PATCH,
        format!("/guilds/{g}/members/{bob_snowflake}"),
        Some(json!({"roles": [r]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["roles"], json!([r]));
    let (_, native) = alice.get(&format!("/guilds/{}/members/{}", guild.id, bob.id)).await;
    assert_eq!(native["roles"].as_array().map(Vec::len), Some(1), "the native API sees the role");

    // An overwrite by snowflake, and an invite.
    let (status, _, _) = call(
        reqwest::Method::PUT,
        format!("/channels/{c}/permissions/{g}"),
        Some(json!({"type": 0, "deny": SEND_MESSAGES.to_string()})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, invite, _) =
        call(reqwest::Method::POST, format!("/channels/{c}/invites"), Some(json!({"max_age": 0})))
            .await;
    assert_eq!(status, StatusCode::OK, "{invite}");
    assert_eq!(invite["max_age"], 7 * 24 * 3600);

    // What it may not do, it may not: kicking the owner, banning without BAN_MEMBERS.
    let (_, owner, _) = call(reqwest::Method::GET, format!("/guilds/{g}"), None).await;
    let owner = owner["owner_id"].as_str().unwrap().to_owned();
    let (status, refused, _) =
        call(reqwest::Method::DELETE, format!("/guilds/{g}/members/{owner}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(refused["code"], 50013);
    let (status, _, _) =
        call(reqwest::Method::PUT, format!("/guilds/{g}/bans/{bob_snowflake}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, deleted, _) = call(reqwest::Method::DELETE, format!("/channels/{c}"), None).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["name"], "robots");
    let (status, _, _) = call(reqwest::Method::GET, format!("/channels/{c}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The snowflake of the first text channel a bot sees in a guild.
async fn first_text_channel(server: &Server, token: &str, guild: &str) -> String {
    let path = format!("/guilds/{guild}/channels");
    let (_, channels, _) = discord_call(server, token, reqwest::Method::GET, &path, None).await;
    channels
        .as_array()
        .and_then(|list| list.iter().find(|c| c["type"] == 0 && c["name"] == "general"))
        .and_then(|c| c["id"].as_str())
        .expect("a general channel")
        .to_owned()
}

#[tokio::test]
async fn a_channel_id_another_host_reuses_does_not_shadow_the_bots_channel() {
    // S hosts guild A, with a bot; H, a host that lies about ids, hosts guild B, which the bot
    // joins too, and sequences a channel in B whose id is A's #general.
    let s = federating().await;
    let h = crate::federation::federating_builder()
        .env("GUILDHALL_SERVER__DANGER_ENABLE_TEST_CONTROL", "true")
        .start()
        .await;
    let alice = s.register("alice").await;
    let mallory = h.register("mallory").await;
    let a = alice.create_guild("A").await;
    let bot = create_bot(&alice, "twinbot", &["message_content"]).await;
    authorize(&alice, &bot, &a.id, 0).await;
    let b = mallory.create_guild("B").await;
    let body = json!({"code": mallory.invite(&b.general).await, "server": h.name()});
    let (status, joined) =
        alice.post(&format!("/applications/{}/join", bot.application_id), body).await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let copy = json!({"user_id": mallory.id, "type": "channel.create",
        "content": {"channel_id": a.general, "name": "general", "kind": "text", "position": 1}});
    let url = format!(
        "{}/_guildhall/test/v1/guilds/{}/events",
        h.base_url(),
        crate::harness::encode(&b.id)
    );
    let response = reqwest::Client::new().post(url).json(&copy).send().await.unwrap();
    assert!(response.status().is_success(), "H sequences the copy");

    // The bot sees two guilds, each with a channel of that id, under two snowflakes.
    let guilds = eventually(
        Duration::from_secs(20),
        || async {
            let (_, guilds, _) =
                discord_call(&s, &bot.token, reqwest::Method::GET, "/users/@me/guilds", None).await;
            let mut channels = Vec::new();
            for guild in guilds.as_array().into_iter().flatten() {
                let path = format!("/guilds/{}/channels", guild["id"].as_str().unwrap_or(""));
                let (_, list, _) =
                    discord_call(&s, &bot.token, reqwest::Method::GET, &path, None).await;
                for channel in list.as_array().into_iter().flatten() {
                    channels.push((guild["name"].clone(), channel["id"].clone()));
                }
            }
            channels
        },
        |channels: &Vec<(Value, Value)>| channels.len() == 3,
    )
    .await;
    assert_eq!(guilds.len(), 3, "A's general, B's general and B's copy");
    let in_a: Vec<&Value> = guilds.iter().filter(|(g, _)| g == "A").map(|(_, c)| c).collect();
    let a_general = in_a[0].as_str().unwrap().to_owned();

    // Through A's snowflake, the bot posts to A, and nothing reaches B.
    let path = format!("/channels/{a_general}/messages");
    let (status, sent, _) = discord_call(
        &s,
        &bot.token,
        reqwest::Method::POST,
        &path,
        Some(json!({"content": "meant for A"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let in_a = messages(&alice, &a.general).await;
    assert!(by(&in_a, &bot.user_id, "meant for A").is_some(), "the message landed in A");
    let in_b = messages(&mallory, &b.general).await;
    assert!(in_b.iter().all(|m| m["content"] != "meant for A"), "and not in B");
}
