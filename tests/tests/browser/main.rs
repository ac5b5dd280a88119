//! Browser tests: the fans' app and the admin page in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), against a real stack (api + worker, real Postgres, real broker), driven only by the
//! pages' `data-test` hooks as the contract lists them.
//!
//! `UPDATE_SCREENSHOTS=1` makes the tests save the main screens into `docs/screenshots/` (the README shows
//! them); otherwise they go to `target/screenshots/`, so every run still takes them.

mod admin;
mod box_office;
mod checkout;
mod journey;
mod pages;
mod pre_queue;
mod race;
mod room;
mod tickets;

use std::path::PathBuf;

use concert_tests::browser::{Browser, Chromedriver};
use concert_tests::{Api, TestStack};
use tokio::sync::{Semaphore, SemaphorePermit};

/// One browser test at a time: two cores run Chromium, the api and a worker per test already.
static ONE_AT_A_TIME: Semaphore = Semaphore::const_new(1);

/// A phone-sized window (CSS pixels) and a laptop-sized one.
pub const PHONE: (u32, u32) = (390, 844);
pub const LAPTOP: (u32, u32) = (1100, 900);

/// A stack and a WebDriver for one test; keep it alive for the whole test.
pub struct Rig {
    pub stack: TestStack,
    pub driver: Chromedriver,
    _turn: SemaphorePermit<'static>,
}

impl Rig {
    pub async fn start() -> Self {
        let turn = ONE_AT_A_TIME.acquire().await.expect("never closed");
        let stack = TestStack::start().await;
        let driver = Chromedriver::start().await;
        Self {
            stack,
            driver,
            _turn: turn,
        }
    }

    pub fn api(&self) -> &Api {
        self.stack.api()
    }

    /// The api's address as a browser reaches it.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api().base.replace("0.0.0.0", "127.0.0.1"))
    }

    /// A new browser (a new person: fresh profile) showing the fans' app.
    pub async fn fan(&self, (width, height): (u32, u32)) -> Browser {
        let browser = self.driver.browser(width, height).await;
        browser.goto(&self.url("/")).await;
        browser
    }
}

/// `[data-test="name"]`.
pub fn hook(name: &str) -> String {
    format!(r#"[data-test="{name}"]"#)
}

/// Where a screenshot called `name` goes (see the module doc).
pub fn screenshot_path(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/screenshots")
    } else {
        root.join("target/screenshots")
    };
    dir.join(format!("{name}.png"))
}

/// Signs up through the page and waits for the signed-in view.
pub async fn sign_up(browser: &Browser, name: &str) {
    browser.type_into(&hook("signup-name"), name).await;
    browser.click(&hook("signup-button")).await;
    browser.wait_for_text(&hook("balance"), |t| t == "0").await;
}

/// Tops up through the page and waits for the new balance.
pub async fn top_up(browser: &Browser, amount: i64, expected_balance: i64) {
    browser
        .type_into(&hook("charge-amount"), &amount.to_string())
        .await;
    browser.click(&hook("charge-button")).await;
    let expected = expected_balance.to_string();
    browser
        .wait_for_text(&hook("balance"), |t| t == expected)
        .await;
}

/// Clicks the join button of one concert's card.
pub async fn join(browser: &Browser, concert_id: uuid::Uuid) {
    let card = format!(r#"[data-test="concert-card"][data-concert-id="{concert_id}"]"#);
    browser
        .click(&format!("{card} {}", hook("join-button")))
        .await;
}

/// `[data-test="seat"][data-seat-no="n"]`.
pub fn seat(n: i64) -> String {
    format!(r#"[data-test="seat"][data-seat-no="{n}"]"#)
}

/// `[data-test="date-option"][data-date-id="id"]`.
pub fn date_option(date_id: uuid::Uuid) -> String {
    format!(r#"[data-test="date-option"][data-date-id="{date_id}"]"#)
}

/// The signed-in person's user, read from the page's storage (for checks through the API).
pub async fn page_user(browser: &Browser) -> concert_tests::User {
    let stored = browser
        .script(r#"return localStorage.getItem("user")"#)
        .await;
    let user: serde_json::Value =
        serde_json::from_str(stored.as_str().expect("the page keeps the user")).expect("JSON");
    concert_tests::User {
        user_id: user["user_id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("user_id"),
        access_token: user["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned(),
        name: user["name"].as_str().unwrap_or_default().to_owned(),
    }
}
