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
        let mut names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        if !listen.ip().is_unspecified() && !listen.ip().is_loopback() {
            names.push(listen.ip().to_string());
        }
        if let Ok(host) = nix::unistd::gethostname() {
            if let Some(h) = host.to_str().filter(|h| !h.is_empty()) {
                names.push(h.to_string());
            }
        }
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
    let certs = rustls_pemfile::certs(&mut fs::read(&cert_path)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key = rustls_pemfile::private_key(&mut fs::read(&key_path)?.as_slice())
        .with_context(|| format!("reading {}", key_path.display()))?
        .with_context(|| format!("{} holds no private key", key_path.display()))?;
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
