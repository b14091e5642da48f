//! A real headless Chromium (Debian's `chromium`, or `GUILDHALL_CHROMIUM`) driven over the
//! Chrome DevTools Protocol, for the web client's tests. Pages are driven the way a person
//! uses them: mouse clicks at an element's centre, typed text, key presses; what the test
//! checks is read from the page's DOM.
//!
//! Each [`Page`] lives in a browser context of its own (its own cookies and storage), so two
//! people can use one browser.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a page may take to show what a test waits for (a busy 2-core machine, federation).
const WAIT: Duration = Duration::from_secs(30);
/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A headless Chromium process, killed when dropped.
pub struct Browser {
    child: Child,
    profile: std::path::PathBuf,
    inner: Arc<Inner>,
}

struct Inner {
    socket: Mutex<Socket>,
    next_id: AtomicU64,
    /// Uncaught exceptions and console errors seen on any page, newest last (a few).
    errors: std::sync::Mutex<Vec<String>>,
}

impl Browser {
    /// Starts Chromium and connects to its DevTools endpoint.
    pub async fn start() -> Self {
        let program = std::env::var("GUILDHALL_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = std::env::temp_dir().join(format!(
            "guildhall-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let mut child = Command::new(&program)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-renderer-backgrounding",
                "--disable-background-timer-throttling",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program} (apt install chromium): {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, endpoint) = std::sync::mpsc::channel();
        // Chromium prints its endpoint on stderr; the rest of stderr is drained so it never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ")
                    && let Some(found) = found.take()
                {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let url = endpoint
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{program} did not print its DevTools endpoint"));
        let (socket, _) = tokio_tungstenite::connect_async(url).await.expect("connect DevTools");
        let inner = Arc::new(Inner {
            socket: Mutex::new(socket),
            next_id: AtomicU64::new(1),
            errors: std::sync::Mutex::new(Vec::new()),
        });
        Browser { child, profile, inner }
    }

    /// A new page in a fresh browser context, `width` × `height` pixels.
    pub async fn page(&self, width: u32, height: u32) -> Page {
        let context = self.inner.command(None, "Target.createBrowserContext", json!({})).await;
        let context = context["browserContextId"].as_str().expect("a context id").to_owned();
        let target = self
            .inner
            .command(
                None,
                "Target.createTarget",
                json!({"url": "about:blank", "browserContextId": context}),
            )
            .await;
        let target = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = self
            .inner
            .command(None, "Target.attachToTarget", json!({"targetId": target, "flatten": true}))
            .await;
        let session = attached["sessionId"].as_str().expect("a session id").to_owned();
        let page = Page { inner: self.inner.clone(), session };
        page.call("Page.enable", json!({})).await;
        page.call("Runtime.enable", json!({})).await;
        page.resize(width, height).await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Inner {
    /// Sends a command and waits for its answer, noting the page errors reported meanwhile.
    async fn command(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            frame["sessionId"] = json!(session);
        }
        let mut socket = self.socket.lock().await;
        socket.send(Message::text(frame.to_string())).await.expect("send to DevTools");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = tokio::time::timeout(left, socket.next())
                .await
                .unwrap_or_else(|_| panic!("DevTools did not answer {method}"))
                .expect("DevTools connection open")
                .expect("a DevTools frame");
            let Message::Text(text) = message else { continue };
            let frame: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if frame["id"] == id {
                if let Some(error) = frame.get("error") {
                    panic!("{method} failed: {error}");
                }
                return frame["result"].clone();
            }
            self.note(&frame);
        }
    }

    fn note(&self, event: &Value) {
        let text = match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &event["params"]["exceptionDetails"];
                details["exception"]["description"].as_str().unwrap_or("exception").to_owned()
            }
            Some("Runtime.consoleAPICalled") if event["params"]["type"] == "error" => {
                event["params"]["args"][0]["value"].to_string()
            }
            _ => return,
        };
        let mut errors = self.errors.lock().expect("errors lock");
        errors.push(text.chars().take(300).collect());
        let excess = errors.len().saturating_sub(5);
        errors.drain(..excess);
    }

    fn recent_errors(&self) -> String {
        self.errors.lock().expect("errors lock").join(" | ")
    }
}

/// One tab.
pub struct Page {
    inner: Arc<Inner>,
    session: String,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.inner.command(Some(&self.session), method, params).await
    }

    /// Sets the viewport (a phone when narrower than 700 pixels).
    pub async fn resize(&self, width: u32, height: u32) {
        let metrics = json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 700,
        });
        self.call("Emulation.setDeviceMetricsOverride", metrics).await;
    }

    /// Opens `url` and waits until the new document has loaded.
    pub async fn goto(&self, url: &str) {
        // A marker on the document being left tells it apart from the one being loaded.
        self.eval("window.__leaving = true").await;
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete' && !window.__leaving", url).await;
    }

    /// Reloads the page.
    pub async fn reload(&self) {
        self.eval("window.__leaving = true").await;
        self.call("Page.reload", json!({})).await;
        self.wait_for("document.readyState === 'complete' && !window.__leaving", "the reload")
            .await;
    }

    /// Evaluates JavaScript in the page (awaiting a promise) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("{expression} threw: {}", details["exception"]["description"]);
        }
        result["result"]["value"].clone()
    }

    /// Waits until `condition` (JavaScript) is truthy.
    pub async fn wait_for(&self, condition: &str, what: &str) {
        let deadline = Instant::now() + WAIT;
        let probe =
            format!("(() => {{ try {{ return !!({condition}); }} catch {{ return false; }} }})()");
        while self.eval(&probe).await != json!(true) {
            if Instant::now() >= deadline {
                // What the person would see: the page's text, shortened.
                let seen = self.eval("document.body.innerText.replace(/\\s+/g, ' ')").await;
                let seen: String = seen.as_str().unwrap_or_default().chars().take(300).collect();
                panic!(
                    "timed out waiting for {what}; the page shows {seen:?}; page errors: [{}]",
                    self.inner.recent_errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until an element matching `selector` exists.
    pub async fn wait_for_element(&self, selector: &str) {
        self.wait_for(&format!("document.querySelector({})", json!(selector)), selector).await;
    }

    /// Waits until some element matching `selector` has `text` in its text.
    pub async fn wait_for_text(&self, selector: &str, text: &str) {
        let condition = format!(
            "[...document.querySelectorAll({})].some(e => e.textContent.includes({}))",
            json!(selector),
            json!(text)
        );
        self.wait_for(&condition, &format!("{text:?} in {selector}")).await;
    }

    /// The text of the first element matching `selector` (null if there is none).
    pub async fn text(&self, selector: &str) -> Value {
        self.eval(&format!("document.querySelector({})?.textContent ?? null", json!(selector)))
            .await
    }

    /// Clicks the centre of the first visible element matching `selector`, with the mouse.
    pub async fn click(&self, selector: &str) {
        let locate = format!(
            "(() => {{ const e = [...document.querySelectorAll({})].find(e => e.getClientRects().length);
                 if (!e || e.disabled) return null;
                 e.scrollIntoView({{block: 'center', inline: 'center'}});
                 const r = e.getBoundingClientRect();
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        );
        let deadline = Instant::now() + WAIT;
        let point = loop {
            let point = self.eval(&locate).await;
            if point.is_array() {
                break point;
            }
            assert!(Instant::now() < deadline, "nothing to click at {selector}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (x, y) = (point[0].clone(), point[1].clone());
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            let event = json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1});
            self.call("Input.dispatchMouseEvent", event).await;
        }
    }

    /// Clicks into a field, selects what it holds and types `text` over it.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.click(selector).await;
        self.eval(&format!("document.querySelector({})?.select?.()", json!(selector))).await;
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Presses a key (`Enter`, `Escape`) in the focused element.
    pub async fn press(&self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Escape" => (27, ""),
            other => panic!("no key code for {other}"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut event =
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code});
            if kind == "keyDown" && !text.is_empty() {
                event["text"] = json!(text);
            }
            self.call("Input.dispatchKeyEvent", event).await;
        }
    }

    /// Writes a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the screenshot directory");
        }
        std::fs::write(path, png).expect("write a screenshot");
    }
}
