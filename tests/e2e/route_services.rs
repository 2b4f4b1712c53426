//! Route services through the CLI, a real paasd and its router: a Python HTTPS service
//! on loopback (allowed by the operator, its certificate from a CA paasd is given with
//! SSL_CERT_FILE) sees each request of the route first and sends it on; the router lets
//! only what comes back signed reach the app.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::harness::{get_with, Daemon};

/// The route service: logs what it is sent (one JSON line per request) to `log`, sends
/// the request on to `X-CF-Forwarded-Url` through the router at `router`, adding
/// `X-Route-Service: passed`, and answers with what came back plus the URL it saw.
const SERVICE: &str = r#"
import http.client, http.server, json, ssl, sys, urllib.parse
router, log, cert, key = sys.argv[1:5]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        url = self.headers.get('X-CF-Forwarded-Url', '')
        with open(log, 'a') as f:
            f.write(json.dumps({'url': url, 'path': self.path,
                'signature': self.headers.get('X-CF-Proxy-Signature'),
                'metadata': self.headers.get('X-CF-Proxy-Metadata')}) + '\n')
        u = urllib.parse.urlsplit(url)
        skip = ('host', 'connection', 'content-length')
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        headers['Host'] = u.netloc
        headers['X-Route-Service'] = 'passed'
        c = http.client.HTTPConnection(router, timeout=20)
        c.request('GET', (u.path or '/') + ('?' + u.query if u.query else ''), headers=headers)
        r = c.getresponse()
        body = r.read()
        self.send_response(r.status)
        self.send_header('X-Route-Service-Saw', url)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// The app: says whether a route service passed the request on, and whether a
/// signature reached it.
const APP: &str = "import http.server, os\n\
class H(http.server.BaseHTTPRequestHandler):\n    \
def do_GET(self):\n        \
seen = self.headers.get('X-Route-Service', 'none')\n        \
signed = 'present' if self.headers.get('X-CF-Proxy-Signature') else 'absent'\n        \
body = ('route-service=%s signature=%s path=%s' % (seen, signed, self.path)).encode()\n        \
self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n    \
def log_message(self, *a): pass\n\
http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['PORT'])), H).serve_forever()\n";

/// A CA (its certificate in `dir/ca.pem`) and a certificate it issued for 127.0.0.1
/// (`dir/rs-cert.pem`, `dir/rs-key.pem`).
fn issue(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "route service test CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("rs-cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("rs-key.pem"), key.serialize_pem()).unwrap();
}

/// Starts the route service; its port.
fn start_service(dir: &Path, router: std::net::SocketAddr) -> (Child, u16) {
    std::fs::write(dir.join("service.py"), SERVICE).unwrap();
    let mut child = Command::new("python3")
        .arg(dir.join("service.py"))
        .arg(router.to_string())
        .arg(dir.join("seen.log"))
        .arg(dir.join("rs-cert.pem"))
        .arg(dir.join("rs-key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the route service");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the route service's port");
    (child, port)
}

/// The requests the route service was sent so far.
fn seen(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("seen.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_route_service_sees_every_request_first_and_cannot_be_bypassed() {
    let certs = tempfile::tempdir().unwrap();
    issue(certs.path());
    let ca = certs.path().join("ca.pem");
    let d = Daemon::start_with_env(
        tempfile::tempdir().unwrap(),
        &["--route-service-allow", "127.0.0.1/32"],
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    let (service, port) = start_service(certs.path(), d.router);
    let _service = Killed(service);
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("server.py"), APP).unwrap();
    let path = app.path().to_str().unwrap();
    d.paas_ok(&[
        "push",
        "guarded",
        "-p",
        path,
        "-b",
        "binary",
        "-c",
        "python3 server.py",
    ]);
    let get = |path: &str, headers: &[(&str, &str)]| {
        get_with(d.router, "guarded.localhost", path, headers)
    };
    assert_eq!(
        get("/a", &[]).body,
        "route-service=none signature=absent path=/a"
    );

    // cf's rule: a route service is reached over HTTPS.
    let plain = d.paas(&[
        "create-user-provided-service",
        "plain",
        "-r",
        "http://127.0.0.1:1",
    ]);
    assert!(!plain.status.success());
    assert!(String::from_utf8_lossy(&plain.stderr).contains("https://"));
    let url = format!("https://127.0.0.1:{port}/check");
    d.paas_ok(&["create-user-provided-service", "guard", "-r", &url]);
    d.paas_ok(&[
        "bind-route-service",
        "localhost",
        "guard",
        "--hostname",
        "guarded",
    ]);

    // Through the service: the app sees its header and never a signature; the client
    // gets the service's answer.
    let r = get("/b?x=1", &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, "route-service=passed signature=absent path=/b?x=1");
    assert_eq!(
        r.header("x-route-service-saw"),
        Some("http://guarded.localhost/b?x=1")
    );
    let first = seen(certs.path());
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["path"], "/check");
    let (signature, metadata) = (
        first[0]["signature"].as_str().unwrap().to_string(),
        first[0]["metadata"].as_str().unwrap().to_string(),
    );

    // A client that makes up the headers, or replays the service's for another path,
    // is refused (sent to the service again, it could loop): it never reaches the app.
    let made_up = [
        ("X-CF-Forwarded-Url", "http://guarded.localhost/c"),
        ("X-CF-Proxy-Signature", "00ff"),
        ("X-CF-Proxy-Metadata", metadata.as_str()),
    ];
    let replayed = [
        ("X-CF-Forwarded-Url", "http://guarded.localhost/b?x=1"),
        ("X-CF-Proxy-Signature", signature.as_str()),
        ("X-CF-Proxy-Metadata", metadata.as_str()),
    ];
    for headers in [&made_up[..], &replayed[..]] {
        let r = get("/c", headers);
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains("route service signature is not valid"),
            "{}",
            r.body
        );
    }
    assert_eq!(seen(certs.path()).len(), 1, "neither reached the service");

    // Bound to a path route, the service sees every spelling of a path under it.
    d.paas_ok(&["map-route", "guarded", "localhost", "--hostname", "pathy"]);
    d.paas_ok(&[
        "map-route",
        "guarded",
        "localhost",
        "--hostname",
        "pathy",
        "--path",
        "/admin",
    ]);
    d.paas_ok(&[
        "bind-route-service",
        "localhost",
        "guard",
        "--hostname",
        "pathy",
        "--path",
        "/admin",
    ]);
    let pathy = |path: &str| get_with(d.router, "pathy.localhost", path, &[]).body;
    assert_eq!(
        pathy("/shop"),
        "route-service=none signature=absent path=/shop"
    );
    for spelling in [
        "/admin/x",
        "/%61dmin",
        "//admin",
        "/admin;p=1",
        "/shop/../admin",
    ] {
        // (Python's server reads `//admin` as `/admin` itself.)
        let body = pathy(spelling);
        assert!(
            body.starts_with("route-service=passed signature=absent path=/"),
            "{spelling}: {body}"
        );
    }
    assert_eq!(seen(certs.path()).len(), 6);

    // The signing key reaches routers and admins, never a tenant's listing.
    let listed = d.paas_ok(&["routes", "--json"]);
    assert!(listed.contains("route_service_key"), "{listed}");
    d.paas_ok(&["create-user", "dev", "dev-password"]);
    d.paas_ok(&["set-space-role", "dev", "default", "developer"]);
    let dev = d.login("dev", "dev-password");
    let theirs = d.paas_as(dev.path(), &["routes", "--json"]);
    let theirs = String::from_utf8_lossy(&theirs.stdout);
    assert!(theirs.contains(&url), "{theirs}");
    assert!(!theirs.contains("route_service_key"), "{theirs}");

    // While bound it stays a route service.
    let out = d.paas(&["delete-service", "guard"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unbind-route-service"));

    // A tenant's route service URL may not reach the host's neighbourhood.
    d.paas_ok(&["map-route", "guarded", "localhost", "--hostname", "inside"]);
    d.paas_ok(&[
        "create-user-provided-service",
        "sneaky",
        "-r",
        "https://127.0.0.2:9/",
    ]);
    d.paas_ok(&[
        "bind-route-service",
        "localhost",
        "sneaky",
        "--hostname",
        "inside",
    ]);
    let r = get_with(d.router, "inside.localhost", "/", &[]);
    assert_eq!(r.status, 502, "{}", r.body);
    assert!(
        r.body.contains("where the router sends no requests"),
        "{}",
        r.body
    );

    // Unbound, requests go straight to the app again.
    d.paas_ok(&[
        "unbind-route-service",
        "localhost",
        "guard",
        "--hostname",
        "guarded",
    ]);
    assert_eq!(
        get("/d", &[]).body,
        "route-service=none signature=absent path=/d"
    );
    assert_eq!(seen(certs.path()).len(), 6);
    d.paas_ok(&[
        "unbind-route-service",
        "localhost",
        "guard",
        "--hostname",
        "pathy",
        "--path",
        "/admin",
    ]);
    d.paas_ok(&["delete-service", "guard"]);
}
