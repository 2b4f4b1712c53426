//! Tasks: one document per task at `tasks/GUID/SEQUENCE`, written by the host that runs
//! it (when it starts and when it ends), numbered per app by `task-seq/GUID`.

use paas_api::{AppName, TaskSummary};

use paas_kv::Kv;

use super::{decode, encode, guarded, keys, put, Store, StoreError, CAS_TRIES};

/// How long a task that ended stays listed: Cloud Foundry keeps them a month.
pub const TASKS_KEPT_MS: u64 = 30 * 24 * 3600 * 1000;

impl Store {
    /// Records `task` as the app's next one: its sequence number is set here. Tasks that
    /// ended more than [`TASKS_KEPT_MS`] before `task` started are removed.
    pub async fn add_task(
        &self,
        app: &AppName,
        mut task: TaskSummary,
    ) -> Result<TaskSummary, StoreError> {
        let (doc, _) = self
            .app_doc(app)
            .await?
            .ok_or_else(|| StoreError::NoApp(app.clone()))?;
        let seq_key = keys::task_seq(&doc.guid);
        let mut added = None;
        for _ in 0..CAS_TRIES {
            let (seq, revision) = match self.kv.get(&seq_key).await? {
                Some(kv) => (decode::<u64>(&kv)?, kv.mod_revision),
                None => (0, 0),
            };
            task.sequence = seq + 1;
            let ops = vec![
                put(seq_key.clone(), encode(&task.sequence)),
                put(keys::task(&doc.guid, task.sequence), encode(&task)),
            ];
            if self
                .kv
                .txn(guarded(&seq_key, revision, ops))
                .await?
                .succeeded
            {
                added = Some(task);
                break;
            }
        }
        let task = added.ok_or_else(|| StoreError::Contended(format!("the tasks of app {app}")))?;
        let cutoff = task.started_ms.saturating_sub(TASKS_KEPT_MS);
        for old in self.tasks_of(&doc.guid).await? {
            if old.ended_ms.is_some_and(|e| e < cutoff) {
                self.kv.delete(&keys::task(&doc.guid, old.sequence)).await?;
            }
        }
        Ok(task)
    }

    /// Writes what became of `task` (it ended); a task of an app deleted meanwhile is
    /// not written back, even over a task of the same number of a new app of its name.
    pub async fn update_task(&self, app: &AppName, task: &TaskSummary) -> Result<(), StoreError> {
        let Some((doc, _)) = self.app_doc(app).await? else {
            return Ok(());
        };
        let key = keys::task(&doc.guid, task.sequence);
        let Some(kv) = self.kv.get(&key).await? else {
            return Ok(());
        };
        if decode::<TaskSummary>(&kv)?.id != task.id {
            return Ok(());
        }
        let txn = guarded(&key, kv.mod_revision, vec![put(key.clone(), encode(task))]);
        self.kv.txn(txn).await?;
        Ok(())
    }

    /// The app's tasks, oldest first.
    pub async fn tasks(&self, app: &AppName) -> Result<Vec<TaskSummary>, StoreError> {
        match self.app_doc(app).await? {
            Some((doc, _)) => self.tasks_of(&doc.guid).await,
            None => Ok(Vec::new()),
        }
    }

    /// Task `sequence` of the app.
    pub async fn task(
        &self,
        app: &AppName,
        sequence: u64,
    ) -> Result<Option<TaskSummary>, StoreError> {
        let Some((doc, _)) = self.app_doc(app).await? else {
            return Ok(None);
        };
        match self.kv.get(&keys::task(&doc.guid, sequence)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    async fn tasks_of(&self, guid: &str) -> Result<Vec<TaskSummary>, StoreError> {
        let (kvs, _) = self.kv.range(&keys::tasks(guid)).await?;
        kvs.iter().map(decode).collect()
    }
}
