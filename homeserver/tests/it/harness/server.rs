//! A real `guildhall` process on loopback, in a fresh data directory, killed (and the directory
//! removed) when dropped.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::PASSWORD;
use super::client::{Client, User};
use super::proxy::RecordingProxy;

/// What every test server runs with unless the test says otherwise: rate limits far above
/// anything a test does, so that parallel tests on a slow machine cannot flake.
const GENEROUS_LIMITS: &[(&str, &str)] = &[
    ("GUILDHALL_RATE_LIMITS__PER_ACCOUNT_PER_SECOND", "100000"),
    ("GUILDHALL_RATE_LIMITS__PER_ACCOUNT_BURST", "100000"),
    ("GUILDHALL_RATE_LIMITS__PER_IP_PER_SECOND", "100000"),
    ("GUILDHALL_RATE_LIMITS__PER_IP_BURST", "100000"),
    ("GUILDHALL_RATE_LIMITS__CHALLENGES_PER_MINUTE", "100000"),
    ("GUILDHALL_RATE_LIMITS__KEY_CLAIMS_PER_MINUTE", "100000"),
    ("GUILDHALL_RATE_LIMITS__TO_DEVICE_PER_MINUTE", "100000"),
    ("GUILDHALL_RATE_LIMITS__MESSAGES_PER_SECOND", "100000"),
    ("GUILDHALL_RATE_LIMITS__MESSAGES_BURST", "100000"),
    ("GUILDHALL_MEDIA__UPLOADS_PER_MINUTE", "100000"),
];

/// How long a server may take to answer `/health` after starting.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// A `guildhall` server process.
pub struct Server {
    dir: PathBuf,
    address: SocketAddr,
    env: Vec<(String, String)>,
    child: Option<Child>,
    address_fixed: bool,
    proxy: Option<RecordingProxy>,
}

/// Settings for a server before it starts.
pub struct Builder {
    env: Vec<(String, String)>,
    recorded: bool,
    /// Another node's data directory, whose signing keys this node shares.
    node_of: Option<PathBuf>,
}

const DATABASE_URL: &str = "GUILDHALL_DATABASE__URL";

impl Builder {
    /// Sets an environment variable (a `GUILDHALL_<SECTION>__<KEY>` override) for the server.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Puts the server behind a [`RecordingProxy`]: other servers know it by the proxy's
    /// address, so [`Server::federation_traffic`] holds every byte they exchanged with it.
    pub fn recorded(mut self) -> Self {
        self.recorded = true;
        self
    }

    /// Puts the server on a fresh PostgreSQL database (on the server `GUILDHALL_TEST_POSTGRES`
    /// names). With `GUILDHALL_TEST_ENGINE=postgres`, every test server is.
    pub fn postgres(self) -> Self {
        let url = fresh_postgres_database();
        self.env(DATABASE_URL, &url)
    }

    /// Keeps the server on the embedded SQLite database even when `GUILDHALL_TEST_ENGINE` says
    /// otherwise (for tests that look at the database file itself).
    pub fn sqlite(self) -> Self {
        self.env(DATABASE_URL, "")
    }

    /// Puts the server's cross-node layer on the Redis `GUILDHALL_TEST_REDIS` names.
    pub fn redis(self) -> Self {
        let url = std::env::var("GUILDHALL_TEST_REDIS").unwrap_or_else(|_| {
            panic!("GUILDHALL_TEST_REDIS is not set: run `cargo xtask services` and export what it prints")
        });
        self.env("GUILDHALL_REDIS__URL", &url)
    }

    /// Creates the data directory and picks an address, without starting the process.
    pub fn prepare(mut self) -> Server {
        let on_postgres = std::env::var("GUILDHALL_TEST_ENGINE").is_ok_and(|e| e == "postgres");
        if on_postgres && !self.env.iter().any(|(key, _)| key == DATABASE_URL) {
            self = self.postgres();
        }
        let dir = fresh_dir();
        if let Some(first) = &self.node_of {
            // Nodes of one server sign with the same keys (copied to each node).
            std::fs::copy(first.join("signing-keys.json"), dir.join("signing-keys.json"))
                .expect("copy the first node's signing keys");
        }
        Server {
            dir,
            address: free_address(),
            env: self.env,
            child: None,
            address_fixed: false,
            proxy: None,
        }
    }

    /// Starts the server and waits until it answers `/health`.
    pub async fn start(self) -> Server {
        let recorded = self.recorded;
        let mut server = self.prepare();
        if recorded {
            let (proxy, listener) = RecordingProxy::bind().await;
            let name = proxy.address().to_string();
            server.env.push(("GUILDHALL_SERVER__SERVER_NAME".into(), name));
            server.launch().await;
            proxy.forward_to(listener, server.address);
            server.proxy = Some(proxy);
        } else {
            server.launch().await;
        }
        server
    }
}

impl Server {
    /// A builder with the default test settings.
    pub fn builder() -> Builder {
        Builder {
            env: GENEROUS_LIMITS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            recorded: false,
            node_of: None,
        }
    }

    /// Another node of this server: the same settings, name, database and signing keys, its
    /// own process, address and data directory (the server must be on PostgreSQL).
    pub fn node(&self) -> Builder {
        assert!(
            self.env.iter().any(|(key, _)| key == DATABASE_URL),
            "nodes share a database: start the first one with Builder::postgres"
        );
        let builder =
            Builder { env: self.env.clone(), recorded: false, node_of: Some(self.dir.clone()) };
        builder.env("GUILDHALL_SERVER__SERVER_NAME", &self.name())
    }

    /// A running server with the default test settings.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Starts the process (again) on this server's address and data directory.
    pub async fn launch(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        // Another process may take the port between our probe and the server's bind. Before any
        // data exists the address can still change; afterwards it cannot (it is the server name).
        let attempts = if self.address_fixed { 1 } else { 5 };
        for attempt in 1..=attempts {
            let mut child = self
                .command()
                .arg("serve")
                .arg("--listen")
                .arg(self.address.to_string())
                .spawn()
                .expect("spawn guildhall");
            match self.wait_healthy(&mut child).await {
                Ok(()) => {
                    self.child = Some(child);
                    self.address_fixed = true;
                    return;
                }
                Err(why) if attempt < attempts => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!(
                        "server on {} did not start ({why}); retrying on another port",
                        self.address
                    );
                    self.address = free_address();
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("server on {} did not start: {why}\n{}", self.address, self.log_tail());
                }
            }
        }
    }

    /// Kills the process; the data directory stays, so [`Server::launch`] resumes it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Changes a setting for the next [`Server::launch`] (and `admin` commands).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// A new, empty database on the test PostgreSQL server; its URL.
    pub fn fresh_postgres_database() -> String {
        fresh_postgres_database()
    }

    /// Runs `guildhall admin <args>` on this server's data directory, with the same server name.
    pub fn admin(&mut self, args: &[&str]) -> Output {
        self.admin_with_env(args, &[])
    }

    /// [`Server::admin`] with extra environment variables.
    pub fn admin_with_env(&mut self, args: &[&str], env: &[(&str, &str)]) -> Output {
        // Accounts now carry this address as their server name.
        self.address_fixed = true;
        let mut command = self.command();
        command
            .env("GUILDHALL_SERVER__LISTEN", self.address.to_string())
            .arg("admin")
            .args(args)
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().expect("run guildhall admin")
    }

    /// The server name: its listen address, or its proxy's when it is [`Builder::recorded`].
    pub fn name(&self) -> String {
        self.proxy.as_ref().map_or(self.address, RecordingProxy::address).to_string()
    }

    /// Every byte other servers exchanged with this one (requests and answers), if it runs
    /// behind a recording proxy.
    pub fn federation_traffic(&self) -> Vec<u8> {
        self.proxy.as_ref().map(RecordingProxy::seen).unwrap_or_default()
    }

    /// The full id of a local user.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.name())
    }

    /// `http://<address>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `ws://<address>/gateway?encoding=<encoding>`.
    pub fn gateway_url(&self, encoding: &str) -> String {
        format!("ws://{}/gateway?encoding={encoding}", self.address)
    }

    /// A client without a token.
    pub fn client(&self) -> Client {
        Client::new(&self.base_url())
    }

    /// Registers `name` with the standard test password.
    pub async fn register(&self, name: &str) -> User {
        let (status, body) = self
            .client()
            .post("/auth/register", json!({"username": name, "password": PASSWORD}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "register {name}: {body}");
        User::from_auth(self.client(), &body)
    }

    /// Logs `name` in with the standard test password.
    pub async fn login(&self, name: &str) -> User {
        let (status, body) = self
            .client()
            .post("/auth/login", json!({"username": name, "password": PASSWORD}))
            .await;
        assert_eq!(status, StatusCode::OK, "login {name}: {body}");
        User::from_auth(self.client(), &body)
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_guildhall"));
        // Whatever GUILDHALL_* the developer's shell holds must not leak into the test.
        for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("GUILDHALL_")) {
            command.env_remove(key);
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        let log_err = log.try_clone().expect("clone log handle");
        command
            .arg("--data-dir")
            .arg(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        command
    }

    async fn wait_healthy(&self, child: &mut Child) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let url = format!("{}/health", self.base_url());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited with {status}"));
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status() == StatusCode::OK
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err("no answer on /health".into())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The database the server is on, if it is PostgreSQL.
    pub fn database_url(&self) -> Option<String> {
        self.env.iter().find(|(key, _)| key == DATABASE_URL).map(|(_, url)| url.clone())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- server log ({}) ---\n{}", self.address, self.log_tail());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new, empty database on the test PostgreSQL server; its URL.
fn fresh_postgres_database() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let server = std::env::var("GUILDHALL_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "GUILDHALL_TEST_POSTGRES is not set: run the tests through `cargo xtask ci`, or run \
             `cargo xtask services` and export what it prints"
        )
    });
    // Process ids are reused: the time keeps names apart from an earlier run's.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!("guildhall_it_{}_{counter}_{nanos}", std::process::id());
    let psql = std::env::var("GUILDHALL_TEST_PG_BIN")
        .map_or_else(|_| PathBuf::from("psql"), |bin| Path::new(&bin).join("psql"));
    let output = Command::new(psql)
        .arg(&server)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("run psql");
    assert!(
        output.status.success(),
        "CREATE DATABASE: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (base, _) = server.rsplit_once('/').expect("a database URL");
    format!("{base}/{name}")
}

/// A loopback address nobody listens on right now.
fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe socket");
    listener.local_addr().expect("probe address")
}

/// A new empty directory under the system temp dir.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "guildhall-it-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create a data directory");
    dir
}
