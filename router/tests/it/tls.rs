//! HTTPS: the certificate is chosen by SNI, and the app hears the request came over TLS.

use std::net::SocketAddr;
use std::sync::Arc;

use paas_router::tls::{certified_key, Certificates};
use paas_router::{Backend, RouteTable, Router};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Pem {
    cert: String,
    key: String,
}

fn self_signed(names: &[&str]) -> Pem {
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    Pem {
        cert: ck.cert.pem(),
        key: ck.key_pair.serialize_pem(),
    }
}

async fn tls_router(table: RouteTable, certs: Certificates) -> SocketAddr {
    tls_router_with(paas_router::RouterConfig::default(), table, certs).await
}

async fn tls_router_with(
    config: paas_router::RouterConfig,
    table: RouteTable,
    certs: Certificates,
) -> SocketAddr {
    let r = Arc::new(Router::with_config(config));
    r.update(table);
    r.certificates().update(certs);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { r.run_tls(l, std::future::pending()).await.unwrap() });
    addr
}

fn client_config(trusted: &Pem, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let der: CertificateDer<'static> = rustls_pemfile::certs(&mut trusted.cert.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    roots.add(der).unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// GET / over TLS with SNI `host`, trusting only `trusted`; the response, or the error.
async fn get(addr: SocketAddr, host: &str, trusted: &Pem) -> Result<String, String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(trusted, &[]));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let mut s = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn each_domain_gets_its_certificate_by_sni_and_others_the_default() {
    let app = crate::backend("app").await;
    let mut table = RouteTable::new();
    table.insert("shop.a.test", "shop", vec![Backend::new(app, 0)]);
    table.insert("www.b.test", "www", vec![Backend::new(app, 0)]);
    table.insert("other.test", "other", vec![Backend::new(app, 0)]);
    let (a, b, default) = (
        self_signed(&["*.a.test"]),
        self_signed(&["*.b.test"]),
        self_signed(&["other.test"]),
    );
    let key = |p: &Pem| Arc::new(certified_key(&p.cert, &p.key).unwrap());
    let mut certs = Certificates::new(Some(key(&default)));
    certs.insert("a.test", key(&a));
    certs.insert("b.test", key(&b));
    let addr = tls_router(table, certs).await;

    let shop = get(addr, "shop.a.test", &a).await.unwrap();
    assert!(shop.starts_with("HTTP/1.1 200"), "{shop}");
    assert!(shop.contains("x-forwarded-proto: https"), "{shop}");
    assert!(get(addr, "www.b.test", &b)
        .await
        .unwrap()
        .contains("200 OK"));
    assert!(get(addr, "other.test", &default)
        .await
        .unwrap()
        .contains("200 OK"));
    // The wrong certificate for a name is refused by the client: SNI chose another.
    let e = get(addr, "www.b.test", &a).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    let e = get(addr, "other.test", &b).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
}

#[tokio::test]
async fn a_client_that_stalls_in_the_handshake_is_dropped() {
    let addr = tls_router(RouteTable::new(), Certificates::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    // Half a ClientHello record header, then nothing.
    s.write_all(&[0x16, 0x03]).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(std::time::Duration::from_secs(30), s.read(&mut buf))
        .await
        .expect("the router kept a stalled handshake open for 30 s");
    assert_eq!(n.unwrap_or(0), 0);
}

#[tokio::test]
async fn alpn_h2_over_tls_is_served_as_http2() {
    let app = crate::backend("app").await;
    let mut table = RouteTable::new();
    table.insert("shop.a.test", "shop", vec![Backend::new(app, 0)]);
    let cert = self_signed(&["*.a.test"]);
    let certs = Certificates::new(Some(Arc::new(
        certified_key(&cert.cert, &cert.key).unwrap(),
    )));
    let addr = tls_router(table, certs).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(&cert, &[b"h2", b"http/1.1"]));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("shop.a.test").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (status, body) = crate::h2::h2_get(tls, "https://shop.a.test/over-h2").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("x-forwarded-proto: https"),
        "{body}"
    );
}

// Before: a client got a handshake (and its requests served) whatever it already held.
#[tokio::test]
async fn a_tls_connection_over_the_per_client_cap_is_closed_before_its_handshake() {
    let app = crate::backend("app").await;
    let mut table = RouteTable::new();
    table.insert("shop.a.test", "shop", vec![Backend::new(app, 0)]);
    let cert = self_signed(&["*.a.test"]);
    let certs = Certificates::new(Some(Arc::new(
        certified_key(&cert.cert, &cert.key).unwrap(),
    )));
    let config = paas_router::RouterConfig {
        max_connections_per_client: 1,
        ..Default::default()
    };
    let addr = tls_router_with(config, table, certs).await;
    let connector = tokio_rustls::TlsConnector::from(client_config(&cert, &[]));
    let name = ServerName::try_from("shop.a.test").unwrap();
    let held = connector
        .connect(name.clone(), TcpStream::connect(addr).await.unwrap())
        .await
        .expect("the first connection is served");
    let second = connector
        .connect(name, TcpStream::connect(addr).await.unwrap())
        .await;
    assert!(second.is_err(), "a second connection got its handshake");
    drop(held);
    crate::eventually(
        "a TLS connection served after the first closed",
        std::time::Duration::from_secs(5),
        || async {
            let resp = get(addr, "shop.a.test", &cert).await.ok()?;
            resp.starts_with("HTTP/1.1 200").then_some(())
        },
    )
    .await;
}
