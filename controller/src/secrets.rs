//! The API's TLS certificate, the router's default certificate and the admin token,
//! made at first start.
//!
//! Both are written to a temporary file with mode 0600 and renamed into place, so a crash
//! never leaves a half-written secret, and no other user can read them at any moment.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

pub const CERT_FILE: &str = "api-cert.pem";
pub const KEY_FILE: &str = "api-key.pem";
pub const TOKEN_FILE: &str = "admin-token";
pub const ROUTER_CERT_FILE: &str = "router-cert.pem";
pub const ROUTER_KEY_FILE: &str = "router-key.pem";
/// In a cluster: this controller's own API certificate, issued by the cluster's API CA
/// (whose certificate is then what `api-cert.pem` holds, for clients to trust).
pub const LEAF_CERT_FILE: &str = "api-leaf-cert.pem";
pub const LEAF_KEY_FILE: &str = "api-leaf-key.pem";
/// The subject of the cluster's API CA.
const API_CA_NAME: &str = "paas cluster API CA";

/// Writes `data` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} into place", tmp.display()))
}

/// The router's default HTTPS certificate and key (PEM), for `domain` and `*.domain`:
/// self-signed and made at first start, or whatever an operator put in its place.
pub fn load_or_create_router_cert(dir: &Path, domain: &str) -> anyhow::Result<(String, String)> {
    let (cert_path, key_path) = (dir.join(ROUTER_CERT_FILE), dir.join(ROUTER_KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        let ck =
            rcgen::generate_simple_self_signed(vec![domain.to_string(), format!("*.{domain}")])
                .context("making the router's certificate")?;
        write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
        fs::write(&cert_path, ck.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        tracing::info!(
            "made a self-signed certificate for *.{domain}: {}",
            cert_path.display()
        );
    }
    let read = |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    Ok((read(&cert_path)?, read(&key_path)?))
}

/// Loads the API's certificate and key, creating a self-signed pair for `localhost`,
/// `127.0.0.1` and the listen address when there is none.
pub fn load_or_create_tls(
    dir: &Path,
    listen: &SocketAddr,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert_path.exists() || !key_path.exists() {
        let names = api_names(&[listen.ip()]);
        let ck = rcgen::generate_simple_self_signed(names).context("making the API certificate")?;
        write_private(&key_path, ck.key_pair.serialize_pem().as_bytes())?;
        // The certificate is public: clients need it to trust the API.
        fs::write(&cert_path, ck.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
        tracing::info!(
            "made a self-signed API certificate: {}",
            cert_path.display()
        );
    }
    server_config(&fs::read(&cert_path)?, &fs::read(&key_path)?)
        .with_context(|| format!("loading {} and {}", cert_path.display(), key_path.display()))
}

/// The names an API certificate is made for: `localhost`, loopback, the host's name,
/// and the addresses it is reached at.
fn api_names(addresses: &[std::net::IpAddr]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    for ip in addresses {
        if !ip.is_unspecified() && !ip.is_loopback() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    if let Ok(host) = nix::unistd::gethostname() {
        if let Some(h) = host.to_str().filter(|h| !h.is_empty()) {
            names.push(h.to_string());
        }
    }
    names
}

/// A TLS server configuration from PEM: a certificate chain (leaf first) and its key.
fn server_config(chain_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut &*chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("reading the certificate")?;
    let key = rustls_pemfile::private_key(&mut &*key_pem)
        .context("reading the key")?
        .context("no private key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("choosing TLS versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("loading the API certificate and key")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A new API CA for a cluster: certificate and key, PEM.
pub fn make_api_ca() -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate().context("making the API CA's key")?;
    let ca = api_ca_params()?
        .self_signed(&key)
        .context("making the API CA")?;
    Ok((ca.pem(), key.serialize_pem()))
}

fn api_ca_params() -> anyhow::Result<rcgen::CertificateParams> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, API_CA_NAME);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

/// In a cluster, every controller's API certificate is issued by the cluster's API CA
/// (`ca_cert_pem`, `ca_key_pem`: one for the cluster, in the state store), and
/// `api-cert.pem` holds that CA's certificate: a client that trusts it (`--ca-cert
/// api-cert.pem` of any controller) trusts every controller. This controller's own
/// certificate (for `localhost`, loopback, its host name and `addresses`) is issued at
/// the first start in the cluster, or again when the CA or the addresses change.
pub fn cluster_api_tls(
    dir: &Path,
    addresses: &[std::net::IpAddr],
    ca_cert_pem: &str,
    ca_key_pem: &str,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (leaf_path, leaf_key_path) = (dir.join(LEAF_CERT_FILE), dir.join(LEAF_KEY_FILE));
    let names = api_names(addresses);
    let issued_here = fs::read_to_string(dir.join(CERT_FILE)).ok().as_deref() == Some(ca_cert_pem)
        && fs::read_to_string(dir.join("api-leaf-names")).ok() == Some(names.join(","));
    if !issued_here || !leaf_path.exists() || !leaf_key_path.exists() {
        let ca_key = rcgen::KeyPair::from_pem(ca_key_pem).context("reading the API CA's key")?;
        // The same subject and key as the stored CA certificate: what a leaf's issuer
        // and signature are checked against.
        let ca = api_ca_params()?
            .self_signed(&ca_key)
            .context("loading the API CA")?;
        let key = rcgen::KeyPair::generate().context("making the API key")?;
        let leaf = rcgen::CertificateParams::new(names.clone())?
            .signed_by(&key, &ca, &ca_key)
            .context("issuing the API certificate")?;
        write_private(&leaf_key_path, key.serialize_pem().as_bytes())?;
        fs::write(&leaf_path, format!("{}{ca_cert_pem}", leaf.pem()))
            .with_context(|| format!("writing {}", leaf_path.display()))?;
        fs::write(dir.join("api-leaf-names"), names.join(","))?;
        // Public: what clients trust.
        fs::write(dir.join(CERT_FILE), ca_cert_pem)
            .with_context(|| format!("writing {}", dir.join(CERT_FILE).display()))?;
        tracing::info!(names = %names.join(","), "issued this controller's API certificate from the cluster's API CA ({} is that CA now)", dir.join(CERT_FILE).display());
    }
    server_config(&fs::read(&leaf_path)?, &fs::read(&leaf_key_path)?).with_context(|| {
        format!(
            "loading {} and {}",
            leaf_path.display(),
            leaf_key_path.display()
        )
    })
}

/// Loads the admin token, creating a random one when there is none.
pub fn load_or_create_token(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(TOKEN_FILE);
    if let Ok(t) = fs::read_to_string(&path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
    let token = hex::encode(raw);
    write_private(&path, format!("{token}\n").as_bytes())?;
    tracing::info!("made the admin token: {}", path.display());
    Ok(token)
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn token_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = load_or_create_token(dir.path()).unwrap();
        let t2 = load_or_create_token(dir.path()).unwrap();
        assert_eq!(t1, t2);
        assert_eq!(t1.len(), 64);
        let mode = fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn certificate_is_made_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = "127.0.0.1:9443".parse().unwrap();
        load_or_create_tls(dir.path(), &addr).unwrap();
        let pem = fs::read_to_string(dir.path().join(CERT_FILE)).unwrap();
        load_or_create_tls(dir.path(), &addr).unwrap();
        assert_eq!(pem, fs::read_to_string(dir.path().join(CERT_FILE)).unwrap());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
