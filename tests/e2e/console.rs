//! The web console in a real headless Chromium: signed in as a developer of one space,
//! it shows an app the CLI pushed, scales it, streams its logs live, rolls it back, and
//! refuses another space's app; an admin sees the platform's pages (routes, services,
//! buildpacks, cells), an app's CPU and memory over time, its services and tasks, and a
//! push's staging log as it comes; its session cookie cannot make a change without the
//! CSRF token. Screenshots of each page land in `target/console-screenshots/`.

use std::process::Command;

use serde_json::json;

use crate::browser::Browser;
use crate::harness::{bin, repo, Daemon};

/// A Python app that answers `BODY` and logs every request's path on stdout.
fn logging_app(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        format!(
            "import http.server, os\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       body = b'{body}'\n\
             \x20       self.send_response(200)\n\
             \x20       self.send_header('Content-Length', str(len(body)))\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(body)\n\
             \x20   def log_message(self, fmt, *args):\n\
             \x20       print('served ' + self.path, flush=True)\n\
             http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n"
        ),
    )
    .unwrap();
    dir
}

/// axe-core (from npm, installed into `target/axe` on first use): the accessibility
/// checker run in the test's own browser.
fn axe_source() -> String {
    static INSTALLED: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let file = INSTALLED.get_or_init(|| {
        let prefix = repo().join("target/axe");
        let file = prefix.join("node_modules/axe-core/axe.min.js");
        if !file.exists() {
            let out = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg("axe-core@4")
                .output()
                .expect("running npm");
            assert!(
                out.status.success(),
                "npm install axe-core: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        file
    });
    std::fs::read_to_string(file).unwrap()
}

/// The serious and critical accessibility findings of axe-core on the page shown.
fn axe_findings(b: &Browser) -> Vec<String> {
    b.run(&format!("{}\nreturn typeof axe;", axe_source()), json!([]));
    let found = b.run_async(
        "const done = arguments[arguments.length - 1];\
         axe.run(document, { resultTypes: ['violations'] }).then(r => done(r.violations\
           .filter(v => v.impact === 'serious' || v.impact === 'critical')\
           .map(v => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map(n => n.target).join(' ')})`)),\
           e => done([`axe failed: ${e}`]));",
    );
    serde_json::from_value(found).unwrap()
}

/// The port of the API's address (`https://127.0.0.1:PORT`).
fn api_port(d: &Daemon) -> u16 {
    d.api.rsplit(':').next().unwrap().parse().unwrap()
}

/// `paas push NAME` of the app in `dir` into `space`, as a command to run.
fn push_command(d: &Daemon, space: &str, name: &str, dir: &std::path::Path) -> Command {
    let mut push = Command::new(bin("paas"));
    d.as_cli(&mut push).env("PAAS_SPACE", space).args([
        "push",
        name,
        "-p",
        dir.to_str().unwrap(),
        "-b",
        "binary",
        "-c",
        "python3 server.py",
        "-m",
        "64M",
    ]);
    push
}

fn push(d: &Daemon, space: &str, name: &str, body: &str) {
    let app = logging_app(body);
    let out = push_command(d, space, name, app.path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_developer_runs_their_app_from_the_console_and_sees_no_other_space() {
    let d = Daemon::start();
    d.paas_ok(&["create-space", "other"]);
    d.paas_ok(&["create-user", "dev", "dev-password"]);
    d.paas_ok(&["set-space-role", "dev", "default", "developer"]);
    push(&d, "default", "shop", "first");
    push(&d, "default", "shop", "second");
    push(&d, "other", "hidden", "secret");
    let shots = repo().join("target/console-screenshots");

    let b = Browser::start(1280, api_port(&d));
    b.goto(&format!("{}/", d.api));
    b.find("#user");
    // Signed out, the pages are not offered.
    assert!(!b.text("body").contains("Buildpacks"));
    b.screenshot(&shots.join("sign-in.png"));
    let mut findings = axe_findings(&b);
    b.type_into("#user", "dev");
    b.type_into("#password", "wrong-password");
    b.click("#sign-in");
    b.wait_for_text("#sign-in-error", "password", 10);
    b.type_into("#password", "dev-password");
    b.click("#sign-in");

    // The apps page: the developer's app, not the other space's.
    let apps = b.wait_for_text("#apps", "shop", 20);
    assert!(apps.contains("1 of 1"), "{apps}");
    assert!(!apps.contains("never"), "its last deploy is shown: {apps}");
    assert!(!apps.contains("hidden"), "{apps}");
    b.screenshot(&shots.join("apps.png"));
    findings.extend(axe_findings(&b));

    // The app page, then a scale to 2 instances, confirmed.
    b.click("tr[data-app=shop] a");
    b.wait_for_text("#running", "1 of 1 running", 30);
    b.type_into("#scale-instances", "2");
    b.click("#scale");
    b.click("#confirm-ok");
    b.wait_for_text("#running", "2 of 2 running", 60);
    let (status, app) = d.api_as(Some(&d.token()), "GET", "/v1/apps/shop", None);
    assert_eq!(status, 200);
    let app: serde_json::Value = serde_json::from_str(&app).unwrap();
    assert_eq!(
        app["settings"]["instances"], 2,
        "the scale reached the platform"
    );

    // A line the app logs now appears in the live log view.
    let probe = format!("/console-probe-{}", std::process::id());
    assert_eq!(d.get("shop.localhost", &probe).body, "second");
    b.wait_for_text("#logs", &format!("served {probe}"), 30);
    // That request counts in the app's traffic, charted by minute.
    b.refresh();
    let traffic = b.wait_for_text("#traffic", "Requests: this minute", 30);
    assert!(
        !traffic.contains("Requests: this minute 0, highest in the hour 0"),
        "the request is counted: {traffic}"
    );
    assert!(
        b.run(
            "return document.querySelectorAll('#chart-requests rect').length;",
            json!([])
        ) == json!(60)
    );
    b.screenshot(&shots.join("app.png"));
    findings.extend(axe_findings(&b));

    // Values stay hidden until revealed.
    d.paas_ok(&["set-env", "shop", "API_KEY", "s3cr3t-value"]);
    b.refresh();
    b.wait_for_text("#env", "API_KEY", 30);
    assert!(!b.text("#env").contains("s3cr3t-value"));
    b.click("#reveal-env");
    b.wait_for_text("#env", "s3cr3t-value", 10);

    // Roll back to the first push: the router then serves its body.
    b.click("tr[data-version='1'] button.rollback");
    b.click("#confirm-ok");
    b.wait_for_text("#status", "rolled back to v1", 90);
    assert_eq!(d.get("shop.localhost", "/").body, "first");
    b.screenshot(&shots.join("revisions.png"));

    // An hour on, the access token's cookie has expired: the console trades the
    // refresh cookie for a new pair and goes on, signed in.
    b.delete_cookie("__Host-paas_session");
    b.goto(&format!("{}/#/apps", d.api));
    b.wait_for_text("#apps", "shop", 20);
    assert_eq!(b.text("#who"), "dev");

    // Another space's app: refused, as the API refuses it (not found, not a leak).
    b.goto(&format!("{}/#/apps/hidden", d.api));
    let refused = b.wait_for_text("#page-error", "hidden", 20);
    assert!(refused.contains("does not exist"), "{refused}");
    b.screenshot(&shots.join("refused.png"));
    findings.extend(axe_findings(&b));
    assert!(findings.is_empty(), "axe-core found: {findings:#?}");
    let status = b.run_async(
        "const done = arguments[arguments.length - 1];\
         fetch('/v1/apps/hidden').then(r => done(r.status));",
    );
    assert_eq!(status, 404);

    // At 375 px wide nothing sticks out of the page.
    let narrow = Browser::start(375, api_port(&d));
    narrow.goto(&format!("{}/", d.api));
    narrow.type_into("#user", "dev");
    narrow.type_into("#password", "dev-password");
    narrow.click("#sign-in");
    for page in ["#/apps", "#/apps/shop"] {
        narrow.goto(&format!("{}/{page}", d.api));
        narrow.wait_for_text("main h1", "", 20);
        narrow.find(if page == "#/apps" {
            "#apps"
        } else {
            "#instances"
        });
        let widths = narrow.run(
            "return [window.innerWidth, document.documentElement.scrollWidth];",
            json!([]),
        );
        assert_eq!(widths[0], 375, "the page is shown 375 px wide");
        assert!(
            widths[1].as_u64().unwrap() <= 375,
            "{page} is {} px wide at 375",
            widths[1]
        );
    }
    narrow.screenshot(&shots.join("app-375px.png"));
}

/// Signs `b` in as `user` and waits for the apps page.
fn sign_in(b: &Browser, d: &Daemon, user: &str, password: &str) {
    b.goto(&format!("{}/", d.api));
    b.type_into("#user", user);
    b.type_into("#password", password);
    b.click("#sign-in");
    b.wait_for_text("main h1", "Apps", 20);
}

/// Waits (at most `secs`) until `script` answers true in the page.
fn wait_until(b: &Browser, script: &str, what: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while b.run(script, json!([])) != json!(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "waited {secs} s for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn an_admin_sees_the_platform_an_app_s_usage_tasks_services_and_a_staging_live() {
    let d = Daemon::start();
    d.paas_ok(&["create-user", "ops", "ops-password", "--admin"]);
    push(&d, "default", "shop", "first");
    d.paas_ok(&[
        "create-user-provided-service",
        "orders-db",
        "-p",
        r#"{"uri":"postgres://db.internal/orders"}"#,
    ]);
    d.paas_ok(&["bind-service", "shop", "orders-db"]);
    d.paas_ok(&["map-route", "shop", "localhost", "--hostname", "store"]);
    d.paas_ok(&["run-task", "shop", "echo migrated", "--name", "migrate"]);
    let shots = repo().join("target/console-screenshots");
    let b = Browser::start(1280, api_port(&d));
    sign_in(&b, &d, "ops", "ops-password");
    let mut findings = Vec::new();

    // The app page: its usage charted by minute (paasd reads it every 15 s), its
    // bound service (never its credentials) and its task.
    b.goto(&format!("{}/#/apps/shop", d.api));
    b.wait_for_text("#app-services", "orders-db", 20);
    assert!(!b.text("main").contains("db.internal"), "credentials shown");
    b.wait_for_text("#tasks", "migrate", 20);
    wait_until(
        &b,
        "const u = document.getElementById('usage');\
         return !!u && /Memory, all instances: .*highest in the hour [1-9][0-9]* MiB/.test(u.innerText);",
        "the instance's memory charted",
        60,
    );
    let usage = b.text("#usage");
    assert!(usage.contains("64 MiB given to 1 running"), "{usage}");
    assert_eq!(
        b.run(
            "return document.querySelectorAll('#chart-memory rect').length;",
            json!([])
        ),
        json!(60)
    );
    b.screenshot(&shots.join("app-usage.png"));
    findings.extend(axe_findings(&b));

    // The platform's pages, as an admin sees them.
    let pages = [
        (
            "#/routes",
            [("#routes", "store.localhost"), ("#domains", "localhost")],
        ),
        (
            "#/services",
            [("#services", "orders-db"), ("#services", "shop")],
        ),
        (
            "#/buildpacks",
            [("#buildpacks", "binary"), ("#stacks", "host")],
        ),
        ("#/cells", [("#cells", "64 of"), ("#cells", "127.0.0.1")]),
    ];
    for (page, shown) in pages {
        b.goto(&format!("{}/{page}", d.api));
        for (table, wanted) in shown {
            b.wait_for_text(table, wanted, 20);
        }
        b.screenshot(&shots.join(format!("{}.png", &page[2..])));
        findings.extend(axe_findings(&b));
    }

    // A push's staging output appears as it comes, and nothing but staging output.
    assert_eq!(d.get("shop.localhost", "/app-line").body, "first");
    b.goto(&format!("{}/#/apps/shop/staging", d.api));
    b.wait_for_text("#logs", "[STG]", 20);
    let before = b.run(
        "return document.querySelectorAll('#logs div').length;",
        json!([]),
    );
    let app = logging_app("second");
    let mut pushing = push_command(&d, "default", "shop", app.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        &b,
        &format!("return document.querySelectorAll('#logs div').length > {before};"),
        "a line of the new staging",
        120,
    );
    assert!(pushing.wait().unwrap().success());
    let staging = b.text("#logs");
    assert!(!staging.contains("served /app-line"), "{staging}");
    assert!(staging.lines().all(|l| l.contains("[STG]")), "{staging}");
    b.screenshot(&shots.join("staging.png"));
    findings.extend(axe_findings(&b));
    assert!(findings.is_empty(), "axe-core found: {findings:#?}");

    // At 375 px wide none of these pages sticks out.
    let narrow = Browser::start(375, api_port(&d));
    sign_in(&narrow, &d, "ops", "ops-password");
    for (page, shown) in pages {
        narrow.goto(&format!("{}/{page}", d.api));
        narrow.find(shown[0].0);
        let widths = narrow.run(
            "return [window.innerWidth, document.documentElement.scrollWidth];",
            json!([]),
        );
        assert!(
            widths[1].as_u64().unwrap() <= 375,
            "{page} is {} px wide at 375",
            widths[1]
        );
    }

    // A developer sees no Cells link, and the API refuses them the cells.
    d.paas_ok(&["create-user", "dev", "dev-password"]);
    d.paas_ok(&["set-space-role", "dev", "default", "developer"]);
    let dev = Browser::start(1280, api_port(&d));
    sign_in(&dev, &d, "dev", "dev-password");
    assert_eq!(
        dev.run(
            "return document.getElementById('cells-link').hidden;",
            json!([])
        ),
        json!(true)
    );
    dev.goto(&format!("{}/#/cells", d.api));
    dev.wait_for_text("#page-error", "", 20);
}

/// `NAME=VALUE` of the cookie `name` an answer (head and body) sets, after checking
/// it is the browser's alone to send.
fn cookie_of(answer: &str, name: &str) -> String {
    let set_cookie = answer
        .lines()
        .find(|l| {
            l.to_ascii_lowercase().starts_with("set-cookie:") && l.contains(&format!("{name}="))
        })
        .unwrap_or_else(|| panic!("no cookie {name}: {answer}"));
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    set_cookie
        .split_once(':')
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn the_console_cookie_changes_nothing_without_its_csrf_token() {
    let d = Daemon::start();
    d.paas_ok(&["create-user", "dev", "dev-password"]);
    d.paas_ok(&["set-space-role", "dev", "default", "developer"]);
    push(&d, "default", "shop", "ok");

    // The console's sign-in as curl makes it, with the answer's head and body.
    let sign_in = |content_type: &str| -> String {
        let out = Command::new("curl")
            .args(["-sS", "-D", "-", "--cacert"])
            .arg(d.cert())
            .args([
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
            ])
            .arg(json!({"user": "dev", "password": "dev-password"}).to_string())
            .arg(format!("{}/console/session", d.api))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Another site's form cannot sign a browser in (login CSRF): not JSON, refused.
    let form = sign_in("text/plain");
    assert!(form.starts_with("HTTP/1.1 403"), "{form}");

    // Sign in as the console does; the cookie is the browser's alone to send.
    let answer = sign_in("application/json");
    let cookie = cookie_of(&answer, "__Host-paas_session");
    let refresh_cookie = cookie_of(&answer, "__Host-paas_refresh");
    // The refresh cookie gets a new pair of tokens, once.
    let refresh = |cookie: &str| -> u16 {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .arg("--cacert")
            .arg(d.cert())
            .args(["-H", &format!("Cookie: {cookie}")])
            .arg(format!("{}/console/session/refresh", d.api))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).parse().unwrap()
    };
    let first = sign_in("application/json");
    let first_refresh = cookie_of(&first, "__Host-paas_refresh");
    assert_eq!(refresh(&first_refresh), 200);
    assert_eq!(refresh(&first_refresh), 401, "a refresh token is used once");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let session: serde_json::Value = serde_json::from_str(body.trim()).unwrap();
    let csrf = session["csrf"].as_str().unwrap().to_string();
    assert_eq!(session["name"], "dev");

    let call = |method: &str, path: &str, csrf: Option<&str>| -> u16 {
        let mut c = Command::new("curl");
        c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
            .arg("--cacert")
            .arg(d.cert())
            .args(["-H", &format!("Cookie: {cookie}")]);
        if let Some(t) = csrf {
            c.args(["-H", &format!("X-Csrf-Token: {t}")]);
        }
        let out = c.arg(format!("{}{path}", d.api)).output().unwrap();
        String::from_utf8_lossy(&out.stdout).parse().unwrap()
    };
    // Reads need only the cookie.
    assert_eq!(call("GET", "/v1/apps/shop", None), 200);
    // A change without the token, or with another's, is refused and changes nothing.
    assert_eq!(call("POST", "/v1/apps/shop/stop", None), 403);
    assert_eq!(
        call(
            "POST",
            "/v1/apps/shop/stop",
            Some("0123456789abcdef0123456789abcdef")
        ),
        403
    );
    assert_eq!(d.get("shop.localhost", "/").status, 200, "still running");
    // With it, the change is made.
    assert_eq!(call("POST", "/v1/apps/shop/stop", Some(&csrf)), 204);
    // Signed out, the cookie is worth nothing.
    assert_eq!(call("DELETE", "/console/session", Some(&csrf)), 204);
    assert_eq!(call("GET", "/v1/apps/shop", None), 401);
    // Nor is the refresh cookie of that session.
    assert_eq!(refresh(&refresh_cookie), 401);
}
