//! Hosts of a cluster serving each other blobs: the peer listener.
//!
//! A droplet is made on the host that staged it; a cell on another host fetches it from
//! a host that keeps it, checks its SHA-256, keeps it in its own blob store (cells cache
//! droplets by hash) and says so in the state store (`blob-holders/SHA/HOST`), so every
//! cell that runs an app is one more copy of its droplet.
//!
//! Between hosts, HTTPS on `--advertise-address` and the peer port, with the cluster's
//! secret (`paas_api::state::ClusterSecret`, made by the first host and kept in the
//! store): servers present its certificate, clients trust only that one (whatever
//! address they dial, they ask for [`PEER_SERVER_NAME`]) and send its token. Whoever
//! can read the state store can read this secret: etcd must be reachable by the
//! platform's hosts only, as it holds every app's environment too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::{header, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use paas_api::state::{ClusterSecret, PEER_SERVER_NAME};

use crate::blobs::Blobs;
use crate::cell::LocalCell;
use crate::logs::Logs;
use crate::store::Store;

mod server;
mod stage;
mod tasks;

/// The port peers listen on unless told otherwise (`--peer-port`).
pub const DEFAULT_PORT: u16 = 9444;
/// How long dialing a peer may take: a host that is gone must not hold a start up long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fetch may go without a byte before the peer is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest blob fetched (as large as a droplet may be).
const MAX_BLOB_BYTES: u64 = 4 << 30;
/// The longest line of a peer's NDJSON answer (a log line is at most 16 KiB; its JSON
/// may be several times that).
const MAX_LINE_BYTES: usize = 1 << 20;

/// Binds the peer listener: `--advertise-address` (or loopback) and `--peer-port`.
pub async fn bind(cfg: &crate::Config) -> anyhow::Result<tokio::net::TcpListener> {
    let ip = cfg
        .advertise_address
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
    let addr = SocketAddr::from((ip, cfg.peer_port));
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for the cluster's other hosts on {addr} (--peer-port)"))
}

/// This host among its peers.
pub struct Peers {
    /// This host's id (its cell id).
    host: String,
    /// Where this host serves blobs: `--advertise-address` and the peer port.
    addr: SocketAddr,
    token: String,
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    store: Store,
    blobs: Blobs,
    /// This host's cell, whose instances peers exec in, and its log folder, whose lines
    /// peers read.
    cell: Arc<LocalCell>,
    logs: Arc<Logs>,
    /// What stagings for peers use.
    kit: StagingKit,
    /// This host's platform, when it is a controller: what finishes the paused
    /// deployments it holds for the others (`POST /deployments/APP/...`).
    platform: std::sync::OnceLock<std::sync::Weak<crate::platform::Platform>>,
    /// The tasks this host's cell runs for controllers (`POST /tasks`), by id.
    tasks: std::sync::Mutex<std::collections::HashMap<String, Arc<crate::cell::task::RunningTask>>>,
}

/// What a host needs to stage for a controller without a cell.
pub struct StagingKit {
    /// The buildpacks packed into paasd, as installed in the data folder.
    pub shipped: Vec<paas_stager::Buildpack>,
    /// Where custom buildpacks are unpacked (`buildpacks/custom`).
    pub custom_dir: std::path::PathBuf,
    /// Where build caches are kept, one folder per app.
    pub caches_dir: std::path::PathBuf,
}

impl Peers {
    /// Reads (or, on the first host, makes) the cluster's secret.
    pub async fn open(
        store: Store,
        blobs: Blobs,
        cell: Arc<LocalCell>,
        logs: Arc<Logs>,
        kit: StagingKit,
        addr: SocketAddr,
    ) -> anyhow::Result<Arc<Self>> {
        let host = cell.id().to_string();
        let secret = store
            .cluster_secret(make_secret)
            .await
            .context("reading the cluster secret from the state store")?;
        let cert = rustls_pemfile::certs(&mut secret.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the cluster certificate")?;
        let key = rustls_pemfile::private_key(&mut secret.key_pem.as_bytes())
            .context("reading the cluster key")?
            .context("the cluster secret holds no key")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(cert.clone(), key)
            .context("loading the cluster certificate")?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        for c in cert {
            roots.add(c).context("trusting the cluster certificate")?;
        }
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let peers = Arc::new(Peers {
            host,
            addr,
            token: secret.token,
            client: Arc::new(client),
            server: Arc::new(server),
            store,
            blobs,
            cell,
            logs,
            kit,
            tasks: Default::default(),
            platform: Default::default(),
        });
        peers.readdress().await?;
        Ok(peers)
    }

    /// After a restart on another port or address: the blobs this host was recorded to
    /// keep are recorded at its new address (or dropped, if it no longer has them).
    async fn readdress(&self) -> anyhow::Result<()> {
        let held = self
            .store
            .blobs_held_by(&self.host)
            .await
            .context("reading which blobs this host keeps")?;
        let here = self.addr.to_string();
        for (sha, holder) in held {
            if !self.blobs.exists(&sha) {
                self.forget(&sha).await;
            } else if holder.peer != here {
                self.announce(&sha).await?;
            }
        }
        Ok(())
    }

    /// Where this host serves its peers.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// This host's controller, which finishes the paused deployments it holds.
    pub fn serve_platform(&self, platform: std::sync::Weak<crate::platform::Platform>) {
        let _ = self.platform.set(platform);
    }

    /// Has the controller at `addr` finish `app`'s paused deployment; its events.
    pub async fn continue_deployment(
        &self,
        addr: &str,
        app: &paas_api::AppName,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<paas_api::DeployEvent>> {
        let path = format!("/deployments/{app}/continue");
        let resp = self.request(addr, http::Method::POST, &path, None).await?;
        Ok(ndjson(resp))
    }

    /// Has the controller at `addr` take `app`'s paused deployment back.
    pub async fn cancel_deployment(
        &self,
        addr: &str,
        app: &paas_api::AppName,
    ) -> anyhow::Result<()> {
        let path = format!("/deployments/{app}/cancel");
        self.request(addr, http::Method::POST, &path, None)
            .await
            .map(drop)
    }

    /// Tells the cluster that this host keeps blob `sha256`.
    pub async fn announce(&self, sha256: &str) -> anyhow::Result<()> {
        self.store
            .add_blob_holder(sha256, &self.host, &self.addr.to_string())
            .await
            .with_context(|| format!("recording that this host keeps blob {sha256}"))
    }

    /// Tells the cluster that this host no longer keeps blob `sha256`.
    pub async fn forget(&self, sha256: &str) {
        if let Err(e) = self.store.remove_blob_holder(sha256, &self.host).await {
            tracing::warn!(blob = %sha256, "recording that this host dropped a blob: {e}");
        }
    }

    /// The local path of blob `sha256`, fetched from a host that keeps it first if this
    /// one does not.
    pub async fn blob(&self, sha256: &str) -> anyhow::Result<PathBuf> {
        if self.blobs.exists(sha256) {
            return Ok(self.blobs.path(sha256));
        }
        let holders = self
            .store
            .blob_holders(sha256)
            .await
            .context("finding the hosts that keep it")?;
        let mut why = Vec::new();
        for (host, holder) in holders.iter().filter(|(h, _)| *h != self.host) {
            match self.fetch(&holder.peer, sha256).await {
                Ok(()) => {
                    tracing::info!(blob = %sha256, from = %host, "fetched a blob");
                    if let Err(e) = self.announce(sha256).await {
                        tracing::warn!("{e:#}");
                    }
                    return Ok(self.blobs.path(sha256));
                }
                Err(e) => why.push(format!("{host} ({}): {e:#}", holder.peer)),
            }
        }
        if why.is_empty() {
            bail!("no host keeps blob {sha256}");
        }
        bail!(
            "no host that keeps blob {sha256} could send it: {}",
            why.join("; ")
        )
    }

    /// Fetches blob `sha256` from the peer at `addr` into the blob store.
    async fn fetch(&self, addr: &str, sha256: &str) -> anyhow::Result<()> {
        let resp = self
            .request(addr, http::Method::GET, &format!("/blobs/{sha256}"), None)
            .await?;
        let mut body = resp.into_body();
        let mut w = self.blobs.writer(MAX_BLOB_BYTES)?;
        loop {
            let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("it sent nothing for {} s", STALL_TIMEOUT.as_secs())
                })?;
            let Some(frame) = frame else { break };
            if let Ok(data) = frame?.into_data() {
                w.write(&data)?;
            }
        }
        let blobs = self.blobs.clone();
        let sha = sha256.to_string();
        tokio::task::spawn_blocking(move || blobs.commit_as(w, &sha)).await??;
        Ok(())
    }

    /// Has another host that is up keep blob `sha256` too (it fetches it from the hosts
    /// that keep it), so that losing one host loses no blob. Returns that host's id.
    pub async fn keep_elsewhere(&self, sha256: &str) -> anyhow::Result<String> {
        let holders = self.store.blob_holders(sha256).await?;
        let cells = self.store.cells().await?;
        let others: Vec<_> = cells
            .iter()
            .filter(|c| c.id != self.host && !holders.iter().any(|(h, _)| *h == c.id))
            .filter_map(|c| Some((c.id.clone(), c.peer.clone()?)))
            .collect();
        if holders.iter().any(|(h, _)| *h != self.host) {
            return Ok(holders
                .into_iter()
                .find(|(h, _)| *h != self.host)
                .map(|(h, _)| h)
                .unwrap_or_default());
        }
        let mut why = Vec::new();
        for (id, peer) in others {
            let asked = self
                .request(
                    &peer,
                    http::Method::POST,
                    &format!("/blobs/{sha256}/keep"),
                    None,
                )
                .await;
            match asked {
                Ok(_) => return Ok(id),
                Err(e) => why.push(format!("{id}: {e:#}")),
            }
        }
        if why.is_empty() {
            bail!("no other host is up to keep a second copy");
        }
        bail!("no other host kept a second copy: {}", why.join("; "))
    }

    /// The log lines the host at `addr` keeps of `app`, as they come: `which` of them.
    pub async fn logs(
        &self,
        addr: &str,
        app: &paas_api::AppName,
        which: crate::api::LogLines,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<paas_api::LogLine>> {
        let query = match which {
            crate::api::LogLines::Recent => String::new(),
            crate::api::LogLines::Follow => "?follow=true".to_string(),
            crate::api::LogLines::New => "?new=true".to_string(),
            crate::api::LogLines::Since(ms) => format!("?since={ms}"),
        };
        let path = format!("/logs/{app}{query}");
        let resp = self.request(addr, http::Method::GET, &path, None).await?;
        Ok(ndjson(resp))
    }

    /// Runs `command` in instance `id` on the cell at `addr`; its output as it comes.
    pub async fn exec(
        &self,
        addr: &str,
        id: &str,
        command: &[String],
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<paas_api::ExecEvent>> {
        let body = serde_json::to_vec(command)?;
        let resp = self
            .request(
                addr,
                http::Method::POST,
                &format!("/instances/{id}/exec"),
                Some(body),
            )
            .await?;
        Ok(ndjson(resp))
    }

    /// The instances the cell at `addr` runs, as it measures them now, by id.
    pub async fn usage(&self, addr: &str) -> anyhow::Result<crate::platform::placed::Usage> {
        let resp = self
            .request(addr, http::Method::GET, "/usage", None)
            .await?;
        let body = http_body_util::Limited::new(resp.into_body(), MAX_LINE_BYTES * 4)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok(serde_json::from_slice(&body)?)
    }

    /// Has the host at `addr` stage `order`; its output lines, then how it ended.
    pub async fn stage(
        &self,
        addr: &str,
        order: &paas_api::state::StageOrder,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<paas_api::state::StageEvent>> {
        let body = serde_json::to_vec(order)?;
        let resp = self
            .request(addr, http::Method::POST, "/stage", Some(body))
            .await?;
        Ok(ndjson(resp))
    }

    /// Has the cell at `addr` run task `order`; its output as it comes, then its end.
    /// For an attached task, `input` follows the order as the task's input.
    pub async fn run_task(
        &self,
        addr: &str,
        order: &paas_api::state::TaskOrder,
        input: Option<tokio::sync::mpsc::Receiver<Bytes>>,
    ) -> anyhow::Result<tokio::sync::mpsc::Receiver<paas_api::state::TaskEvent>> {
        let mut head = serde_json::to_vec(order)?;
        head.push(b'\n');
        let body = OrderThenInput {
            head: Some(Bytes::from(head)),
            input,
        };
        let resp = self
            .request_with(addr, http::Method::POST, "/tasks", body)
            .await?;
        Ok(ndjson(resp))
    }

    /// Resizes the terminal of task `id` on the cell at `addr`.
    pub async fn resize_task(
        &self,
        addr: &str,
        id: &str,
        size: paas_runtime::TtySize,
    ) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&paas_api::TerminalSize {
            rows: size.rows,
            cols: size.cols,
        })?;
        self.request(
            addr,
            http::Method::POST,
            &format!("/tasks/{id}/resize"),
            Some(body),
        )
        .await
        .map(drop)
    }

    /// Terminates task `id` on the cell at `addr`.
    pub async fn terminate_task(&self, addr: &str, id: &str) -> anyhow::Result<()> {
        self.request(
            addr,
            http::Method::POST,
            &format!("/tasks/{id}/terminate"),
            None,
        )
        .await
        .map(drop)
    }

    /// One request to the peer at `addr`; an answer other than 200 is an error.
    async fn request(
        &self,
        addr: &str,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let body = Full::new(Bytes::from(body.unwrap_or_default()));
        self.request_with(addr, method, path, body).await
    }

    /// [`Peers::request`] with a body of any kind (one that streams, too).
    async fn request_with<B>(
        &self,
        addr: &str,
        method: http::Method,
        path: &str,
        body: B,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))??;
        let name = rustls::pki_types::ServerName::try_from(PEER_SERVER_NAME)?;
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_rustls::TlsConnector::from(Arc::clone(&self.client)).connect(name, tcp),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!("no TLS handshake within {} s", CONNECT_TIMEOUT.as_secs())
        })??;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        // Ends when the response body has been read (or dropped).
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, PEER_SERVER_NAME)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .body(body)?;
        let resp = send.send_request(req).await?;
        if resp.status() != StatusCode::OK {
            bail!("it answered {}", resp.status());
        }
        Ok(resp)
    }
}

/// The documents of an NDJSON response, one per line, as they come; the channel ends
/// with the body (or at the first line that is not one).
fn ndjson<T: serde::de::DeserializeOwned + Send + 'static>(
    resp: http::Response<hyper::body::Incoming>,
) -> tokio::sync::mpsc::Receiver<T> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut body = resp.into_body();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Ok(doc) = serde_json::from_slice::<T>(&line) else {
                    return;
                };
                if tx.send(doc).await.is_err() {
                    return;
                }
            }
            if pending.len() > MAX_LINE_BYTES {
                return;
            }
        }
    });
    rx
}

/// A task order's request body: the order as one line, then the task's input as it
/// comes (none for a task nobody is at).
struct OrderThenInput {
    head: Option<Bytes>,
    input: Option<tokio::sync::mpsc::Receiver<Bytes>>,
}

impl hyper::body::Body for OrderThenInput {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if let Some(head) = self.head.take() {
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(head))));
        }
        match &mut self.input {
            Some(input) => input
                .poll_recv(cx)
                .map(|chunk| chunk.map(|c| Ok(hyper::body::Frame::data(c)))),
            None => std::task::Poll::Ready(None),
        }
    }
}

/// A new cluster secret: a random token and a self-signed certificate for
/// [`PEER_SERVER_NAME`].
fn make_secret() -> anyhow::Result<ClusterSecret> {
    let mut token = [0u8; 32];
    getrandom::fill(&mut token).map_err(|e| anyhow::anyhow!("reading random bytes: {e}"))?;
    let ck = rcgen::generate_simple_self_signed(vec![PEER_SERVER_NAME.to_string()])
        .context("making the cluster certificate")?;
    Ok(ClusterSecret {
        token: hex::encode(token),
        cert_pem: ck.cert.pem(),
        key_pem: ck.key_pair.serialize_pem(),
    })
}
