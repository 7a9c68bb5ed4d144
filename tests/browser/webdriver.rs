//! A small WebDriver (W3C) client over ureq, driving the distribution's
//! headless Chromium through its `chromedriver`. Just the commands the console
//! test needs; every call fails the test with the driver's message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

/// The W3C web element identifier key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

pub struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Driver {
    /// Starts chromedriver and a headless Chromium session. Panics, with what
    /// to install, when either is missing: this test never skips.
    pub fn start(width: u32, height: u32) -> Driver {
        let driver = find_binary(
            "CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        )
        .unwrap_or_else(|| {
            panic!(
                "chromedriver not found: install Debian's packages with \
                 `apt-get install -y chromium chromium-driver` (.ci/run does this), \
                 or set CHROMEDRIVER to its path"
            )
        });
        let browser = find_binary(
            "CHROMIUM",
            &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
        )
        .unwrap_or_else(|| {
            panic!(
                "chromium not found: install Debian's packages with \
                     `apt-get install -y chromium chromium-driver` (.ci/run does this), \
                     or set CHROMIUM to its path"
            )
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let ready = wait(Duration::from_secs(20), || {
            agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .filter(|v| v["value"]["ready"] == true)
        });
        assert!(ready.is_some(), "chromedriver did not become ready");
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let mut response = agent
            .post(format!("{base}/session"))
            .send_json(&capabilities)
            .expect("new session");
        let body: Value = response.body_mut().read_json().expect("session json");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium did not start: {body}"))
            .to_string();
        Driver {
            child,
            base,
            session,
            agent,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let result = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, body) => self
                .agent
                .post(&url)
                .send_json(body.unwrap_or_else(|| json!({}))),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let value: Value = response.body_mut().read_json().unwrap_or(Value::Null);
        assert!(status < 300, "{method} {path}: {status} {value}");
        value["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.call("POST", "/refresh", None);
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn title(&self) -> String {
        self.call("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The first element matching `css`, or None.
    pub fn try_find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let mut response = self
            .agent
            .post(&url)
            .send_json(json!({"using": "css selector", "value": css}))
            .ok()?;
        let status = response.status().as_u16();
        let value: Value = response.body_mut().read_json().ok()?;
        if status >= 300 {
            return None;
        }
        value["value"][ELEMENT].as_str().map(str::to_string)
    }

    pub fn find(&self, css: &str) -> String {
        self.try_find(css)
            .unwrap_or_else(|| panic!("no element matches {css:?} on {}", self.url()))
    }

    pub fn click(&self, css: &str) {
        let el = self.find(css);
        self.call("POST", &format!("/element/{el}/click"), None);
    }

    /// Types `text` into the element (keys such as Enter as `\u{E007}`).
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css);
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the first element matching `css`, read in one
    /// script call (no element handle to go stale while a page reloads);
    /// `None` when nothing matches or the page is between documents.
    pub fn try_text(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/execute/sync", self.base, self.session);
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
        let mut response = self
            .agent
            .post(&url)
            .send_json(json!({ "script": script, "args": [css] }))
            .ok()?;
        if response.status().as_u16() >= 300 {
            return None;
        }
        let value: Value = response.body_mut().read_json().ok()?;
        value["value"].as_str().map(str::to_string)
    }

    pub fn text(&self, css: &str) -> String {
        self.try_text(css)
            .unwrap_or_else(|| panic!("no text for {css:?} on {}", self.url()))
    }

    /// Presses one key on whatever has focus.
    pub fn press(&self, key: &str) {
        self.call(
            "POST",
            "/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}
                ]}]}),
            ),
        );
        self.call("DELETE", "/actions", None);
    }

    /// Runs `script` in the page (WebDriver bypasses the page's CSP).
    pub fn execute(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Sets the page's viewport to exactly `width` x `height` CSS pixels
    /// (a headless window is capped at its virtual screen; the viewport is not).
    pub fn set_window(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600
                }}),
            ),
        );
    }

    /// A PNG of the whole page (the window resized to the content's height).
    pub fn screenshot(&self, path: &Path, width: u32) {
        // Measure at a normal height: a tall window makes a short page tall.
        self.set_window(width, 800);
        let height = self
            .execute("return Math.ceil(document.documentElement.scrollHeight);")
            .as_u64()
            .unwrap_or(900)
            .clamp(300, 4000) as u32;
        self.set_window(width, height);
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or(""))
            .expect("screenshot is base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// Browser console entries since the last call.
    pub fn console_log(&self) -> Vec<Value> {
        self.call("POST", "/se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.agent.delete(&url).call();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns Some or `timeout` passes.
pub fn wait<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
