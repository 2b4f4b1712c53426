//! The cluster's shared records (`paas_api::state`): cells and the instances they run,
//! as the cells report them, under each cell's lease, so a cell that stops renewing it
//! disappears, with its instances, a few seconds later; the instances the controller
//! placed on each cell; which hosts keep which blob; and the secret hosts share.

use std::time::Duration;

use paas_api::state::{
    self, ActualInstance, Assignment, BlobHolder, CellPresence, CertificateAuthority, ClusterSecret,
};
use paas_api::AppName;
use paas_kv::{Compare, Kv, LeaseId, Mirrored, Op, Txn};

use super::{decode, encode, Store, StoreError};

fn leased(key: String, value: Vec<u8>, lease: LeaseId) -> Txn {
    Txn::just(Op::Put {
        key,
        value,
        lease: Some(lease),
    })
}

impl Store {
    /// A new lease of `ttl`; keys put with it vanish when it is not renewed in time.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        Ok(self.kv.grant(ttl).await?)
    }

    pub async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        Ok(self.kv.keep_alive(lease).await?)
    }

    /// Ends the lease now: its cell and instances are gone at once.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        Ok(self.kv.revoke(lease).await?)
    }

    pub async fn put_cell(&self, cell: &CellPresence, lease: LeaseId) -> Result<(), StoreError> {
        let txn = leased(state::cell_key(&cell.id), encode(cell), lease);
        self.kv.txn(txn).await?;
        Ok(())
    }

    /// Every cell that is up, by id.
    pub async fn cells(&self) -> Result<Vec<CellPresence>, StoreError> {
        let (kvs, _) = self.kv.range(state::CELLS).await?;
        kvs.iter().map(decode).collect()
    }

    /// Records instance `id` as its cell sees it now.
    pub async fn put_actual(
        &self,
        id: &str,
        actual: &ActualInstance,
        lease: LeaseId,
    ) -> Result<(), StoreError> {
        let txn = leased(state::actual_key(&actual.app, id), encode(actual), lease);
        self.kv.txn(txn).await?;
        Ok(())
    }

    pub async fn delete_actual(&self, app: &AppName, id: &str) -> Result<(), StoreError> {
        self.kv.delete(&state::actual_key(app, id)).await?;
        Ok(())
    }
}

/// Placement: which cell runs which instance (`assigned/CELL/INSTANCE`), written by the
/// controller and followed by each cell.
impl Store {
    pub async fn assign(
        &self,
        cell: &str,
        instance: &str,
        what: &Assignment,
    ) -> Result<(), StoreError> {
        self.kv
            .put(&state::assigned_key(cell, instance), encode(what))
            .await?;
        Ok(())
    }

    /// Takes the instance off its cell, which stops it.
    pub async fn unassign(&self, cell: &str, instance: &str) -> Result<(), StoreError> {
        self.kv.delete(&state::assigned_key(cell, instance)).await?;
        Ok(())
    }

    /// Every placed instance: its cell, its id and what it runs.
    pub async fn assignments(&self) -> Result<Vec<(String, String, Assignment)>, StoreError> {
        let (kvs, _) = self.kv.range(state::ASSIGNED).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let Some((cell, id)) = kv
                .key
                .strip_prefix(state::ASSIGNED)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            out.push((cell.to_string(), id.to_string(), decode(kv)?));
        }
        Ok(out)
    }

    /// The ids of the instances placed on `cell`.
    pub async fn assigned_ids(
        &self,
        cell: &str,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let prefix = state::assigned_prefix(cell);
        let (kvs, _) = self.kv.range(&prefix).await?;
        Ok(kvs
            .iter()
            .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    /// Feeds `apply` every key under `prefix` and each change of them, forever (see
    /// [`paas_kv::mirror`]).
    pub async fn mirror(&self, prefix: &str, apply: impl FnMut(Mirrored<'_>)) {
        paas_kv::mirror(&self.kv, prefix, apply).await
    }
}

/// Blobs in a cluster: which hosts keep which blob, and the secret hosts fetch them with.
impl Store {
    /// Records that `host` keeps blob `sha256` and serves it at `peer`.
    pub async fn add_blob_holder(
        &self,
        sha256: &str,
        host: &str,
        peer: &str,
    ) -> Result<(), StoreError> {
        let holder = BlobHolder {
            peer: peer.to_string(),
        };
        self.kv
            .put(&state::blob_holder_key(sha256, host), encode(&holder))
            .await?;
        Ok(())
    }

    pub async fn remove_blob_holder(&self, sha256: &str, host: &str) -> Result<(), StoreError> {
        self.kv
            .delete(&state::blob_holder_key(sha256, host))
            .await?;
        Ok(())
    }

    /// The hosts that keep blob `sha256`, by host id.
    pub async fn blob_holders(
        &self,
        sha256: &str,
    ) -> Result<Vec<(String, BlobHolder)>, StoreError> {
        let prefix = format!("{}{sha256}/", state::BLOB_HOLDERS);
        let (kvs, _) = self.kv.range(&prefix).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in &kvs {
            let host = kv.key.strip_prefix(&prefix).unwrap_or_default();
            out.push((host.to_string(), decode(kv)?));
        }
        Ok(out)
    }

    /// The blobs `host` is recorded to keep, by SHA-256.
    pub async fn blobs_held_by(&self, host: &str) -> Result<Vec<(String, BlobHolder)>, StoreError> {
        let (kvs, _) = self.kv.range(state::BLOB_HOLDERS).await?;
        let mut out = Vec::new();
        for kv in &kvs {
            let Some((sha, h)) = kv
                .key
                .strip_prefix(state::BLOB_HOLDERS)
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            if h == host {
                out.push((sha.to_string(), decode(kv)?));
            }
        }
        Ok(out)
    }

    /// The cluster's secret: the one stored, or `made` if there is none yet (the first
    /// host to ask makes it; every later one gets that one).
    pub async fn cluster_secret(
        &self,
        made: impl FnOnce() -> anyhow::Result<ClusterSecret>,
    ) -> anyhow::Result<ClusterSecret> {
        self.first_of(state::CLUSTER_SECRET, made).await
    }

    /// The CA that issues every controller's API certificate: the one stored, or `made`
    /// if there is none yet.
    pub async fn api_ca(
        &self,
        made: impl FnOnce() -> anyhow::Result<CertificateAuthority>,
    ) -> anyhow::Result<CertificateAuthority> {
        self.first_of(state::API_CA, made).await
    }

    /// The admin token of the cluster: the one stored, or `mine` if there is none yet.
    pub async fn admin_token(&self, mine: &str) -> anyhow::Result<String> {
        self.first_of(state::ADMIN_TOKEN, || Ok(mine.to_string()))
            .await
    }

    /// The document at `key`, or `made` put there if there is none yet: whoever asks
    /// first decides, every later one gets that one.
    async fn first_of<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &str,
        made: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        if let Some(kv) = self.kv.get(key).await? {
            return Ok(decode(&kv)?);
        }
        let value = made()?;
        let put = Txn {
            when: vec![Compare::ModRevision(key.to_string(), 0)],
            then: vec![Op::Put {
                key: key.to_string(),
                value: encode(&value),
                lease: None,
            }],
            otherwise: vec![],
        };
        if self.kv.txn(put).await?.succeeded {
            return Ok(value);
        }
        let kv = self
            .kv
            .get(key)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{key} vanished as it was made"))?;
        Ok(decode(&kv)?)
    }
}

/// The controllers' leader (`leader`, under the leader's lease): the one that converges.
impl Store {
    /// Makes `me` the leader under `lease` if there is none; true if `me` leads now.
    pub async fn try_lead(&self, me: &str, lease: LeaseId) -> Result<bool, StoreError> {
        let take = Txn {
            when: vec![Compare::ModRevision(state::LEADER.to_string(), 0)],
            then: vec![Op::Put {
                key: state::LEADER.to_string(),
                value: me.as_bytes().to_vec(),
                lease: Some(lease),
            }],
            otherwise: vec![],
        };
        if self.kv.txn(take).await?.succeeded {
            return Ok(true);
        }
        Ok(self.leader().await?.as_deref() == Some(me))
    }

    /// The id of the controller that leads now, if one does.
    pub async fn leader(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .kv
            .get(state::LEADER)
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// Moves instance `id` from `from` to a new instance `new_id` on `to`, at once.
    pub async fn replace_assignment(
        &self,
        from: &str,
        id: &str,
        to: &str,
        new_id: &str,
        what: &Assignment,
    ) -> Result<(), StoreError> {
        let txn = Txn {
            when: vec![],
            then: vec![
                Op::Delete {
                    key: state::assigned_key(from, id),
                },
                Op::Put {
                    key: state::assigned_key(to, new_id),
                    value: encode(what),
                    lease: None,
                },
            ],
            otherwise: vec![],
        };
        self.kv.txn(txn).await?;
        Ok(())
    }
}

/// A key held under a lease of its own, renewed while held: a lock across controllers.
/// Dropping it releases the lock; a controller that dies releases it when the lease
/// expires.
pub struct Held {
    store: Store,
    lease: LeaseId,
    renewing: tokio::task::JoinHandle<()>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewing.abort();
        let (store, lease) = (self.store.clone(), self.lease);
        tokio::spawn(async move {
            let _ = store.revoke_lease(lease).await;
        });
    }
}

/// How long a lock outlives the last renewal by a controller that died holding it.
const LOCK_TTL: Duration = Duration::from_secs(10);

impl Store {
    /// Whether someone holds `key` now.
    pub async fn is_held(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.kv.get(key).await?.is_some())
    }

    /// Waits until `key` is free and takes it; see [`Held`].
    pub async fn hold(&self, key: &str, holder: &str) -> Result<Held, StoreError> {
        loop {
            let lease = self.grant_lease(LOCK_TTL).await?;
            let take = Txn {
                when: vec![Compare::ModRevision(key.to_string(), 0)],
                then: vec![Op::Put {
                    key: key.to_string(),
                    value: holder.as_bytes().to_vec(),
                    lease: Some(lease),
                }],
                otherwise: vec![],
            };
            if self.kv.txn(take).await?.succeeded {
                let store = self.clone();
                let renewing = tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LOCK_TTL / 4).await;
                        if let Err(e) = store.keep_alive(lease).await {
                            tracing::warn!("renewing a lock's lease: {e}");
                        }
                    }
                });
                return Ok(Held {
                    store: self.clone(),
                    lease,
                    renewing,
                });
            }
            let _ = self.revoke_lease(lease).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
