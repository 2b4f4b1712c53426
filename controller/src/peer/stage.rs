//! `POST /stage`: a staging a controller without a cell asks this host to run. The
//! package and custom buildpacks are fetched by hash, the staging runs as a local one
//! does (the app's user namespace, its build cache on this host), and the droplet is
//! kept here and on a second host before the answer names it.

use std::sync::Arc;

use paas_api::state::{StageEvent, StageOrder};
use paas_api::LogStream;
use paas_runtime::IdMap;
use paas_stager::{Buildpack, StagingRequest};

use super::Peers;
use crate::api::body::NdjsonSender;

impl Peers {
    /// Runs `order`, sending its output lines and then how it ended on `out`.
    pub(super) async fn stage_for_peer(self: Arc<Self>, order: StageOrder, out: NdjsonSender) {
        let ended = match self.stage_order(&order, &out).await {
            Ok(e) => e,
            Err(e) => StageEvent::Failed {
                message: format!("{e:#}"),
                user_error: false,
                cf_exit_code: None,
            },
        };
        out.send(&ended).await;
    }

    async fn stage_order(
        &self,
        order: &StageOrder,
        out: &NdjsonSender,
    ) -> anyhow::Result<StageEvent> {
        let package = self.blob(&order.package).await?;
        let mut buildpacks: Vec<Buildpack> = Vec::new();
        for b in &order.buildpacks {
            let bp = match &b.sha256 {
                None => self
                    .kit
                    .shipped
                    .iter()
                    .find(|s| s.name == b.name)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("this host ships no buildpack {}", b.name))?,
                Some(sha) => {
                    self.blob(sha).await?;
                    crate::buildpacks::open_custom(&self.blobs, &self.kit.custom_dir, &b.name, sha)?
                }
            };
            buildpacks.push(bp);
        }
        let droplet_tmp = tempfile::Builder::new()
            .prefix("droplet-")
            .tempfile_in(self.blobs.tmp_dir())?
            .into_temp_path();
        let mut id = [0u8; 6];
        let _ = getrandom::fill(&mut id);
        let req = StagingRequest {
            id: hex::encode(id),
            app: order.app.clone(),
            package,
            buildpacks,
            detect: order.detect,
            start_command: order.start_command.clone(),
            env: order.env.clone(),
            stack: order
                .stack
                .clone()
                .unwrap_or_else(|| paas_runtime::stack::HOST.to_string()),
            memory: order.memory,
            disk: order.disk,
            timeout: std::time::Duration::from_secs(order.timeout_secs),
            droplet_out: droplet_tmp.to_path_buf(),
            cache_dir: Some(self.kit.caches_dir.join(order.app.as_str())),
            outbound: order.outbound.then(|| self.cell.outbound_resolv_conf()),
            id_map: Some(IdMap {
                host_base: order.id_base,
                size: IdMap::SIZE,
            }),
        };
        let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<(LogStream, String)>();
        let forward = {
            let out = out.clone();
            tokio::spawn(async move {
                while let Some((stream, line)) = log_rx.recv().await {
                    // Waits for the controller to take it: a slow one slows the build.
                    if !out.send(&StageEvent::Log { stream, line }).await {
                        return;
                    }
                }
            })
        };
        let staged = self.cell.stage(&req, &log_tx).await;
        drop(log_tx);
        let _ = forward.await;
        let staged = match staged {
            Ok(s) => s,
            Err(e) => {
                return Ok(StageEvent::Failed {
                    message: e.to_string(),
                    user_error: e.is_user_error(),
                    cf_exit_code: e.cf_exit_code(),
                })
            }
        };
        let droplet = match crate::platform::store_droplet(&self.blobs, &droplet_tmp).await {
            Ok(d) => d,
            Err(e) => {
                return Ok(StageEvent::Failed {
                    message: e.body.message,
                    user_error: true,
                    cf_exit_code: None,
                })
            }
        };
        drop(droplet_tmp);
        self.announce(&droplet).await?;
        if let Err(e) = self.keep_elsewhere(&droplet).await {
            tracing::warn!(%droplet, "the droplet is kept on this host only: {e:#}");
        }
        Ok(StageEvent::Staged {
            droplet,
            detected_buildpack: staged.info.detected_buildpack,
            start_command: staged.info.start_command,
            process_types: staged.info.process_types,
        })
    }
}
