//! User-provided service instances at `services/NAME`, and each app's bindings (the
//! names of the services bound to it, in the order they were bound) in its document.

use paas_api::AppName;
use paas_kv::Kv;
use serde::{Deserialize, Serialize};

use super::{decode, encode, guarded, keys, put, Store, StoreError, CAS_TRIES};

/// A service instance as stored: with its credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDoc {
    pub name: String,
    pub guid: String,
    pub credentials: serde_json::Value,
    #[serde(default)]
    pub syslog_drain_url: Option<String>,
    #[serde(default)]
    pub route_service_url: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The space it belongs to; services from before spaces are in the default one.
    #[serde(default = "super::default_space")]
    pub space: String,
}

impl Store {
    /// Every service instance, by name.
    pub async fn services(&self) -> Result<Vec<ServiceDoc>, StoreError> {
        let (kvs, _) = self.kv.range(keys::SERVICES).await?;
        kvs.iter().map(decode).collect()
    }

    pub async fn service(&self, name: &str) -> Result<Option<ServiceDoc>, StoreError> {
        match self.kv.get(&keys::service(name)).await? {
            Some(kv) => Ok(Some(decode(&kv)?)),
            None => Ok(None),
        }
    }

    /// Creates `doc`; `false` if a service of its name exists.
    pub async fn create_service(&self, doc: &ServiceDoc) -> Result<bool, StoreError> {
        let key = keys::service(&doc.name);
        let txn = guarded(&key, 0, vec![put(key.clone(), encode(doc))]);
        Ok(self.kv.txn(txn).await?.succeeded)
    }

    /// Changes service `name` with `change`; `None` if there is none of that name.
    pub async fn update_service(
        &self,
        name: &str,
        mut change: impl FnMut(&mut ServiceDoc),
    ) -> Result<Option<ServiceDoc>, StoreError> {
        let key = keys::service(name);
        for _ in 0..CAS_TRIES {
            let Some(kv) = self.kv.get(&key).await? else {
                return Ok(None);
            };
            let mut doc: ServiceDoc = decode(&kv)?;
            change(&mut doc);
            let txn = guarded(&key, kv.mod_revision, vec![put(key.clone(), encode(&doc))]);
            if self.kv.txn(txn).await?.succeeded {
                return Ok(Some(doc));
            }
        }
        Err(StoreError::Contended(format!("service {name}")))
    }

    /// Deletes service `name`; `false` if there was none.
    pub async fn delete_service(&self, name: &str) -> Result<bool, StoreError> {
        let key = keys::service(name);
        if self.kv.get(&key).await?.is_none() {
            return Ok(false);
        }
        self.kv.delete(&key).await?;
        Ok(true)
    }

    /// Binds (`true`) or unbinds service `service` to `app`; answers whether that
    /// changed anything.
    pub async fn set_binding(
        &self,
        app: &AppName,
        service: &str,
        bound: bool,
    ) -> Result<bool, StoreError> {
        self.update_app(app, |doc| {
            let had = doc.services.iter().any(|s| s == service);
            match (had, bound) {
                (false, true) => doc.services.push(service.to_string()),
                (true, false) => doc.services.retain(|s| s != service),
                _ => return false,
            }
            true
        })
        .await?
        .ok_or_else(|| StoreError::NoApp(app.clone()))
    }
}
