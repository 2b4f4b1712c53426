//! HTTPS: certificates chosen by SNI, swapped without a restart.
//!
//! Each certificate is kept under the domain it was given for; a client's server name
//! picks the certificate of the most specific domain it lies under (`a.shop.example.com`
//! takes `shop.example.com`'s before `example.com`'s), else the default certificate. A
//! wildcard certificate (`*.example.com`) is simply the one given for `example.com`.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificates a router serves: by domain, and a default for every other name.
#[derive(Default)]
pub struct Certificates {
    by_domain: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl Certificates {
    pub fn new(default: Option<Arc<CertifiedKey>>) -> Self {
        Certificates {
            by_domain: HashMap::new(),
            default,
        }
    }

    /// The certificates of `entries` (a certificate that cannot be used is logged and
    /// left out); `fixed`, if given, is the default whatever the entries say.
    pub fn from_entries(
        entries: &[paas_api::CertificateEntry],
        fixed: Option<Arc<CertifiedKey>>,
    ) -> Self {
        let key = |e: &paas_api::CertificateEntry| match certified_key(&e.cert_pem, &e.key_pem) {
            Ok(k) => Some(Arc::new(k)),
            Err(err) => {
                tracing::warn!(domain = %e.domain, "its certificate cannot be used: {err}");
                None
            }
        };
        let default = fixed.or_else(|| entries.iter().filter(|e| e.default).find_map(key));
        let mut certs = Certificates::new(default);
        for e in entries.iter().filter(|e| !e.default) {
            if let Some(k) = key(e) {
                certs.insert(&e.domain, k);
            }
        }
        certs
    }

    /// Serves `key` for `domain` (lowercase) and every name under it.
    pub fn insert(&mut self, domain: &str, key: Arc<CertifiedKey>) {
        self.by_domain.insert(domain.to_ascii_lowercase(), key);
    }

    /// The certificate for a client's server name.
    pub fn choose(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let by_domain = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            std::iter::once(0)
                .chain(name.match_indices('.').map(|(i, _)| i + 1))
                .find_map(|i| self.by_domain.get(&name[i..]))
                .cloned()
        });
        by_domain.or_else(|| self.default.clone())
    }
}

/// The rustls certificate resolver behind a router's HTTPS listener.
#[derive(Default)]
pub struct CertResolver {
    certs: ArcSwap<Certificates>,
}

impl std::fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertResolver")
    }
}

impl CertResolver {
    /// Replaces every certificate; handshakes already under way finish with the old.
    pub fn update(&self, certs: Certificates) {
        self.certs.store(Arc::new(certs));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.certs.load().choose(hello.server_name())
    }
}

/// A certificate chain and its private key from PEM text, checked to belong together.
pub fn certified_key(cert_pem: &str, key_pem: &str) -> Result<CertifiedKey, String> {
    let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate is not valid PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no CERTIFICATE block".into());
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("the key is not valid PEM: {e}"))?
        .ok_or("the key file holds no PRIVATE KEY block")?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("the private key cannot be used: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match()
        .map_err(|_| "the private key does not belong to the certificate".to_string())?;
    Ok(ck)
}

/// A TLS server configuration that asks `resolver` for certificates and offers HTTP/2
/// and HTTP/1.1 (ALPN).
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, String> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (ck.cert.pem(), ck.key_pair.serialize_pem())
    }

    #[test]
    fn the_most_specific_domain_wins_else_the_default() {
        let key = |names: &[&str]| {
            let (c, k) = pair(names);
            Arc::new(certified_key(&c, &k).unwrap())
        };
        let (default, shop, example) = (
            key(&["default"]),
            key(&["*.shop.example.com"]),
            key(&["*.example.com"]),
        );
        let mut certs = Certificates::new(Some(Arc::clone(&default)));
        certs.insert("shop.example.com", Arc::clone(&shop));
        certs.insert("Example.com", Arc::clone(&example));
        let chosen = |n: Option<&str>| certs.choose(n).unwrap();
        assert!(Arc::ptr_eq(&chosen(Some("a.shop.example.com")), &shop));
        assert!(Arc::ptr_eq(&chosen(Some("shop.example.com")), &shop));
        assert!(Arc::ptr_eq(&chosen(Some("WWW.example.com")), &example));
        assert!(Arc::ptr_eq(&chosen(Some("example.org")), &default));
        assert!(Arc::ptr_eq(&chosen(None), &default));
        assert!(Certificates::default().choose(Some("x")).is_none());
    }

    #[test]
    fn a_key_must_match_its_certificate() {
        let (cert, key) = pair(&["a.example.com"]);
        let (_, other_key) = pair(&["b.example.com"]);
        assert!(certified_key(&cert, &key).is_ok());
        let e = certified_key(&cert, &other_key).err().unwrap();
        assert!(e.contains("does not belong"), "{e}");
        assert!(certified_key("junk", &key)
            .err()
            .unwrap()
            .contains("no CERTIFICATE"));
        assert!(certified_key(&cert, "junk")
            .err()
            .unwrap()
            .contains("no PRIVATE KEY"));
    }
}
