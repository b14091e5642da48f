//! What the E2E tests share: people with devices, the command line, a pausing proxy.

use super::*;

/// The `guildhall user` command line with an identity file of its own.
pub(super) struct Shell {
    pub(super) identity: PathBuf,
}

impl Shell {
    pub(super) fn new(scratch: &Scratch, name: &str) -> Self {
        Self { identity: scratch.0.join(name).join("identity.json") }
    }

    pub(super) async fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_with_input(args, None).await
    }

    /// Runs a command with `input` on its standard input (none: an empty one).
    pub(super) async fn run_with_input(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> std::process::Output {
        use tokio::io::AsyncWriteExt as _;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_guildhall"));
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("GUILDHALL_")) {
            command.env_remove(key);
        }
        command
            .env("GUILDHALL_PASSPHRASE", "a passphrase")
            .env("GUILDHALL_PASSWORD", PASSWORD)
            .args(["user", "--kdf-fast", "--identity"])
            .arg(&self.identity)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("run guildhall user");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input.unwrap_or_default().as_bytes()).await.expect("write stdin");
        drop(stdin);
        child.wait_with_output().await.expect("run guildhall user")
    }

    /// Runs a command that must succeed; returns its standard output.
    pub(super) async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a command that must fail; returns its standard error.
    pub(super) async fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(!output.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// A person: an identity bound to an account, and one login of it as a device.
pub(super) struct Person {
    pub(super) identity: Identity,
    pub(super) session: Session,
    pub(super) device: Device,
    pub(super) store: PathBuf,
}

impl Person {
    /// Registers `name` on `server`, binds a new identity to the account and makes the login a
    /// device.
    pub(super) async fn new(server: &Server, name: &str, scratch: &Scratch) -> Self {
        Self::new_at(server, &server.base_url(), name, scratch).await
    }

    /// [`Person::new`], talking to `server` at `url` (a proxy in front of it).
    pub(super) async fn new_at(server: &Server, url: &str, name: &str, scratch: &Scratch) -> Self {
        let session = client(server, url).register(name, PASSWORD).await.expect("register");
        let identity = Identity::generate();
        session.bind_identity(&identity).await.expect("bind the identity");
        Self::with_device(session, identity, scratch.path(name)).await
    }

    /// Another login of the same account, made a device of its own.
    pub(super) async fn second_device(&self, server: &Server, scratch: &Scratch) -> Self {
        let name = self.id().localpart().to_owned();
        let session =
            client(server, &server.base_url()).login(&name, PASSWORD).await.expect("login");
        let store = scratch.path(&format!("{name}-second"));
        Self::with_device(session, self.identity.clone(), store).await
    }

    pub(super) async fn with_device(session: Session, identity: Identity, store: PathBuf) -> Self {
        let device = Device::create(&session, &identity, &store).await.expect("create the device");
        Self { identity, session, device, store }
    }

    pub(super) fn id(&self) -> &UserId {
        self.session.user_id()
    }

    /// Sends `text` in `conversation` to `others`.
    pub(super) async fn send(
        &mut self,
        conversation: &str,
        others: &[&Person],
        text: &str,
    ) -> SendReport {
        let members: Vec<UserId> = others.iter().map(|person| person.id().clone()).collect();
        self.device.send(&self.session, conversation, &members, text).await.expect("send")
    }

    /// Reads the inbox until what arrived satisfies `done`, or the deadline passes; returns
    /// everything that arrived.
    pub(super) async fn receive_until(
        &mut self,
        done: impl Fn(&[Incoming]) -> bool,
    ) -> Vec<Incoming> {
        let deadline = Instant::now() + ARRIVAL;
        let mut all = Vec::new();
        loop {
            all.extend(self.device.receive(&self.session).await.expect("receive"));
            if done(&all) || Instant::now() > deadline {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A client of `server` at `url`, which knows the server's name (`url` may be a proxy's).
pub(super) fn client(server: &Server, url: &str) -> Client {
    let name = ServerName::parse(&server.name()).expect("server name");
    Client::with_server_name(url, name).expect("client")
}

/// The texts of the messages among `incoming`.
pub(super) fn bodies(incoming: &[Incoming]) -> Vec<String> {
    incoming
        .iter()
        .filter_map(|item| match item {
            Incoming::Message(message) => Some(message.body.clone()),
            _ => None,
        })
        .collect()
}

/// Asserts that a send reached every device of exactly `people`.
#[track_caller]
pub(super) fn assert_delivered(report: &SendReport, people: &[&Person]) {
    assert!(report.failed.is_empty(), "failures: {:?}", report.failed);
    let mut delivered = report.delivered.clone();
    delivered.sort();
    let expected = sorted(&people.iter().map(|person| person.id()).collect::<Vec<_>>());
    assert_eq!(delivered, expected);
}

pub(super) fn sorted(users: &[&UserId]) -> Vec<UserId> {
    let mut users: Vec<UserId> = users.iter().map(|user| (*user).clone()).collect();
    users.sort();
    users
}

/// A text no server could hold by chance.
pub(super) fn secret(label: &str) -> String {
    format!("{label}: {}", base64url::encode(rand_bytes()))
}

pub(super) fn rand_bytes() -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut bytes = [0; 12];
    bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    bytes
}

/// Every file under `dir`, with its bytes.
pub(super) fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        // A server may remove a file (an SQLite journal) while this walks: what vanished is
        // skipped.
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pending.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                found.push((path, bytes));
            }
        }
    }
    found
}

pub(super) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// A directory for the tests' store files, removed at the end.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guildhall-e2ee-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.e2e.json"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An HTTP proxy in front of a server's client API that can hold a to-device send until the
/// test lets it go, so that something can happen between a client's key query and its send.
pub(super) struct PausingProxy {
    pub(super) url: String,
    pub(super) state: Arc<ProxyState>,
}

pub(super) struct ProxyState {
    pub(super) upstream: String,
    pub(super) http: reqwest::Client,
    pub(super) sends: AtomicUsize,
    /// A user whose devices the proxy leaves out of key-query answers (with the hash of the
    /// empty list, so the answer verifies): a server hiding a user's devices.
    pub(super) hide_devices_of: std::sync::Mutex<Option<String>>,
    /// Told when the next send arrives; the send goes on once the receiver is told.
    pub(super) pause: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl PausingProxy {
    pub(super) async fn start(server: &Server) -> Self {
        let state = Arc::new(ProxyState {
            upstream: server.base_url(),
            http: reqwest::Client::builder().no_proxy().build().expect("HTTP client"),
            sends: AtomicUsize::new(0),
            hide_devices_of: std::sync::Mutex::new(None),
            pause: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    /// Holds the next to-device send: the first receiver says it arrived, and it is forwarded
    /// once the sender is told.
    pub(super) async fn pause_next_send(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        *self.state.pause.lock().await = Some((reached_tx, resume_rx));
        (reached_rx, resume_tx)
    }

    /// Leaves `user`'s devices out of key-query answers from now on.
    pub(super) fn hide_devices_of(&self, user: &UserId) {
        *self.state.hide_devices_of.lock().expect("lock") = Some(user.to_string());
    }

    /// The to-device sends forwarded so far.
    pub(super) fn sends(&self) -> usize {
        self.state.sends.load(Ordering::SeqCst)
    }
}

pub(super) async fn forward(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.expect("read the request");
    let path = parts.uri.path_and_query().map_or("/", |path| path.as_str()).to_owned();
    if parts.method == axum::http::Method::PUT && path.starts_with("/api/v1/users/@me/to_device/") {
        state.sends.fetch_add(1, Ordering::SeqCst);
        let pause = state.pause.lock().await.take();
        if let Some((reached, resume)) = pause {
            let _ = reached.send(());
            let _ = resume.await;
        }
    }
    let mut outgoing = state.http.request(parts.method, format!("{}{path}", state.upstream));
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = outgoing.body(body).send().await.expect("the server answers");
    let status = answer.status();
    let content_type = answer.headers().get(axum::http::header::CONTENT_TYPE).cloned();
    let mut bytes = answer.bytes().await.expect("read the answer");
    let hidden = state.hide_devices_of.lock().expect("lock").clone();
    if let Some(user) = hidden.filter(|_| path == "/api/v1/keys/query") {
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        if let Some(keys) = value["users"].get_mut(&user) {
            keys["devices"] = json!([]);
            keys["device_list_hash"] = EMPTY_LIST_HASH.into();
        }
        bytes = value.to_string().into();
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response.headers_mut().insert(axum::http::header::CONTENT_TYPE, content_type);
    }
    response
}
