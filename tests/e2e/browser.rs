//! A real headless Chromium (Debian's `chromium` and `chromium-driver`), driven through
//! the W3C WebDriver protocol: just the commands the console's tests use, over plain
//! HTTP to the chromedriver this starts.
//!
//! The browser runs in a network namespace of its own, with only a loopback and a
//! forwarder to paasd's API port: Chromium drops every connection under way when it
//! sees the host's addresses change ("ERR_NETWORK_CHANGED"), and paasd adds and
//! removes a network link with every instance it starts or stops, on this host.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key WebDriver names a found element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    netns: String,
    stop_forwarding: Arc<AtomicBool>,
}

impl Browser {
    /// A new headless browser showing pages `width` pixels wide, that reaches the API
    /// port `api_port` of this host at 127.0.0.1. It accepts the API's self-signed
    /// certificate (`acceptInsecureCerts`): it only ever talks to the test's own paasd.
    pub fn start(width: u32, api_port: u16) -> Browser {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let netns = format!(
            "paas-e2e-browser-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        for args in [
            vec!["netns", "add", &netns],
            vec!["-n", &netns, "link", "set", "lo", "up"],
        ] {
            let ok = Command::new("ip").args(&args).status().unwrap().success();
            assert!(ok, "ip {args:?} failed");
        }
        let stop_forwarding = Arc::new(AtomicBool::new(false));
        let listener = in_netns(&netns, move || {
            TcpListener::bind(("127.0.0.1", api_port)).unwrap()
        });
        forward(listener, api_port, Arc::clone(&stop_forwarding));
        let port = in_netns(&netns, || {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        });
        let driver = Command::new("ip")
            .args(["netns", "exec", &netns, "chromedriver"])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "starting chromedriver: is chromium-driver installed? (scripts/install-deps.sh)",
            );
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            netns,
            stop_forwarding,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.connect().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                // Root has no user namespace sandbox for Chromium here; the page it
                // opens is the test's own.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
                // A window is at least 500 px wide: narrower pages are emulated, as a
                // phone's would be.
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": 900, "pixelRatio": 1}},
            },
        }}});
        let answer = browser.call("POST", "/session", Some(caps));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut s = self.connect().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // chromedriver answers with a Content-Length: read the head, then that much.
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap() == 1 {
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("chromedriver answered {head:?}"));
        let mut payload = vec![0u8; length];
        s.read_exact(&mut payload).unwrap();
        let payload = String::from_utf8_lossy(&payload);
        let raw = &payload;
        let v: Value = serde_json::from_str(&payload)
            .unwrap_or_else(|e| panic!("chromedriver answered {raw:?}: {e}"));
        v["value"].clone()
    }

    /// A connection to chromedriver, in the browser's network namespace.
    fn connect(&self) -> std::io::Result<TcpStream> {
        let port = self.port;
        in_netns(&self.netns, move || TcpStream::connect(("127.0.0.1", port)))
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = self.call(method, &format!("/session/{}{path}", self.session), body);
        if let Some(error) = v.get("error") {
            panic!("WebDriver {method} {path}: {error}: {}", v["message"]);
        }
        v
    }

    /// Opens `url`, a page of the console, and waits until the console has drawn it
    /// (it marks `<html data-drawn>`); loads it again if it was not drawn in 10 s.
    pub fn goto(&self, url: &str) {
        for _ in 0..5 {
            self.session_call("POST", "/url", Some(json!({ "url": url })));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let drawn = self.run(
                    "return document.documentElement.dataset.drawn === 'yes';",
                    json!([]),
                );
                if drawn == json!(true) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!(
            "{url} was not drawn: {}",
            self.run("return document.body.innerText;", json!([]))
        );
    }

    /// Deletes the page's cookie `name`, as its expiry would (`HttpOnly` ones too).
    pub fn delete_cookie(&self, name: &str) {
        self.session_call("DELETE", &format!("/cookie/{name}"), None);
    }

    /// Loads the page shown again.
    pub fn refresh(&self) {
        self.session_call("POST", "/refresh", Some(json!({})));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Runs an async script: it calls `arguments[arguments.length - 1]` with its answer.
    pub fn run_async(&self, script: &str) -> Value {
        self.session_call("POST", "/timeouts", Some(json!({"script": 60_000})));
        self.session_call(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The first element `css` selects once there is one (waits up to 30 s).
    pub fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.call(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({"using": "css selector", "value": css})),
            );
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no element {css:?} appeared on {} ({v}); the page says: {}",
                self.session_call("GET", "/url", None),
                self.run("return document.body.innerText;", json!([]))
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The text of what `css` selects.
    pub fn text(&self, css: &str) -> String {
        let id = self.find(css);
        self.session_call("GET", &format!("/element/{id}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits (up to `secs`) until the text of what `css` selects contains `wanted`.
    pub fn wait_for_text(&self, css: &str, wanted: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            // The page draws again often: an element found may be gone a moment later.
            let text = self
                .run(
                    "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                    json!([css]),
                )
                .as_str()
                .map(str::to_string);
            if let Some(text) = text.filter(|t| t.contains(wanted)) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} did not come to say {wanted:?} in {secs} s; the page says: {}",
                self.run("return document.body.innerText;", json!([]))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Replaces the value of the field `css` selects with `text`, as typed keys.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.session_call("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.session_call(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Saves a PNG of the page as it is now.
    pub fn screenshot(&self, path: &Path) {
        let png = self.session_call("GET", "/screenshot", None);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut decode = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(path).unwrap())
            .spawn()
            .unwrap();
        let mut stdin = decode.stdin.take().unwrap();
        stdin
            .write_all(png.as_str().unwrap_or_default().as_bytes())
            .unwrap();
        drop(stdin);
        assert!(
            decode.wait().unwrap().success(),
            "a screenshot that is not base64"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        self.stop_forwarding.store(true, Ordering::Relaxed);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// Runs `f` on a thread that has entered the named network namespace: what it binds or
/// connects stays in that namespace.
fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// Forwards each connection `listener` accepts to this host's 127.0.0.1:`port`, until
/// `stop` is set.
fn forward(listener: TcpListener, port: u16, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((inside, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let Ok(outside) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            inside.set_nonblocking(false).unwrap();
            for (mut from, mut to) in [
                (inside.try_clone().unwrap(), outside.try_clone().unwrap()),
                (outside, inside),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
}
