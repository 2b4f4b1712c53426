//! A small HTTPS client for the paas API: one TLS connection per request.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use paas_api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Target;
use crate::exit::{self, Failure};

pub struct Client {
    /// `https://host:port`, without a trailing slash.
    base: String,
    host: String,
    port: u16,
    token: String,
    /// The space new things are made in and lists show (`paas target -s`).
    space: Option<String>,
    tls: tokio_rustls::TlsConnector,
}

impl Client {
    pub fn new(target: &Target) -> Result<Self, Failure> {
        let bad = |why: &str| {
            Failure::usage(format!("API address {:?} is invalid: {why}", target.api))
                .with_hint("give it as https://HOST:PORT, e.g. https://127.0.0.1:9443")
        };
        let base: Uri = target
            .api
            .trim_end_matches('/')
            .parse()
            .map_err(|_| bad("it is not a URL"))?;
        if base.scheme_str() != Some("https") {
            return Err(bad("it must start with https://"));
        }
        let host = base
            .host()
            .ok_or_else(|| bad("it has no host"))?
            .to_string();
        let port = base.port_u16().unwrap_or(443);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| Failure::general(format!("setting up TLS: {e}")))?;
        let mut config = if target.skip_ssl_validation {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            if let Some(pem) = &target.ca_cert_pem {
                for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
                    let cert = cert
                        .map_err(|e| Failure::usage(format!("reading the CA certificate: {e}")))?;
                    roots.add(cert).map_err(|e| {
                        Failure::usage(format!("the CA certificate cannot be used: {e}"))
                    })?;
                }
            }
            if roots.is_empty() {
                return Err(Failure::usage("no certificate to trust the API with")
                    .with_hint("give --ca-cert FILE (paasd writes api-cert.pem in its data folder), or --skip-ssl-validation"));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Client {
            base: target.api.trim_end_matches('/').to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            token: target.token.clone(),
            space: target.space.clone(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends a request and returns the response whatever its status.
    /// `path` with the targeted space added to its query, for requests that make
    /// something in a space or list one space's things.
    pub fn in_space(&self, path: &str) -> String {
        match &self.space {
            None => path.to_string(),
            Some(space) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}space={space}")
            }
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Response<Incoming>, Failure> {
        self.send_body(method, path, Full::new(body), content_type)
            .await
    }

    /// Sends a request with any body (a streamed upload, for one) and returns the
    /// response whatever its status.
    pub async fn send_body<B>(
        &self,
        method: Method,
        path: &str,
        body: B,
        content_type: &str,
    ) -> Result<Response<Incoming>, Failure>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let unreachable = |e: String| {
            Failure::general(format!("cannot reach the API at {}: {e}", self.base))
                .with_hint("is paasd running? check `paas login` or PAAS_API")
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| Failure::usage(format!("API host {}: {e}", self.host)))?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| {
            Failure::general(format!("TLS with the API at {} failed: {e}", self.base))
                .with_hint("trust the API's certificate with --ca-cert FILE (paasd's api-cert.pem)")
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, content_type)
            .header(
                header::USER_AGENT,
                concat!("paas-cli/", env!("CARGO_PKG_VERSION")),
            )
            .body(body)
            .map_err(|e| Failure::general(format!("building the request: {e}")))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| unreachable(e.to_string()))
    }

    /// Sends a request and decodes a JSON answer; an error status becomes a [`Failure`].
    pub async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Failure> {
        let bytes = match body {
            Some(b) => {
                Bytes::from(serde_json::to_vec(b).map_err(|e| Failure::general(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let resp = self.send(method, path, bytes, "application/json").await?;
        let resp = check(resp, exit::GENERAL).await?;
        let body = read_all(resp).await?;
        serde_json::from_slice(&body)
            .map_err(|e| Failure::general(format!("the API answered something unexpected: {e}")))
    }
}

impl Client {
    /// Deletes what `path` names; an error status becomes a [`Failure`].
    pub async fn delete(&self, path: &str) -> Result<(), Failure> {
        let resp = self
            .send(Method::DELETE, path, Bytes::new(), "application/json")
            .await?;
        check(resp, exit::GENERAL).await.map(drop)
    }

    /// Every item of a list, following the API's pages (`Link: <...>; rel="next"`).
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>, Failure> {
        let mut all = Vec::new();
        let mut next = Some(path.to_string());
        // A bound, in case a broken server links pages in a circle.
        for _ in 0..100_000 {
            let Some(path) = next.take() else {
                return Ok(all);
            };
            let resp = self
                .send(Method::GET, &path, Bytes::new(), "application/json")
                .await?;
            let resp = check(resp, exit::GENERAL).await?;
            next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(paas_api::next_page_link);
            let body = read_all(resp).await?;
            let page: Vec<T> = serde_json::from_slice(&body).map_err(|e| {
                Failure::general(format!("the API answered something unexpected: {e}"))
            })?;
            all.extend(page);
        }
        Err(Failure::general(
            "the API's list did not end after 100,000 pages",
        ))
    }
}

/// Turns an error status into a [`Failure`] with `code`, using the API's error envelope.
pub async fn check(resp: Response<Incoming>, code: i32) -> Result<Response<Incoming>, Failure> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_all(resp).await.unwrap_or_default();
    let err: ErrorBody = serde_json::from_slice(&body).unwrap_or_else(|_| ErrorBody {
        code: "unknown".into(),
        message: format!("the API answered {status}"),
        hint: None,
    });
    let code = if status == StatusCode::UNAUTHORIZED {
        exit::GENERAL
    } else {
        code
    };
    Err(Failure::api(code, err))
}

pub async fn read_all(resp: Response<Incoming>) -> Result<Bytes, Failure> {
    resp.into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| Failure::general(format!("reading the API's answer: {e}")))
}

/// Reads a newline-delimited JSON stream, calling `each` for every line as it arrives.
pub async fn ndjson<T: DeserializeOwned>(
    resp: Response<Incoming>,
    mut each: impl FnMut(T) -> bool,
) -> Result<(), Failure> {
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Failure::general(format!("the API stream broke off: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            if line.len() <= 1 {
                continue;
            }
            let item: T = serde_json::from_slice(&line).map_err(|e| {
                Failure::general(format!("the API sent a line that is not understood: {e}"))
            })?;
            if !each(item) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Accepts any certificate: `--skip-ssl-validation`. Signatures are still checked, so
/// the connection is encrypted, but the peer is not authenticated.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
