//! Desired state: apps and their releases, routes and domains, in SQLite.
//!
//! The database runs in WAL mode with `synchronous=FULL`: a write the API acknowledged
//! survives a crash of the daemon or the host. Calls are short and made under a
//! `std::sync::Mutex`; none waits on anything but SQLite itself.

use std::path::Path;
use std::sync::Mutex;

use paas_api::{AppEvent, AppName, AppSettings};
use rusqlite::{params, Connection, OptionalExtension};

mod routes;
pub use routes::{Domain, MapError, RouteRow, RouteSettings};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database holds invalid data for app {app}: {detail}")]
    Corrupt { app: String, detail: String },
    #[error("making the database file private: {0}")]
    Permissions(#[source] std::io::Error),
}

/// A stored app.
#[derive(Debug, Clone)]
pub struct AppRecord {
    pub name: AppName,
    pub guid: String,
    pub settings: AppSettings,
    pub release: Option<Release>,
}

/// What runs: a droplet with its start command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub id: i64,
    pub version: i64,
    pub droplet: String,
    pub package: String,
    pub buildpack: String,
    pub start_command: String,
}

pub struct Store {
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY,
    guid TEXT NOT NULL,
    settings TEXT NOT NULL,
    release_id INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS releases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    droplet TEXT NOT NULL,
    package TEXT NOT NULL,
    buildpack TEXT NOT NULL,
    start_command TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS releases_by_app ON releases (app, version);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    instance INTEGER,
    exit_code INTEGER,
    description TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_app ON events (app, id);
CREATE TABLE IF NOT EXISTS app_stopped (
    app TEXT PRIMARY KEY
);
-- Each app's range of host user ids, by slot. AUTOINCREMENT: a slot is never handed out
-- again, so a new app never gets ids that files of a deleted one may still carry.
CREATE TABLE IF NOT EXISTS id_slots (
    slot INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS app_env (
    app TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (app, key)
);
CREATE TABLE IF NOT EXISTS routes (
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    app TEXT,
    balance TEXT NOT NULL DEFAULT 'round-robin',
    max_body INTEGER,
    PRIMARY KEY (host, path)
);
CREATE INDEX IF NOT EXISTS routes_by_app ON routes (app);
CREATE TABLE IF NOT EXISTS domains (
    name TEXT PRIMARY KEY,
    cert_pem TEXT,
    key_pem TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS buildpacks (
    position INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL,
    shipped INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
";

/// A buildpack as stored; its position is its place in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildpackRow {
    pub name: paas_api::BuildpackName,
    pub enabled: bool,
    pub shipped: bool,
    pub sha256: String,
}

/// Events kept per app; older ones are dropped as new ones arrive.
const EVENTS_KEPT: i64 = 500;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Every app's environment is in here: made 0600 before SQLite opens it (its
        // journal files take the same mode).
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(StoreError::Permissions)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(StoreError::Permissions)?;
        }
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch(SCHEMA)?;
        Ok(Store { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the app, or changes its settings. Returns the stored record.
    pub fn put_app(&self, name: &AppName, settings: &AppSettings) -> Result<AppRecord, StoreError> {
        let json = serde_json::to_string(settings).map_err(|e| StoreError::Corrupt {
            app: name.to_string(),
            detail: e.to_string(),
        })?;
        let guid = new_guid();
        self.db().execute(
            "INSERT INTO apps (name, guid, settings, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            params![name.as_str(), guid, json, now()],
        )?;
        self.app(name)?.ok_or_else(|| StoreError::Corrupt {
            app: name.to_string(),
            detail: "vanished after being written".into(),
        })
    }

    pub fn app(&self, name: &AppName) -> Result<Option<AppRecord>, StoreError> {
        let db = self.db();
        let row = db
            .query_row(
                "SELECT a.name, a.guid, a.settings, r.id, r.version, r.droplet, r.package, r.buildpack, r.start_command
                 FROM apps a LEFT JOIN releases r ON r.id = a.release_id WHERE a.name = ?1",
                params![name.as_str()],
                row_to_parts,
            )
            .optional()?;
        row.map(parts_to_record).transpose()
    }

    pub fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT a.name, a.guid, a.settings, r.id, r.version, r.droplet, r.package, r.buildpack, r.start_command
             FROM apps a LEFT JOIN releases r ON r.id = a.release_id ORDER BY a.name",
        )?;
        let rows = stmt.query_map([], row_to_parts)?;
        rows.map(|r| parts_to_record(r?)).collect()
    }

    /// Records a new release of `app`; [`Store::set_release`] makes it the current one
    /// once its instances are healthy.
    pub fn add_release(
        &self,
        app: &AppName,
        droplet: &str,
        package: &str,
        buildpack: &str,
        start_command: &str,
    ) -> Result<Release, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM releases WHERE app = ?1",
            params![app.as_str()],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO releases (app, version, droplet, package, buildpack, start_command, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![app.as_str(), version, droplet, package, buildpack, start_command, now()],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Release {
            id,
            version,
            droplet: droplet.to_string(),
            package: package.to_string(),
            buildpack: buildpack.to_string(),
            start_command: start_command.to_string(),
        })
    }

    /// Makes release `id` the one `app` runs.
    pub fn set_release(&self, app: &AppName, id: i64) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE apps SET release_id = ?1, updated_at = ?2 WHERE name = ?3",
            params![id, now(), app.as_str()],
        )?;
        Ok(())
    }

    /// Marks the app stopped (it is not started after a restart of paasd) or not.
    pub fn set_stopped(&self, app: &AppName, stopped: bool) -> Result<(), StoreError> {
        let db = self.db();
        if stopped {
            db.execute(
                "INSERT OR IGNORE INTO app_stopped (app) VALUES (?1)",
                params![app.as_str()],
            )?;
        } else {
            db.execute(
                "DELETE FROM app_stopped WHERE app = ?1",
                params![app.as_str()],
            )?;
        }
        Ok(())
    }

    /// The app's slot of host user ids, made at its first use.
    pub fn id_slot(&self, app: &AppName) -> Result<u32, StoreError> {
        let db = self.db();
        db.execute(
            "INSERT OR IGNORE INTO id_slots (app) VALUES (?1)",
            params![app.as_str()],
        )?;
        let slot: i64 = db.query_row(
            "SELECT slot FROM id_slots WHERE app = ?1",
            params![app.as_str()],
            |r| r.get(0),
        )?;
        u32::try_from(slot).map_err(|_| StoreError::Corrupt {
            app: app.to_string(),
            detail: format!("user id slot {slot}"),
        })
    }

    pub fn is_stopped(&self, app: &AppName) -> Result<bool, StoreError> {
        let n: i64 = self.db().query_row(
            "SELECT COUNT(*) FROM app_stopped WHERE app = ?1",
            params![app.as_str()],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Every release of the app, newest first.
    pub fn releases(&self, app: &AppName) -> Result<Vec<Release>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT id, version, droplet, package, buildpack, start_command FROM releases WHERE app = ?1 ORDER BY version DESC",
        )?;
        let rows = stmt.query_map(params![app.as_str()], |r| {
            Ok(Release {
                id: r.get(0)?,
                version: r.get(1)?,
                droplet: r.get(2)?,
                package: r.get(3)?,
                buildpack: r.get(4)?,
                start_command: r.get(5)?,
            })
        })?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    /// Droplets that no app needs any more: referenced only by releases older than each
    /// app's newest `keep`, and by no app's current release.
    pub fn unneeded_droplets(&self, keep: i64) -> Result<Vec<String>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "WITH ranked AS (
                 SELECT droplet, ROW_NUMBER() OVER (PARTITION BY app ORDER BY version DESC) AS rn
                 FROM releases)
             SELECT DISTINCT droplet FROM ranked
             WHERE droplet NOT IN (SELECT droplet FROM ranked WHERE rn <= ?1)
               AND droplet NOT IN (SELECT r.droplet FROM apps a JOIN releases r ON r.id = a.release_id)",
        )?;
        let rows = stmt.query_map(params![keep], |r| r.get(0))?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    /// Release `version` of the app.
    pub fn release(&self, app: &AppName, version: i64) -> Result<Option<Release>, StoreError> {
        Ok(self
            .releases(app)?
            .into_iter()
            .find(|r| r.version == version))
    }

    /// The app's own environment variables.
    pub fn env(
        &self,
        app: &AppName,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare("SELECT key, value FROM app_env WHERE app = ?1")?;
        let rows = stmt.query_map(params![app.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<Result<_, _>>().map_err(StoreError::from)
    }

    /// Sets (`Some`) or removes (`None`) variables, all in one transaction.
    pub fn update_env(
        &self,
        app: &AppName,
        changes: &std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        for (k, v) in changes {
            match v {
                Some(v) => tx.execute(
                    "INSERT INTO app_env (app, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT(app, key) DO UPDATE SET value = excluded.value",
                    params![app.as_str(), k, v],
                )?,
                None => tx.execute(
                    "DELETE FROM app_env WHERE app = ?1 AND key = ?2",
                    params![app.as_str(), k],
                )?,
            };
        }
        tx.commit()?;
        Ok(())
    }

    /// Every buildpack, in position order.
    pub fn buildpacks(&self) -> Result<Vec<BuildpackRow>, StoreError> {
        let db = self.db();
        let mut stmt =
            db.prepare("SELECT name, enabled, shipped, sha256 FROM buildpacks ORDER BY position")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, enabled, shipped, sha256) = row?;
            let name = paas_api::BuildpackName::parse(&name).map_err(|e| StoreError::Corrupt {
                app: format!("buildpack {name}"),
                detail: e.to_string(),
            })?;
            out.push(BuildpackRow {
                name,
                enabled,
                shipped,
                sha256,
            });
        }
        Ok(out)
    }

    /// Replaces the buildpack list with `rows`, in order, in one transaction.
    pub fn save_buildpacks(&self, rows: &[BuildpackRow]) -> Result<(), StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        tx.execute("DELETE FROM buildpacks", [])?;
        for (i, r) in rows.iter().enumerate() {
            tx.execute(
                "INSERT INTO buildpacks (position, name, enabled, shipped, sha256) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i as i64 + 1, r.name.as_str(), r.enabled, r.shipped, r.sha256],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records an event of `app`, keeping the newest [`EVENTS_KEPT`].
    pub fn add_event(&self, app: &AppName, e: &AppEvent) -> Result<(), StoreError> {
        let db = self.db();
        db.execute(
            "INSERT INTO events (app, timestamp_ms, kind, instance, exit_code, description)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                app.as_str(),
                e.timestamp_ms as i64,
                e.kind,
                e.instance,
                e.exit_code,
                e.description
            ],
        )?;
        db.execute(
            "DELETE FROM events WHERE app = ?1 AND id <= (SELECT MAX(id) FROM events WHERE app = ?1) - ?2",
            params![app.as_str(), EVENTS_KEPT],
        )?;
        Ok(())
    }

    /// The app's events, oldest first.
    pub fn events(&self, app: &AppName) -> Result<Vec<AppEvent>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(
            "SELECT timestamp_ms, kind, instance, exit_code, description FROM events WHERE app = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![app.as_str()], |r| {
            Ok(AppEvent {
                timestamp_ms: r.get::<_, i64>(0)? as u64,
                kind: r.get(1)?,
                instance: r.get(2)?,
                exit_code: r.get(3)?,
                description: r.get(4)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::from)
    }

    /// Deletes the app and its releases. Its routes are deleted with it when
    /// `delete_routes`, else left unmapped (as `cf delete` without `-r` does). Returns
    /// false if there was no such app.
    pub fn delete_app(&self, app: &AppName, delete_routes: bool) -> Result<bool, StoreError> {
        let mut db = self.db();
        let tx = db.transaction()?;
        if delete_routes {
            tx.execute("DELETE FROM routes WHERE app = ?1", params![app.as_str()])?;
        } else {
            tx.execute(
                "UPDATE routes SET app = NULL WHERE app = ?1",
                params![app.as_str()],
            )?;
        }
        tx.execute("DELETE FROM releases WHERE app = ?1", params![app.as_str()])?;
        tx.execute("DELETE FROM events WHERE app = ?1", params![app.as_str()])?;
        tx.execute("DELETE FROM app_env WHERE app = ?1", params![app.as_str()])?;
        // A new app of the same name gets a new slot: ids are never shared over time.
        tx.execute("DELETE FROM id_slots WHERE app = ?1", params![app.as_str()])?;
        tx.execute(
            "DELETE FROM app_stopped WHERE app = ?1",
            params![app.as_str()],
        )?;
        let n = tx.execute("DELETE FROM apps WHERE name = ?1", params![app.as_str()])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

type Parts = (
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn row_to_parts(r: &rusqlite::Row<'_>) -> rusqlite::Result<Parts> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn parts_to_record(p: Parts) -> Result<AppRecord, StoreError> {
    let (name, guid, settings, id, version, droplet, package, buildpack, start) = p;
    let corrupt = |detail: String| StoreError::Corrupt {
        app: name.clone(),
        detail,
    };
    let app = AppName::parse(&name).map_err(|e| corrupt(e.to_string()))?;
    let settings: AppSettings =
        serde_json::from_str(&settings).map_err(|e| corrupt(e.to_string()))?;
    let release = match (id, version, droplet, package, buildpack, start) {
        (
            Some(id),
            Some(version),
            Some(droplet),
            Some(package),
            Some(buildpack),
            Some(start_command),
        ) => Some(Release {
            id,
            version,
            droplet,
            package,
            buildpack,
            start_command,
        }),
        _ => None,
    };
    Ok(AppRecord {
        name: app,
        guid,
        settings,
        release,
    })
}

/// A random version-4 UUID, as Cloud Foundry's GUIDs are.
pub fn new_guid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use paas_api::MemorySize;

    pub(super) fn settings(instances: u32) -> AppSettings {
        AppSettings {
            instances,
            memory: MemorySize::parse("256M").unwrap(),
            buildpacks: vec![],
            command: None,
            health_check: Default::default(),
            start_timeout_secs: None,
            disk: None,
            outbound: None,
        }
    }

    #[test]
    fn apps_and_releases_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paas.db");
        let name = AppName::parse("web").unwrap();
        {
            let s = Store::open(&path).unwrap();
            let created = s.put_app(&name, &settings(1)).unwrap();
            let updated = s.put_app(&name, &settings(3)).unwrap();
            assert_eq!(created.guid, updated.guid, "updating keeps the guid");
            let r1 = s
                .add_release(&name, "d1", "p1", "python", "python3 app.py")
                .unwrap();
            let r2 = s
                .add_release(&name, "d2", "p1", "python", "python3 app.py")
                .unwrap();
            assert_eq!((r1.version, r2.version), (1, 2));
            assert!(
                s.app(&name).unwrap().unwrap().release.is_none(),
                "not current until set"
            );
            s.set_release(&name, r2.id).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let app = s.app(&name).unwrap().unwrap();
        assert_eq!(app.settings.instances, 3);
        assert_eq!(app.release.unwrap().droplet, "d2");
        assert_eq!(s.apps().unwrap().len(), 1);
        assert!(s.delete_app(&name, true).unwrap());
        assert!(s.app(&name).unwrap().is_none());
        assert!(!s.delete_app(&name, true).unwrap());
    }

    #[test]
    fn events_are_kept_in_order_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("paas.db")).unwrap();
        let name = AppName::parse("web").unwrap();
        s.put_app(&name, &settings(1)).unwrap();
        for i in 0..(EVENTS_KEPT + 3) {
            let e = AppEvent {
                timestamp_ms: i as u64,
                kind: "crash".into(),
                instance: Some(0),
                exit_code: Some(i as i32),
                description: format!("crash {i}"),
            };
            s.add_event(&name, &e).unwrap();
        }
        let events = s.events(&name).unwrap();
        assert_eq!(events.len() as i64, EVENTS_KEPT);
        assert_eq!(
            events.last().unwrap().exit_code,
            Some((EVENTS_KEPT + 2) as i32)
        );
        assert_eq!(events[0].description, "crash 3");
        s.delete_app(&name, true).unwrap();
        assert!(s.events(&name).unwrap().is_empty());
    }

    #[test]
    fn guids_are_uuid_v4() {
        let g = new_guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
    }
}
