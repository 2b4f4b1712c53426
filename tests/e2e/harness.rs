//! A `paasd` per test, the CLI, and a tiny HTTP client for the router.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The workspace's binaries: `target/debug/` beside this test's `deps/`.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Each daemon in this process gets its own instance address pool.
static NEXT_POOL: AtomicU32 = AtomicU32::new(0);

pub struct Daemon {
    child: Child,
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pool: u32,
    /// Flags given to paasd besides the harness's own.
    extra: Vec<String>,
    /// Environment variables given to paasd besides the harness's own.
    env: Vec<(String, String)>,
    pub api: String,
    pub router: SocketAddr,
    /// The router's HTTPS listener.
    pub https: SocketAddr,
    /// The router's /health and /metrics.
    pub admin: SocketAddr,
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Starts paasd with `extra` flags too.
    pub fn start_with(extra: &[&str]) -> Daemon {
        Self::start_in(tempfile::tempdir().unwrap(), extra)
    }

    /// Starts paasd on the data folder `dir` (made by the caller, say on a small
    /// filesystem), with `extra` flags too.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        Self::start_with_env(dir, extra, &[])
    }

    /// As [`Daemon::start_in`], with environment variables `env` too.
    pub fn start_with_env(dir: tempfile::TempDir, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let home = tempfile::tempdir().unwrap();
        let pool = NEXT_POOL.fetch_add(1, Ordering::SeqCst) + 10 * (std::process::id() % 20);
        let (child, api, router, https, admin) = spawn(dir.path(), pool, &extra, &env);
        Daemon {
            child,
            dir,
            home,
            pool,
            extra,
            env,
            api,
            router,
            https,
            admin,
        }
    }

    /// Kills paasd with SIGKILL, as a crash would, and starts it again on the same data.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.restart();
    }

    /// Kills paasd with SIGKILL, as a crash would (its containers stay).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts paasd again on the same data, after [`Daemon::kill`].
    pub fn restart(&mut self) {
        let (child, api, router, https, admin) =
            spawn(self.dir.path(), self.pool, &self.extra, &self.env);
        self.child = child;
        self.api = api;
        self.router = router;
        self.https = https;
        self.admin = admin;
    }

    /// Starts paasd again on the same data with other flags of its own, after
    /// [`Daemon::kill`].
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    /// Asks paasd to hand over (SIGQUIT: it exits, its router and instances run on)
    /// and waits for it.
    pub fn hand_over(&mut self) -> std::process::ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGQUIT)
    }

    /// Stops paasd with SIGTERM and waits for it, as `systemctl stop` would.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM)
    }

    /// Sends paasd `signal` and waits for it to exit (30 s, then SIGKILL).
    fn signal_and_wait(&mut self, signal: nix::sys::signal::Signal) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().unwrap()
    }

    /// The first three parts of this paasd's instance addresses, `10.247.N.`.
    pub fn instance_prefix(&self) -> String {
        format!("10.247.{}.", self.pool % 250)
    }

    /// The pid of the paasd process.
    pub fn child_id(&self) -> u32 {
        self.child.id()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("admin-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("api-cert.pem")
    }

    /// Runs the CLI against this daemon.
    pub fn paas(&self, args: &[&str]) -> Output {
        self.paas_in(Path::new("."), args)
    }

    /// Runs the CLI in folder `dir`.
    pub fn paas_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.as_cli(&mut Command::new(bin("paas")))
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running paas")
    }

    /// Starts the CLI without waiting for it, its stdout piped (for commands that follow).
    pub fn paas_spawn(&self, args: &[&str]) -> Child {
        self.as_cli(&mut Command::new(bin("paas")))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("running paas")
    }

    /// `command` with the environment that points the CLI at this paasd (for a CLI run
    /// under another program, such as `script`).
    pub fn as_cli<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .env("PAAS_HOME", self.home.path())
            .env("PAAS_API", &self.api)
            .env("PAAS_TOKEN", self.token())
            .env("PAAS_CA_CERT", self.cert())
    }

    /// Runs the CLI and insists it succeeds; returns its stdout.
    pub fn paas_ok(&self, args: &[&str]) -> String {
        let out = self.paas(args);
        assert!(
            out.status.success(),
            "paas {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Calls the API with curl, as any HTTP client would, with the admin token and the
    /// file `body`: returns (status, body).
    pub fn api_call(&self, method: &str, path: &str, body: Option<&Path>) -> (u16, String) {
        let body = body.map(|b| ("application/octet-stream", format!("@{}", b.display())));
        self.curl(Some(&self.token()), method, path, body)
    }

    /// Logs `user` in through the CLI, with a settings folder of their own (returned),
    /// as a person on their own laptop would.
    pub fn login(&self, user: &str, password: &str) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        let out = self.paas_as(
            home.path(),
            &[
                "login",
                "-a",
                &self.api,
                "-u",
                user,
                "-p",
                password,
                "--ca-cert",
                self.cert().to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "login of {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        home
    }

    /// Runs the CLI with the settings `paas login` saved in `home`, and nothing else.
    pub fn paas_as(&self, home: &Path, args: &[&str]) -> Output {
        Command::new(bin("paas"))
            .args(args)
            .env("PAAS_HOME", home)
            .env_remove("PAAS_API")
            .env_remove("PAAS_TOKEN")
            .output()
            .expect("running paas")
    }

    /// Calls the API with curl as the holder of `token` (none: anonymous), with a JSON
    /// `body`: returns (status, body).
    pub fn api_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        self.curl(
            token,
            method,
            path,
            body.map(|b| ("application/json", b.to_string())),
        )
    }

    /// curl's `--data-binary` takes `@FILE` or the data itself: (content type, that).
    fn curl(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "-m",
            "120",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .arg("--cacert")
        .arg(self.cert());
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some((content_type, data)) = body {
            cmd.args([
                "-H",
                &format!("Content-Type: {content_type}"),
                "--data-binary",
            ])
            .arg(data);
        }
        let out = cmd
            .arg(format!("{}{path}", self.api))
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// A GET through the router with the given Host.
    pub fn get(&self, host: &str, path: &str) -> HttpResponse {
        get(self.router, host, path)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        // A paasd that was killed leaves its router running (as it should): stop it.
        for pid in router_processes(self.dir.path().to_str().unwrap_or_default()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Asserts that nothing is left of the containers `ids` whose network namespaces were
/// `netns`: no cgroup, network namespace or veth.
pub fn assert_containers_gone<'a>(
    ids: impl IntoIterator<Item = &'a String>,
    netns: impl IntoIterator<Item = &'a String>,
) {
    for id in ids {
        for base in [
            "/sys/fs/cgroup/paas",
            "/sys/fs/cgroup/memory/paas",
            "/sys/fs/cgroup/pids/paas",
        ] {
            let path = Path::new(base).join(id);
            assert!(!path.exists(), "cgroup {} is left", path.display());
        }
    }
    let listed = netns_list();
    for ns in netns {
        assert!(
            !listed.contains(ns.as_str()),
            "network namespace {ns} is left: {listed}"
        );
        let veth = Command::new("ip")
            .args(["link", "show", &format!("pv{}", &ns[5..])])
            .output()
            .unwrap();
        assert!(!veth.status.success(), "the veth of {ns} is left");
    }
}

/// What `ip netns list` prints: the host's named network namespaces.
pub fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `paas-router` processes paasd started on the data folder `data_dir`.
pub fn router_processes(data_dir: &str) -> Vec<i32> {
    processes_with(|cmdline| cmdline.contains("paas-router") && cmdline.contains(data_dir))
}

/// The processes whose command line (arguments joined by NUL) passes `wanted`.
fn processes_with(wanted: impl Fn(&str) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| wanted(&String::from_utf8_lossy(&c)))
        })
        .collect()
}

/// Starts paasd on `dir` with instance pool number `pool`; returns it with its API URL
/// and router address, read from its ready line.
fn spawn(
    dir: &Path,
    pool: u32,
    extra: &[String],
    env: &[(String, String)],
) -> (Child, String, SocketAddr, SocketAddr, SocketAddr) {
    let mut child = Command::new(bin("paasd"))
        .args(["--data-dir"])
        .arg(dir)
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
        ])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--domain", "localhost"])
        .args(["--instance-cidr", &format!("10.247.{}.0/24", pool % 250)])
        .args(["--start-timeout", "30"])
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PAASD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting paasd");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("paasd did not print its ready line within 60 s");
    let field = |k: &str| {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {ready:?}"))
            .to_string()
    };
    let api = field("api=");
    let addr = |k: &str| {
        field(k)
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .parse()
            .unwrap()
    };
    (child, api, addr("router="), addr("https="), addr("admin="))
}

/// A self-signed certificate for `*.DOMAIN`, written into `dir`: its (cert, key) files.
pub fn wildcard_cert(dir: &Path, domain: &str) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec![format!("*.{domain}")]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// The status of `GET https://HOST:PORT/` on 127.0.0.1, its certificate checked against
/// `ca`: `000` when the handshake or the check fails.
pub fn https_status(port: &str, host: &str, ca: &Path) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}/"))
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 100 ms for up to `secs` seconds.
pub fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The `paas-init` processes (shims and pid 1s) of the containers under a data folder.
pub fn container_processes(data_dir: &str) -> Vec<i32> {
    processes_with(|c| c.contains("paas-init") && c.contains(data_dir))
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A one-shot HTTP/1.1 GET with `Connection: close`.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> HttpResponse {
    get_with(addr, host, path, &[])
}

/// As [`get`], with `headers` in the request too.
pub fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connecting to the router");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let headers: Vec<(String, String)> = headers;
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    HttpResponse {
        status,
        headers,
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    }
}

/// A data folder for a paasd that offers the stack `paasd stack build` makes: built
/// once per test run (into `target/e2e-stack`), linked into each folder (a stack is
/// only read once built).
pub fn data_dir_with_stack() -> tempfile::TempDir {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let shared = BUILT.get_or_init(|| {
        let dir = repo().join("target/e2e-stack");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let built = Command::new(bin("paasd"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["stack", "build"])
            .output()
            .expect("running paasd stack build");
        assert!(
            built.status.success(),
            "paasd stack build: {}",
            String::from_utf8_lossy(&built.stderr)
        );
        assert!(String::from_utf8_lossy(&built.stdout).contains("Built stack bookworm"));
        dir.join("stacks")
    });
    let data = tempfile::tempdir().unwrap();
    let stacks = data.path().join("stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    for e in std::fs::read_dir(shared).unwrap().flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".current") {
            std::fs::copy(e.path(), stacks.join(&name)).unwrap();
        } else if !name.to_string_lossy().starts_with('.') {
            std::os::unix::fs::symlink(e.path(), stacks.join(&name)).unwrap();
        }
    }
    data
}

/// Decodes a chunked body (RFC 9112 §7.1), ignoring extensions and trailers.
fn dechunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        raw = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// A folder with `server.py`: a Python app that answers every GET with `body` (and its
/// Content-Length), for `paas push -b binary -c 'python3 server.py'`.
pub fn answering_app(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.py"),
        format!(
            "import http.server, os\n\
             class H(http.server.BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
             self.send_response(200); self.send_header('Content-Length', '{}'); self.end_headers(); self.wfile.write(b'{body}')\n    \
             def log_message(self, *a): pass\n\
             http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n",
            body.len()
        ),
    )
    .unwrap();
    dir
}
