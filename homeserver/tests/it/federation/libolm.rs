//! Our E2E DMs interoperate with libolm (spec 17): Alice uses the client library (vodozemac) on
//! server A; Bob is `interop/libolm/peer.py`, a Python client with libolm's Olm and its own key
//! checks, on server B. They write both ways; a second libolm device of Bob joins later and gets
//! what is sent after, and its own messages reach Alice and Bob's first device. When Alice adds a
//! device, Bob's send for her old list is refused as stale and sent again for both devices.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use guildhall_client::e2e::{Device, Incoming, ReceivedMessage, SendReport};
use guildhall_client::{Client, Identity, ServerName, Session, UserId};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::*;
use crate::harness::{PASSWORD, json};

/// How long a peer command (a read waiting for messages included) may take on a busy machine.
const PEER_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a message may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn alice_with_vodozemac_and_bob_with_libolm_write_both_ways_across_servers() {
    require_python_olm();
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = RustDevice::register(&a, "alice", &scratch.0).await;
    let (mut bob, setup) = Peer::bob(&b, "PYBOB1", None, 50).await;
    let bob_id = UserId::parse(setup["user_id"].as_str().expect("bob's id")).expect("user id");
    let members = sorted(&[alice.id().as_str(), bob_id.as_str()]);

    // Alice starts: pre-key messages until Bob answers.
    let first: Vec<String> = (1..=3).map(|n| format!("alice to bob {n} ✓")).collect();
    for text in &first {
        alice.send(&bob_id, text).await;
    }
    let read = bob.read(first.len()).await;
    assert_eq!(bodies(&read), first);
    for message in &read {
        assert_eq!(message["sender"], alice.id().as_str());
        assert_eq!(message["sender_device"], alice.device.device_id().as_str());
        assert_eq!((&message["conversation"], &message["members"]), (&json!("lx"), &members));
        assert_eq!(message["prekey"], true, "alice's first session: {message}");
        // The peer checked the encrypted message id against the item's (spec 17.7).
        assert!(message["message_id"].as_str().is_some_and(|id| !id.is_empty()), "{message}");
    }

    // Bob answers on the session Alice's pre-key message started.
    let answers: Vec<String> = (1..=3).map(|n| format!("bob to alice {n} — olm")).collect();
    for text in &answers {
        bob.send(alice.id().as_str(), text).await;
    }
    let received = alice.receive(answers.len()).await;
    assert_eq!(texts(&received), answers);
    for message in &received {
        assert_eq!(
            (message.sender.as_str(), message.sender_device.as_str()),
            (bob_id.as_str(), "PYBOB1")
        );
        assert_eq!(json!(message.members), members);
    }
    // Bob has answered: Alice's next message is a normal Olm message.
    alice.send(&bob_id, "alice after the answer").await;
    let read = bob.read(1).await;
    assert_eq!(bodies(&read), ["alice after the answer"]);
    assert_eq!(read[0]["prekey"], false);

    // Bob's second device: a new libolm account, certified with the key of the same phrase,
    // without one-time keys: Alice's session with it starts from its fallback key.
    let (mut phone, phone_setup) = Peer::bob(&b, "PYBOB2", Some(&setup["phrase"]), 0).await;
    assert_eq!(phone_setup["one_time_key_count"], 0);
    alice.send(&bob_id, "alice to both of bob's devices").await;
    let status = phone.call(json!({"cmd": "status"})).await;
    assert_eq!((&status["one_time_key_count"], &status["fallback_key"]), (&json!(0), &json!(true)));
    for device in [&mut bob, &mut phone] {
        let read = device.read(1).await;
        assert_eq!(bodies(&read), ["alice to both of bob's devices"], "{}", device.name);
    }
    // The phone writes: Alice and Bob's first device get it.
    let sent = phone.send(alice.id().as_str(), "bob's phone to alice").await;
    assert_eq!(sent["results"][bob_id.as_str()], "delivered", "a copy to bob's first device");
    let received = alice.receive(1).await;
    assert_eq!(texts(&received), ["bob's phone to alice"]);
    assert_eq!(received[0].sender_device.as_str(), "PYBOB2");
    let copy = bob.read(1).await;
    assert_eq!(
        (bodies(&copy), &copy[0]["sender_device"]),
        (vec!["bob's phone to alice".to_owned()], &json!("PYBOB2"))
    );
    // And the conversation goes on with both.
    alice.send(&bob_id, "alice, last").await;
    for device in [&mut bob, &mut phone] {
        assert_eq!(bodies(&device.read(1).await), ["alice, last"], "{}", device.name);
    }

    // The libolm side also hears of its messages over the gateway (the inbox stays the record).
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    loop {
        let status = bob.call(json!({"cmd": "status"})).await;
        if status["gateway"]["TO_DEVICE"].as_u64() > Some(0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no TO_DEVICE dispatch: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bob.quit().await;
    phone.quit().await;
}

#[tokio::test]
async fn a_libolm_send_refused_as_stale_reaches_the_new_vodozemac_device_too() {
    require_python_olm();
    let (a, b) = tokio::join!(federating(), federating());
    let scratch = Scratch::new();
    let mut alice = RustDevice::register(&a, "alice", &scratch.0).await;
    let (mut bob, setup) = Peer::bob(&b, "PYBOB1", None, 50).await;
    let bob_id = UserId::parse(setup["user_id"].as_str().expect("bob's id")).expect("user id");
    let sent = bob.send(alice.id().as_str(), "before the laptop").await;
    assert_eq!(sent["stale"], json!([]));
    assert_eq!(texts(&alice.receive(1).await), ["before the laptop"]);

    // Alice adds a device after Bob fetched her list: his send comes back stale, and he sends
    // again, encrypted for both.
    let mut laptop = alice.another(&a, &scratch.0).await;
    let sent = bob.send(alice.id().as_str(), "after the laptop").await;
    assert_eq!(sent["stale"], json!([alice.id().as_str()]), "{sent}");
    let mut both = [alice.device.device_id().as_str(), laptop.device.device_id().as_str()];
    both.sort_unstable();
    assert_eq!(sent["devices"][alice.id().as_str()], json!(both));
    for device in [&mut alice, &mut laptop] {
        assert_eq!(texts(&device.receive(1).await), ["after the laptop"]);
    }

    // The laptop answers: Bob reads it, and Alice's first device gets its copy.
    laptop.send(&bob_id, "from alice's laptop").await;
    let read = bob.read(1).await;
    assert_eq!(bodies(&read), ["from alice's laptop"]);
    assert_eq!(read[0]["sender_device"], laptop.device.device_id().as_str());
    let copy = alice.receive(1).await;
    assert_eq!(texts(&copy), ["from alice's laptop"]);
    assert_eq!(&copy[0].sender_device, laptop.device.device_id());
    bob.quit().await;
}

/// Fails (the test must not skip) unless the peer's modules and packages import.
fn require_python_olm() {
    let found = std::process::Command::new("python3")
        .args(["-c", "import olm, device"])
        .current_dir(workspace_root().join("interop/libolm"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(found, "python-olm missing: python3 -m pip install -r interop/libolm/requirements.txt");
}

/// A device of the client library (vodozemac): a login with its E2E device.
struct RustDevice {
    identity: Identity,
    session: Session,
    device: Device,
}

impl RustDevice {
    /// Registers `name` on `server`, binds a new identity and makes the login a device.
    async fn register(server: &Server, name: &str, scratch: &Path) -> Self {
        let session = client(server).register(name, PASSWORD).await.expect("register");
        let identity = Identity::generate();
        session.bind_identity(&identity).await.expect("bind the identity");
        Self::with_device(session, identity, &scratch.join(format!("{name}.e2e.json"))).await
    }

    /// Another login of the same account on `server`, made a device of its own.
    async fn another(&self, server: &Server, scratch: &Path) -> Self {
        let name = self.id().localpart().to_owned();
        let session = client(server).login(&name, PASSWORD).await.expect("login");
        let store = scratch.join(format!("{name}-2.e2e.json"));
        Self::with_device(session, self.identity.clone(), &store).await
    }

    async fn with_device(session: Session, identity: Identity, store: &Path) -> Self {
        let device = Device::create(&session, &identity, store).await.expect("create the device");
        Self { identity, session, device }
    }

    fn id(&self) -> &UserId {
        self.session.user_id()
    }

    /// Sends `text` to `to` in the conversation `lx`; every device of `to` must get it.
    async fn send(&mut self, to: &UserId, text: &str) -> SendReport {
        let report = self
            .device
            .send(&self.session, "lx", std::slice::from_ref(to), text)
            .await
            .expect("send");
        assert!(report.delivered.contains(to) && report.failed.is_empty(), "{report:?}");
        report
    }

    /// Reads the inbox until `count` messages arrived; fails on anything dropped.
    async fn receive(&mut self, count: usize) -> Vec<ReceivedMessage> {
        let mut messages = Vec::new();
        let deadline = tokio::time::Instant::now() + ARRIVAL;
        while messages.len() < count && tokio::time::Instant::now() < deadline {
            for incoming in self.device.receive(&self.session).await.expect("read the inbox") {
                match incoming {
                    Incoming::Message(message) => messages.push(message),
                    other => panic!("{} could not read: {other:?}", self.id()),
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(messages.len(), count, "{}: {:?}", self.id(), texts(&messages));
        messages
    }
}

/// `interop/libolm/peer.py` as a subprocess, one JSON command a line.
struct Peer {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    /// A peer set up as bob's device `device_id` on `server` with `one_time_keys` one-time keys
    /// and a fallback key: registering bob without a `phrase`, else logging in and certifying
    /// the device with the phrase's identity key. Returns the peer and its `setup` answer.
    async fn bob(
        server: &Server,
        device_id: &str,
        phrase: Option<&Value>,
        one_time_keys: u32,
    ) -> (Self, Value) {
        let mut peer = Self::start(device_id.to_owned()).await;
        let setup = peer
            .call(json!({"cmd": "setup", "server": server.base_url(), "username": "bob",
                         "password": PASSWORD, "register": phrase.is_none(),
                         "device_id": device_id, "phrase": phrase,
                         "one_time_keys": one_time_keys}))
            .await;
        (peer, setup)
    }

    async fn start(name: String) -> Self {
        let script = workspace_root().join("interop/libolm/peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the libolm peer");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { name, child, stdin, stdout }
    }

    /// Sends a command and returns its answer, which must be `ok`.
    async fn call(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("write to the peer");
        let answer = tokio::time::timeout(PEER_TIMEOUT, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("{} did not answer {}", self.name, command["cmd"]))
            .expect("read from the peer")
            .unwrap_or_else(|| panic!("{} exited", self.name));
        let answer: Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert_eq!(answer["ok"], true, "{} {}: {answer}", self.name, command["cmd"]);
        answer
    }

    /// Sends `body` to `to` in the conversation `lx`; returns the peer's report.
    async fn send(&mut self, to: &str, body: &str) -> Value {
        let command = json!({"cmd": "send", "to": [to], "conversation": "lx", "body": body});
        let report = self.call(command).await;
        assert_eq!(report["results"][to], "delivered", "{}: {report}", self.name);
        report
    }

    /// Waits for exactly `count` new messages; fails on anything the peer rejected.
    async fn read(&mut self, count: usize) -> Vec<Value> {
        let answer = self.call(json!({"cmd": "read", "min": count, "timeout": 60})).await;
        assert_eq!(answer["rejected"], json!([]), "{} rejected", self.name);
        let messages = answer["messages"].as_array().cloned().unwrap_or_default();
        assert_eq!(messages.len(), count, "{}: {:?}", self.name, bodies(&messages));
        messages
    }

    async fn quit(mut self) {
        self.call(json!({"cmd": "quit"})).await;
        let _ = self.child.wait().await;
    }
}

/// The `body` of each message a peer read.
fn bodies(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["body"].as_str().unwrap_or("?").to_owned()).collect()
}

fn texts(messages: &[ReceivedMessage]) -> Vec<String> {
    messages.iter().map(|m| m.body.clone()).collect()
}

fn sorted(ids: &[&str]) -> Value {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    json!(ids)
}

fn client(server: &Server) -> Client {
    let name = ServerName::parse(&server.name()).expect("server name");
    Client::with_server_name(&server.base_url(), name).expect("client")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A directory for the client's store, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guildhall-libolm-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
