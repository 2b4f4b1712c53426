//! Staging a package into a droplet: on this host (its runtime runs the staging
//! containers), or, for a controller of a cluster without the cell role, on a cell's host
//! through its peer listener (`peer/stage.rs`), which keeps the droplet (and has a second
//! host keep it) and answers with its hash.

use std::sync::Arc;

use paas_api::state::{StageEvent, StageOrder};
use paas_api::{DeployEvent, LogLine, LogStream};
use paas_stager::{Buildpack, StagingRequest};
use tokio::sync::mpsc::UnboundedSender;

use super::placed::pick_cell;
use super::{Cluster, Error, ErrorKind, Platform};
use crate::logs::now_ms;
use crate::store::AppRecord;

/// The largest droplet a staging may produce.
pub const MAX_DROPLET_BYTES: u64 = 4 << 30;

/// What a staging made.
pub(super) struct Staged {
    /// The droplet's SHA-256: kept on this host or the cell's, and on a second one.
    pub droplet: String,
    pub buildpack: String,
    pub start_command: String,
    pub process_types: std::collections::BTreeMap<String, String>,
    /// The stack it was built on.
    pub stack: String,
}

impl Platform {
    /// Stages `package` for `record` with `buildpacks`; output lines go to the app's log
    /// and to `events`.
    pub(super) async fn stage(
        self: &Arc<Self>,
        record: &AppRecord,
        package: &str,
        buildpacks: Vec<Buildpack>,
        detect: bool,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<Staged, Error> {
        match &self.cluster {
            Some(cluster) if !cluster.runs_instances => {
                self.stage_on_cell(cluster, record, package, &buildpacks, detect, events)
                    .await
            }
            _ => {
                self.stage_here(record, package, buildpacks, detect, events)
                    .await
            }
        }
    }

    async fn stage_here(
        self: &Arc<Self>,
        record: &AppRecord,
        package: &str,
        buildpacks: Vec<Buildpack>,
        detect: bool,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<Staged, Error> {
        let app = &record.name;
        let package_path = self.blob(package).await?;
        let mut id = [0u8; 6];
        let _ = getrandom::fill(&mut id);
        let droplet_tmp = tempfile::Builder::new()
            .prefix("droplet-")
            .tempfile_in(self.blobs.tmp_dir())
            .map_err(Error::internal)?
            .into_temp_path();
        let req = StagingRequest {
            id: hex::encode(id),
            app: app.clone(),
            package: package_path,
            buildpacks,
            detect,
            start_command: record.settings.command.clone(),
            env: record.env.clone().into_iter().collect(),
            stack: self.stack_of(record),
            memory: record.settings.memory,
            disk: Some(record.settings.disk_or_default()),
            timeout: self.staging_timeout,
            droplet_out: droplet_tmp.to_path_buf(),
            cache_dir: Some(self.caches_dir.join(app.as_str())),
            outbound: record
                .settings
                .outbound()
                .then(|| self.outbound_resolv_conf()),
            id_map: Some(
                self.id_map(app)
                    .await
                    .map_err(|e| Error::internal(format!("{e:#}")))?,
            ),
        };
        let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<(LogStream, String)>();
        let forward = {
            let (platform, record, events) = (Arc::clone(self), record.clone(), events.clone());
            tokio::spawn(async move {
                let mut network = false;
                while let Some((stream, line)) = log_rx.recv().await {
                    network |= wants_network(&line);
                    platform.staging_line(&record, stream, line, &events);
                }
                network
            })
        };
        let staged = self.cell.stage(&req, &log_tx).await;
        drop(log_tx);
        let network = forward.await.unwrap_or(false);
        let staged = staged.map_err(|e| {
            self.staging_failed(
                record,
                &e.to_string(),
                (e.is_user_error(), e.cf_exit_code()),
                network,
            )
        })?;
        let droplet = store_droplet(&self.blobs, &droplet_tmp).await?;
        drop(droplet_tmp);
        // A second host keeps it before a release names it.
        self.keep_twice(&droplet).await;
        Ok(Staged {
            droplet,
            buildpack: staged.info.detected_buildpack,
            start_command: staged.info.start_command,
            process_types: staged.info.process_types,
            stack: req.stack,
        })
    }

    /// Has a cell's host stage it: the one with the most memory free.
    async fn stage_on_cell(
        &self,
        cluster: &Cluster,
        record: &AppRecord,
        package: &str,
        buildpacks: &[Buildpack],
        detect: bool,
        events: &UnboundedSender<DeployEvent>,
    ) -> Result<Staged, Error> {
        let app = &record.name;
        let ids = self
            .id_map(app)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        let order = StageOrder {
            app: app.clone(),
            package: package.to_string(),
            buildpacks: buildpacks
                .iter()
                .map(|b| self.buildpacks.reference(b))
                .collect(),
            detect,
            start_command: record.settings.command.clone(),
            env: record.env.clone().into_iter().collect(),
            memory: record.settings.memory,
            disk: Some(record.settings.disk_or_default()),
            timeout_secs: self.staging_timeout.as_secs(),
            outbound: record.settings.outbound(),
            id_base: ids.host_base,
            stack: Some(self.stack_of(record)),
        };
        let mut cells = self.store.cells().await.map_err(Error::internal)?;
        let cell = pick_cell(&mut cells, record.settings.memory.bytes(), |_| 0)
            .and_then(|c| Some((c.id.clone(), c.peer.clone()?)))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Refused,
                    "no-room",
                    format!(
                        "no cell has {} MiB free to stage app {app}",
                        record.settings.memory.bytes() >> 20
                    ),
                    Some("see `paas cells`; add a cell (`paasd --roles cell`)"),
                )
            })?;
        let (cell, peer) = cell;
        self.staging_line(
            record,
            LogStream::Out,
            format!("staging on cell {cell} (this controller runs no cell)"),
            events,
        );
        let unreachable = |e: String| {
            Error::new(
                ErrorKind::Internal,
                "cell-unreachable",
                format!("staging on cell {cell}: {e}"),
                Some("see `paas cells`; push again"),
            )
        };
        let mut answers = cluster
            .peers
            .stage(&peer, &order)
            .await
            .map_err(|e| unreachable(format!("{e:#}")))?;
        let mut network = false;
        while let Some(event) = answers.recv().await {
            match event {
                StageEvent::Log { stream, line } => {
                    network |= wants_network(&line);
                    self.staging_line(record, stream, line, events)
                }
                StageEvent::Staged {
                    droplet,
                    detected_buildpack,
                    start_command,
                    process_types,
                } => {
                    return Ok(Staged {
                        droplet,
                        buildpack: detected_buildpack,
                        start_command,
                        process_types,
                        stack: self.stack_of(record),
                    })
                }
                StageEvent::Failed {
                    message,
                    user_error,
                    cf_exit_code,
                } => {
                    return Err(self.staging_failed(
                        record,
                        &message,
                        (user_error, cf_exit_code),
                        network,
                    ))
                }
            }
        }
        Err(unreachable(
            "the cell stopped answering before the staging ended".to_string(),
        ))
    }

    /// A line of staging output: to the app's log, and to the deployment's events.
    fn staging_line(
        &self,
        record: &AppRecord,
        stream: LogStream,
        line: String,
        events: &UnboundedSender<DeployEvent>,
    ) {
        self.logs.append(&record.name, "STG", stream, &line);
        let _ = events.send(DeployEvent::Log(LogLine {
            timestamp_ms: now_ms(),
            source: "STG".into(),
            stream,
            line,
        }));
    }

    /// The error a failed staging answers with (`staging-failed-CODE` when its
    /// buildpack gave Cloud Foundry's exit code), also written to the app's log.
    /// `network`: the build's output says it could not reach the network.
    fn staging_failed(
        &self,
        record: &AppRecord,
        why: &str,
        (user_error, cf_exit_code): (bool, Option<i32>),
        network: bool,
    ) -> Error {
        let kind = if user_error {
            ErrorKind::Refused
        } else {
            ErrorKind::Internal
        };
        let code = match cf_exit_code {
            Some(c) => format!("staging-failed-{c}"),
            None => "staging-failed".to_string(),
        };
        self.logs.append(
            &record.name,
            "STG",
            LogStream::Err,
            &format!("staging failed: {why}"),
        );
        let message = match cf_exit_code {
            Some(c) => format!("staging failed (code {c}): {why}"),
            None => format!("staging failed: {why}"),
        };
        let hint = (network && !record.settings.outbound()).then(|| {
            format!(
                "the build tried to reach the network, which staging has only for apps allowed to reach the world: `paas allow-outbound {}`, then push again; or vendor the dependencies (vendor/ wheels, a committed node_modules)",
                record.name
            )
        });
        Error::new(kind, &code, message, hint.as_deref())
    }
}

/// Whether a build's output line says it could not reach the network (no name server,
/// no route): what pip, npm, curl, go and bundler print when staging has no network.
fn wants_network(line: &str) -> bool {
    const SIGNS: [&str; 10] = [
        "Temporary failure in name resolution",
        "Name or service not known",
        "Could not resolve host",
        "getaddrinfo",
        "EAI_AGAIN",
        "ENOTFOUND",
        "Network is unreachable",
        "Failed to establish a new connection",
        "No matching distribution found",
        "dial tcp",
    ];
    SIGNS.iter().any(|s| line.contains(s))
}

/// Stores the droplet a staging wrote at `path` as a blob, refusing one that is too
/// large; returns its SHA-256.
pub async fn store_droplet(
    blobs: &crate::blobs::Blobs,
    path: &std::path::Path,
) -> Result<String, Error> {
    let (blobs, path) = (blobs.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > MAX_DROPLET_BYTES {
            return Err(format!(
                "the droplet is {} MiB, more than the {} MiB allowed",
                size >> 20,
                MAX_DROPLET_BYTES >> 20
            ));
        }
        blobs.put_file(&path).map_err(|e| e.to_string())
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| Error::new(ErrorKind::Refused, "droplet-refused", e, None))
}
