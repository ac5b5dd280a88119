//! Real headless Chromium for the browser tests, driven over the W3C WebDriver protocol.
//!
//! A [`Chromedriver`] is one `chromedriver` process on a free port; each [`Browser`] is one session in it with a
//! fresh profile directory (its own localStorage), so two browsers in one test are two different people. The
//! protocol is a handful of JSON calls, so this speaks it with the harness' own HTTP client rather than pulling in
//! a WebDriver crate and its HTTP stack.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::wait::Deadline;

/// Where Debian's `chromium` and `chromium-driver` packages put the browser and its driver.
pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver names an element.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a `wait_for` looks before it fails the test.
pub const UI_DEADLINE: Duration = Duration::from_secs(30);

/// Whether this machine has the browser and its driver (`./dev test` and `.ci/run` install them).
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists()
}

/// One `chromedriver` process in a process group of its own, with the browsers it starts; the whole group is
/// killed on drop, so no Chromium outlives a test, even one that failed half-way.
pub struct Chromedriver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Chromedriver {
    /// Starts the driver on a free port and waits until it is ready.
    pub async fn start() -> Self {
        assert!(
            available(),
            "{CHROMIUM} and {CHROMEDRIVER} are needed: apt-get install chromium chromium-driver"
        );
        let port = crate::procs::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        };
        let deadline = Deadline::secs(30);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                .ok()
                .and_then(|r| r.status().is_success().then_some(()));
            if ready.is_some() {
                return driver;
            }
            assert!(!deadline.passed(), "chromedriver not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser (a session with its own fresh profile), `width`×`height` CSS pixels.
    pub async fn browser(&self, width: u32, height: u32) -> Browser {
        let profile =
            std::env::temp_dir().join(format!("concert-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).expect("creating the profile directory");
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        }}});
        let resp = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("creating a browser session");
        let body: Value = resp.json().await.expect("session answer is JSON");
        let session = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {body}"))
            .to_owned();
        Browser {
            http: self.http.clone(),
            base: format!("{}/session/{session}", self.url),
            profile,
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // The group's id is the driver's pid (process_group(0)).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An element found on the page (a WebDriver element reference).
#[derive(Debug, Clone)]
pub struct Element(String);

/// One browser session. Call [`close`](Self::close) at the end; dropping only removes the profile.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    profile: PathBuf,
}

impl Browser {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let resp = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return json!({ "error": body["value"]["error"], "message": body["value"]["message"] });
        }
        body["value"].clone()
    }

    async fn get(&self, path: &str) -> Value {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    fn ok(answer: &Value, what: &str) {
        assert!(
            answer.get("error").is_none_or(Value::is_null),
            "{what}: {answer}"
        );
    }

    pub async fn goto(&self, url: &str) {
        let answer = self.post("/url", json!({ "url": url })).await;
        Self::ok(&answer, &format!("opening {url}"));
    }

    /// The elements matching a CSS selector now (maybe none).
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let answer = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        answer
            .as_array()
            .map(|found| {
                found
                    .iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until a displayed element matches `css` and returns the first such one.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_for_where(css, |_| true).await.0
    }

    /// Waits until a displayed element matches `css` and `check(its text)`; returns it with its text.
    pub async fn wait_for_text(
        &self,
        css: &str,
        check: impl Fn(&str) -> bool,
    ) -> (Element, String) {
        self.wait_for_where(css, check).await
    }

    async fn wait_for_where(&self, css: &str, check: impl Fn(&str) -> bool) -> (Element, String) {
        let deadline = Deadline::after(UI_DEADLINE);
        let mut last = String::from("(nothing)");
        loop {
            for element in self.find_all(css).await {
                if !self.displayed(&element).await {
                    continue;
                }
                let text = self.text(&element).await;
                if check(&text) {
                    return (element, text);
                }
                last = text;
            }
            if deadline.passed() {
                let errors = self.error_codes().await;
                panic!("no displayed `{css}` as expected within {UI_DEADLINE:?}; last text {last:?}; errors on the page: {errors:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the attribute `name` of the first element matching `css` satisfies `check`.
    pub async fn wait_for_attr(
        &self,
        css: &str,
        name: &str,
        check: impl Fn(&str) -> bool,
    ) -> Element {
        let deadline = Deadline::after(UI_DEADLINE);
        let mut last = None;
        loop {
            if let Some(element) = self.find_all(css).await.into_iter().next() {
                let value = self.attr(&element, name).await;
                if value.as_deref().is_some_and(&check) {
                    return element;
                }
                last = value;
            }
            if deadline.passed() {
                let errors = self.error_codes().await;
                panic!("`{css}` [{name}] not as expected within {UI_DEADLINE:?}; last {last:?}; errors on the page: {errors:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first displayed match of `css`, waiting for it to appear and be enabled.
    pub async fn click(&self, css: &str) {
        let deadline = Deadline::after(UI_DEADLINE);
        loop {
            let element = self.wait_for(css).await;
            if self.enabled(&element).await {
                let answer = self
                    .post(&format!("/element/{}/click", element.0), json!({}))
                    .await;
                // A refresh may replace or cover the element between finding and clicking: look again.
                if answer.get("error").is_none_or(Value::is_null) {
                    return;
                }
            }
            assert!(!deadline.passed(), "could not click `{css}`");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the first displayed match of `css`, replacing what it held.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        let answer = self
            .post(&format!("/element/{}/clear", element.0), json!({}))
            .await;
        Self::ok(&answer, &format!("clearing {css}"));
        let answer = self
            .post(
                &format!("/element/{}/value", element.0),
                json!({ "text": text }),
            )
            .await;
        Self::ok(&answer, &format!("typing into {css}"));
    }

    pub async fn text(&self, element: &Element) -> String {
        self.get(&format!("/element/{}/text", element.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element's attribute `name`, or else its property of that name (an input's current `value` is a
    /// property: the attribute is only what the HTML said).
    pub async fn attr(&self, element: &Element, name: &str) -> Option<String> {
        for kind in ["attribute", "property"] {
            let value = self
                .get(&format!("/element/{}/{kind}/{name}", element.0))
                .await;
            match value {
                Value::String(text) => return Some(text),
                Value::Number(n) => return Some(n.to_string()),
                _ => {}
            }
        }
        None
    }

    async fn displayed(&self, element: &Element) -> bool {
        self.get(&format!("/element/{}/displayed", element.0))
            .await
            .as_bool()
            .unwrap_or(false)
    }

    async fn enabled(&self, element: &Element) -> bool {
        self.get(&format!("/element/{}/enabled", element.0))
            .await
            .as_bool()
            .unwrap_or(false)
    }

    /// The `data-code`s of the error messages shown now.
    pub async fn error_codes(&self) -> Vec<String> {
        let mut codes = Vec::new();
        for element in self.find_all(r#"[data-test="error"]"#).await {
            if let Some(code) = self.attr(&element, "data-code").await {
                codes.push(code);
            }
        }
        codes
    }

    /// Runs a script in the page and answers its return value.
    pub async fn script(&self, script: &str) -> Value {
        let answer = self
            .post("/execute/sync", json!({ "script": script, "args": [] }))
            .await;
        Self::ok(&answer, "running a script");
        answer
    }

    /// Saves a PNG of what the page shows now: the full page height when `full_page`, else the window.
    pub async fn screenshot(&self, path: &Path, full_page: bool) {
        if full_page {
            // Grow the window to the page's height so the screenshot shows all of it.
            let height = self
                .script("return Math.ceil(document.documentElement.scrollHeight)")
                .await
                .as_u64()
                .unwrap_or(800);
            let width = self
                .script("return window.outerWidth")
                .await
                .as_u64()
                .unwrap_or(1024);
            self.post(
                "/window/rect",
                json!({ "width": width, "height": height + 140 }),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("a screenshot is base64"))
            .expect("a screenshot decodes");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("creating the screenshot directory");
        }
        std::fs::write(path, png).expect("writing the screenshot");
    }

    /// Ends the session (closes the browser).
    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
