//! Headless Chromium and Firefox over WebDriver, for the tests that need a real browser (the
//! softphone, the dashboard's rendering). `.ci/run` installs Chromium with ChromeDriver and
//! Firefox ESR with geckodriver; without them these tests fail.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const FIREFOX: &str = "/usr/bin/firefox-esr";
const WAIT: Duration = Duration::from_secs(20);

/// ChromeDriver on a free loopback port, killed when dropped.
pub struct Driver {
    child: tokio::process::Child,
    port: u16,
}

impl Driver {
    /// ChromeDriver, for Chromium.
    pub async fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
            "Chromium and ChromeDriver are needed: apt-get install chromium chromium-driver (.ci/run does)"
        );
        Driver::spawn(CHROMEDRIVER.as_ref(), |port| vec![format!("--port={port}")]).await
    }

    /// geckodriver, for Firefox ESR.
    pub async fn firefox() -> Driver {
        let geckodriver = geckodriver();
        assert!(
            std::path::Path::new(FIREFOX).exists() && geckodriver.is_some(),
            "Firefox and geckodriver are needed: apt-get install firefox-esr; cargo install \
             geckodriver (.ci/run does)"
        );
        let geckodriver = geckodriver.unwrap_or_default();
        Driver::spawn(&geckodriver, |port| vec![format!("--port={port}")]).await
    }

    async fn spawn(program: &std::path::Path, args: impl Fn(u16) -> Vec<String>) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new(program)
            .args(args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the WebDriver server starts");
        // The drivers say nothing when they are ready; the port accepting is the sign.
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not listen",
                program.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, port }
    }

    /// A headless Firefox whose microphone is its fake device, a sine tone at `tone_hz`.
    pub async fn firefox_browser(&self, tone_hz: u32) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "moz:firefoxOptions".to_owned(),
            json!({
                "binary": FIREFOX,
                "args": ["-headless", "--width=1280", "--height=800"],
                "prefs": {
                    "media.navigator.streams.fake": true,
                    "media.navigator.permission.disabled": true,
                    "media.navigator.audio.fake_frequency": tone_hz,
                    "media.autoplay.default": 0,
                    "media.autoplay.block-webaudio": false,
                    // No sound card here: Firefox's mock audio backend stands in for one
                    // (without a device its AudioContext never starts).
                    "media.cubeb.force_mock_context": true,
                },
            }),
        );
        self.connect(caps, "a Firefox session").await
    }

    async fn connect(
        &self,
        caps: serde_json::Map<String, serde_json::Value>,
        what: &str,
    ) -> Client {
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// A headless Chromium whose microphone plays `wav`.
    pub async fn browser(&self, wav: &std::path::Path) -> Client {
        self.browser_with(&[
            "--use-fake-ui-for-media-stream".to_owned(),
            "--use-fake-device-for-media-stream".to_owned(),
            format!("--use-file-for-fake-audio-capture={}", wav.display()),
            "--autoplay-policy=no-user-gesture-required".to_owned(),
        ])
        .await
    }

    /// A headless Chromium with `extra` arguments.
    pub async fn browser_with(&self, extra: &[String]) -> Client {
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            "--disable-background-networking",
            "--no-first-run",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
        args.extend_from_slice(extra);
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        self.connect(caps, "a Chromium session").await
    }
}

/// geckodriver: on the `PATH`, or where `cargo install` puts it.
fn geckodriver() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin"));
    on_path
        .chain(cargo_home)
        .map(|dir| dir.join("geckodriver"))
        .find(|candidate| candidate.is_file())
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
