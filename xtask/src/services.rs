//! Throwaway PostgreSQL and Redis servers on loopback, for the tests that run against them.
//!
//! [`Services::start`] runs both from Debian's packages in a fresh directory under the system temp
//! dir, each on a free port of 127.0.0.1, and dropping the guard stops them and removes the
//! directory. The tests learn where they are from the environment ([`Services::env`]):
//!
//! * `GUILDHALL_TEST_POSTGRES`: `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth);
//! * `GUILDHALL_TEST_REDIS`: `redis://127.0.0.1:PORT/`;
//! * `GUILDHALL_TEST_PG_BIN`: the directory of `psql`, `pg_dump` and `createdb` of that version.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::{Pid, Uid};

/// Where Debian installs each PostgreSQL major version (`<dir>/<version>/bin`), off `PATH`.
const POSTGRES_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// How long each server gets to accept connections; generous for a busy 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long each server gets to exit once told to.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// `cargo xtask services`: starts both servers, prints the `export` lines that point the tests at
/// them, and keeps them until Ctrl-C (or SIGTERM, SIGHUP).
pub(crate) fn run() -> Result<()> {
    super::apt_install(&missing_packages())?;
    let services = Services::start()?;
    // Blocked before waiting, so that the signal is taken by `wait` below rather than ending the
    // process without dropping the guard. (The servers, in our process group, also see a Ctrl-C
    // typed in the terminal and begin shutting down on their own; the guard tolerates that.)
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(signal);
    }
    signals.thread_block().context("blocking SIGINT/SIGTERM/SIGHUP")?;
    for (name, value) in services.env() {
        println!("export {name}={value}");
    }
    eprintln!("services running in {}; Ctrl-C stops them", services.dir.display());
    let signal = signals.wait().context("waiting for a signal")?;
    eprintln!("{signal}: stopping services");
    drop(services);
    Ok(())
}

/// The Debian packages to install for [`Services`]: none once both servers are there.
pub(crate) fn missing_packages() -> Vec<&'static str> {
    let mut missing = Vec::new();
    if postgres_bin_dir().is_none() {
        missing.push("postgresql");
    }
    if !super::on_path("redis-server") {
        missing.push("redis-server");
    }
    missing
}

/// A running PostgreSQL and Redis in a throwaway directory; dropping it stops both and removes
/// the directory.
pub(crate) struct Services {
    dir: PathBuf,
    postgres_bin: PathBuf,
    postgres: Option<Child>,
    postgres_port: u16,
    redis: Option<Child>,
    redis_port: u16,
    /// PostgreSQL refuses to run as root: then its files and processes belong to `postgres`.
    as_postgres_user: bool,
}

impl Services {
    /// Starts both servers and returns once each accepts connections.
    pub(crate) fn start() -> Result<Self> {
        let postgres_bin = postgres_bin_dir().with_context(|| {
            format!("no PostgreSQL in {POSTGRES_VERSIONS_DIR}/*/bin (Debian's `postgresql`)")
        })?;
        // Both ports are held at once so that they differ. They are free again when the
        // servers bind them a moment later; losing one to another process in between fails the
        // start with the server's log.
        let (postgres_port, redis_port) = {
            let first = TcpListener::bind("127.0.0.1:0")?;
            let second = TcpListener::bind("127.0.0.1:0")?;
            (first.local_addr()?.port(), second.local_addr()?.port())
        };
        let dir = std::env::temp_dir().join(format!(
            "guildhall-services-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // From here on, dropping `services` on an error stops what was started and removes the
        // directory.
        let mut services = Self {
            dir,
            postgres_bin,
            postgres: None,
            postgres_port,
            redis: None,
            redis_port,
            as_postgres_user: Uid::effective().is_root(),
        };
        if services.as_postgres_user {
            // Debian's package created the `postgres` system user.
            super::run("chown", &["postgres:postgres", &path_str(&services.dir)?])?;
        }
        services.start_postgres()?;
        services.start_redis()?;
        Ok(services)
    }

    fn start_postgres(&mut self) -> Result<()> {
        let data = self.dir.join("pgdata");
        let mut initdb = self.postgres_command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
            .stdout(Stdio::null());
        let status = initdb.status().context("starting initdb")?;
        if !status.success() {
            bail!("initdb failed with {status}");
        }
        let log = self.dir.join("postgres.log");
        let port = self.postgres_port.to_string();
        let mut postgres = self.postgres_command("postgres");
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", path_str(&self.dir)?))
            // Several nodes and the integration tests each keep a pool open at once.
            .args(["-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        let child = self.postgres.insert(postgres.spawn().context("starting postgres")?);
        let pg_isready = self.postgres_bin.join("pg_isready");
        wait_until("postgres", &log, child, || {
            Command::new(&pg_isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-t", "1"])
                .status()
                .is_ok_and(|status| status.success())
        })
    }

    fn start_redis(&mut self) -> Result<()> {
        let log = self.dir.join("redis.log");
        let port = self.redis_port.to_string();
        let redis = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", &path_str(&self.dir)?])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let child = self.redis.insert(redis);
        wait_until("redis-server", &log, child, || {
            Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port, "ping"])
                .output()
                .is_ok_and(|output| output.stdout.starts_with(b"PONG"))
        })
    }

    /// A PostgreSQL program, run as the `postgres` user when we are root, from our directory
    /// (which that user can enter, unlike perhaps the workspace).
    fn postgres_command(&self, program: &str) -> Command {
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(self.postgres_bin.join(program));
            command
        } else {
            Command::new(self.postgres_bin.join(program))
        };
        command.current_dir(&self.dir);
        command
    }

    /// The variables that point the tests at the servers (see the module docs).
    /// Creates a database `name` on the PostgreSQL server and returns its URL.
    pub(crate) fn create_database(&self, name: &str) -> Result<String> {
        let server = format!("postgres://postgres@127.0.0.1:{}/postgres", self.postgres_port);
        let status = Command::new(self.postgres_bin.join("psql"))
            .arg(&server)
            .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
            .status()
            .context("running psql")?;
        if !status.success() {
            bail!("creating database {name} failed with {status}");
        }
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.postgres_port))
    }

    pub(crate) fn env(&self) -> [(&'static str, String); 3] {
        [
            (
                "GUILDHALL_TEST_POSTGRES",
                format!("postgres://postgres@127.0.0.1:{}/postgres", self.postgres_port),
            ),
            ("GUILDHALL_TEST_REDIS", format!("redis://127.0.0.1:{}/", self.redis_port)),
            ("GUILDHALL_TEST_PG_BIN", self.postgres_bin.display().to_string()),
        ]
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it ends open sessions instead of waiting for
        // them. It goes to the postmaster itself, since under `runuser` our child is `runuser`,
        // which cannot pass on the SIGKILL of `Child::kill`.
        let postmaster = std::fs::read_to_string(self.dir.join("pgdata/postmaster.pid"))
            .ok()
            .and_then(|pid_file| pid_file.lines().next()?.trim().parse::<i32>().ok())
            .map(Pid::from_raw);
        let redis = self.redis.as_ref().and_then(|child| i32::try_from(child.id()).ok());
        for (pid, signal) in
            [(postmaster, Signal::SIGINT), (redis.map(Pid::from_raw), Signal::SIGTERM)]
        {
            if let Some(pid) = pid {
                let _ = nix::sys::signal::kill(pid, signal);
            }
        }
        for (name, child) in [("postgres", &mut self.postgres), ("redis-server", &mut self.redis)] {
            let Some(child) = child else { continue };
            if !exited_within(child, STOP_TIMEOUT) {
                eprintln!("{name} did not stop within {STOP_TIMEOUT:?}; killing it");
                if let (Some(pid), "postgres") = (postmaster, name) {
                    let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Err(error) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("could not remove {}: {error}", self.dir.display());
        }
    }
}

/// The newest PostgreSQL's `bin` directory under [`POSTGRES_VERSIONS_DIR`], if one has a server.
fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(POSTGRES_VERSIONS_DIR)
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            let complete = ["initdb", "postgres", "pg_isready"]
                .iter()
                .all(|program| bin.join(program).is_file());
            complete.then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Polls `ready` until it holds, failing with the server's log if the server exits first or the
/// time runs out.
fn wait_until(
    name: &str,
    log: &Path,
    child: &mut Child,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if ready() {
            return Ok(());
        }
        let problem = if let Some(status) = child.try_wait()? {
            format!("{name} exited with {status}")
        } else if Instant::now() > deadline {
            format!("{name} did not accept connections within {START_TIMEOUT:?}")
        } else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = log_text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{problem}; the end of {}:\n{}", log.display(), tail.join("\n"))
    }
}

/// Whether the child exited within `timeout` (reaping it if so).
fn exited_within(child: &mut Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str().map(str::to_owned).with_context(|| format!("{} is not UTF-8", path.display()))
}
