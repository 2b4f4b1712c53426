//! The one-time import of a database from before the state store.
//!
//! paasd used to keep apps, releases, events, environments, user id slots, routes,
//! domains and buildpacks in tables of its own in `paas.db`. At the first open by a
//! paasd with the state store, those rows are written as the documents of the layout
//! in [`super`], and `/paas/schema` marks the import done. The old tables are left as
//! they are (nothing reads them again), so a failed import loses nothing; an import cut
//! short runs again whole at the next start, writing the same documents.

use std::collections::BTreeMap;
use std::path::Path;

use paas_api::{AppEvent, AppName, AppSettings, Route};
use paas_kv::{Backend, Kv, Txn};
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    encode, keys, put, AppDoc, BuildpackRow, EventDoc, Release, StoreError, StoredDomain,
    StoredRoute,
};

/// The version `/paas/schema` holds once the import is done (or was not needed).
const SCHEMA_VERSION: &str = "1";

/// Imports the old tables of the database at `path` into `kv`, once.
pub(super) async fn import(kv: &Backend, path: &Path, domain: &str) -> Result<(), StoreError> {
    if kv.get(keys::SCHEMA).await?.is_some() {
        return Ok(());
    }
    let (path, domain) = (path.to_path_buf(), domain.to_string());
    let docs = tokio::task::spawn_blocking(move || read(&path, &domain))
        .await
        .map_err(|e| corrupt("the old tables", e))??;
    if !docs.is_empty() {
        tracing::info!(
            keys = docs.len(),
            "importing the apps, routes and buildpacks of an older paasd into the state store"
        );
    }
    for batch in docs.chunks(paas_kv::MAX_TXN_OPS) {
        let ops = batch
            .iter()
            .map(|(k, v)| put(k.clone(), v.clone()))
            .collect();
        kv.txn(Txn {
            then: ops,
            ..Txn::default()
        })
        .await?;
    }
    kv.put(keys::SCHEMA, SCHEMA_VERSION.into()).await?;
    Ok(())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: format!("{what} of the database from before the state store"),
        detail: e.to_string(),
    }
}

fn sql(e: rusqlite::Error) -> StoreError {
    corrupt("the old tables", e)
}

/// Every document the old tables make, as (key, value); none when there are no old
/// tables (a new data folder).
fn read(path: &Path, domain: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let db = Connection::open(path).map_err(sql)?;
    let has_table = |name: &str| -> Result<bool, StoreError> {
        db.query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()
        .map(|r| r.is_some())
        .map_err(sql)
    };
    if !has_table("apps")? {
        return Ok(Vec::new());
    }
    let mut docs = Vec::new();

    // Releases by their old row id, for the apps' current ones.
    let mut releases: BTreeMap<i64, (String, Release)> = BTreeMap::new();
    let mut stmt = db
        .prepare(
            "SELECT id, app, version, droplet, package, buildpack, start_command FROM releases",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                Release {
                    version: r.get(2)?,
                    droplet: r.get(3)?,
                    package: r.get(4)?,
                    buildpack: r.get(5)?,
                    start_command: r.get(6)?,
                    process_types: BTreeMap::new(),
                    config: None,
                    stack: None,
                },
            ))
        })
        .map_err(sql)?;
    for row in rows {
        let (id, app, release) = row.map_err(sql)?;
        releases.insert(id, (app, release));
    }

    let stopped: Vec<String> = column(&db, "SELECT app FROM app_stopped")?;
    let mut slots: BTreeMap<String, u32> = BTreeMap::new();
    for (slot, app) in pairs::<i64, String>(&db, "SELECT slot, app FROM id_slots")? {
        slots.insert(
            app,
            u32::try_from(slot).map_err(|e| corrupt("a user id slot", e))?,
        );
    }
    // AUTOINCREMENT's high-water mark: slots of deleted apps are not handed out again.
    let slot_high: i64 = db
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'id_slots'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?
        .unwrap_or(0);
    let slot_high = slot_high.max(slots.values().copied().max().map_or(0, i64::from));
    docs.push((keys::NEXT_ID_SLOT.to_string(), encode(&(slot_high + 1))));
    let mut env: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (app, (k, v)) in
        pairs::<String, (String, String)>(&db, "SELECT app, key, value FROM app_env")?
    {
        env.entry(app).or_default().insert(k, v);
    }

    let mut guids: BTreeMap<String, String> = BTreeMap::new();
    let mut stmt = db
        .prepare("SELECT name, guid, settings, release_id, created_at, updated_at FROM apps")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(sql)?;
    for row in rows {
        let (name, guid, settings, release_id, created_at, updated_at) = row.map_err(sql)?;
        AppName::parse(&name).map_err(|e| corrupt("an app's name", e))?;
        let settings: AppSettings =
            serde_json::from_str(&settings).map_err(|e| corrupt("an app's settings", e))?;
        let doc = AppDoc {
            guid: guid.clone(),
            settings,
            release: release_id
                .and_then(|id| releases.get(&id))
                .map(|(_, r)| r.clone()),
            stopped: stopped.contains(&name),
            env: env.remove(&name).unwrap_or_default(),
            id_slot: slots.get(&name).copied(),
            services: Vec::new(),
            space: super::default_space(),
            packages: Vec::new(),
            deployed_at: None,
            created_at,
            updated_at,
        };
        docs.push((keys::app(&name), encode(&doc)));
        guids.insert(name, guid);
    }
    for (app, release) in releases.values() {
        if let Some(guid) = guids.get(app) {
            docs.push((keys::release(guid, release.version), encode(release)));
        }
    }

    let mut stmt = db
        .prepare("SELECT app, timestamp_ms, kind, instance, exit_code, description FROM events ORDER BY id")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                AppEvent {
                    timestamp_ms: r.get::<_, i64>(1)? as u64,
                    kind: r.get(2)?,
                    instance: r.get(3)?,
                    exit_code: r.get(4)?,
                    description: r.get(5)?,
                },
            ))
        })
        .map_err(sql)?;
    let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
    let mut events = Vec::new();
    for row in rows {
        let (app, event) = row.map_err(sql)?;
        let Some(guid) = guids.get(&app) else {
            continue;
        };
        let seq = seqs.entry(guid.clone()).or_default();
        events.push((
            keys::event(guid, *seq),
            encode(&EventDoc { seq: *seq, event }),
        ));
        *seq += 1;
    }
    // The ring keeps the newest: a later event of the same slot replaces an older one.
    let mut by_key: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    by_key.extend(events);
    docs.extend(by_key);
    for (guid, seq) in seqs {
        docs.push((keys::event_seq(&guid), encode(&seq)));
    }

    // Before routes were stored (user_version 0) every app answered at NAME.DOMAIN.
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sql)?;
    let mut routes: Vec<StoredRoute> = Vec::new();
    if version < 1 {
        for name in guids.keys() {
            let route = Route::from_parts(&format!("{name}.{domain}"), "")
                .map_err(|e| corrupt("an app's old route", e))?;
            routes.push(StoredRoute {
                route,
                app: Some(AppName::parse(name).map_err(|e| corrupt("an app's name", e))?),
                balance: Default::default(),
                max_body: None,
                space: None,
                route_service: None,
            });
        }
    }
    if has_table("routes")? {
        let mut stmt = db
            .prepare("SELECT host, path, app, balance, max_body FROM routes")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(sql)?;
        for row in rows {
            let (host, path, app, balance, max_body) = row.map_err(sql)?;
            routes.push(StoredRoute {
                route: Route::from_parts(&host, &path).map_err(|e| corrupt("a route", e))?,
                app: app
                    .as_deref()
                    .map(AppName::parse)
                    .transpose()
                    .map_err(|e| corrupt("a route's app", e))?,
                balance: paas_api::Balance::parse(&balance).map_err(|e| corrupt("a route", e))?,
                max_body: max_body.and_then(|n| u64::try_from(n).ok()),
                space: None,
                route_service: None,
            });
        }
    }
    for row in routes {
        docs.push((paas_api::state::route_key(&row.route), encode(&row)));
    }

    if has_table("domains")? {
        let mut stmt = db
            .prepare("SELECT name, cert_pem, key_pem FROM domains")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredDomain {
                    name: r.get(0)?,
                    cert_pem: r.get(1)?,
                    key_pem: r.get(2)?,
                    space: None,
                })
            })
            .map_err(sql)?;
        for d in rows {
            let d = d.map_err(sql)?;
            docs.push((paas_api::state::domain_key(&d.name), encode(&d)));
        }
    }

    if has_table("buildpacks")? {
        let mut list = Vec::new();
        let mut stmt = db
            .prepare("SELECT name, enabled, shipped, sha256 FROM buildpacks ORDER BY position")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(sql)?;
        for row in rows {
            let (name, enabled, shipped, sha256) = row.map_err(sql)?;
            list.push(BuildpackRow {
                name: paas_api::BuildpackName::parse(&name)
                    .map_err(|e| corrupt("a buildpack's name", e))?,
                enabled,
                shipped,
                sha256,
            });
        }
        docs.push((keys::BUILDPACKS.to_string(), encode(&list)));
    }
    // A key written twice (a route from the old default and from the routes table) keeps
    // its last value; one transaction may not write a key twice.
    let mut unique: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    unique.extend(docs);
    Ok(unique.into_iter().collect())
}

fn column(db: &Connection, query: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = db.prepare(query).map_err(sql)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

fn pairs<A: rusqlite::types::FromSql, B: FromRowTail>(
    db: &Connection,
    query: &str,
) -> Result<Vec<(A, B)>, StoreError> {
    let mut stmt = db.prepare(query).map_err(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, B::from_row_tail(r)?)))
        .map_err(sql)?;
    rows.collect::<Result<_, _>>().map_err(sql)
}

/// The columns after the first of a row, for [`pairs`].
trait FromRowTail: Sized {
    fn from_row_tail(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

impl FromRowTail for String {
    fn from_row_tail(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        r.get(1)
    }
}

impl FromRowTail for (String, String) {
    fn from_row_tail(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((r.get(1)?, r.get(2)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RouteSettings, Store};

    /// The tables of the last paasd before the state store, as it made them.
    const OLD_SCHEMA: &str = "
        CREATE TABLE apps (name TEXT PRIMARY KEY, guid TEXT NOT NULL, settings TEXT NOT NULL,
            release_id INTEGER, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
        CREATE TABLE releases (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL,
            version INTEGER NOT NULL, droplet TEXT NOT NULL, package TEXT NOT NULL,
            buildpack TEXT NOT NULL, start_command TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL,
            timestamp_ms INTEGER NOT NULL, kind TEXT NOT NULL, instance INTEGER,
            exit_code INTEGER, description TEXT NOT NULL);
        CREATE TABLE app_stopped (app TEXT PRIMARY KEY);
        CREATE TABLE id_slots (slot INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL UNIQUE);
        CREATE TABLE app_env (app TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (app, key));
        CREATE TABLE routes (host TEXT NOT NULL, path TEXT NOT NULL, app TEXT,
            balance TEXT NOT NULL DEFAULT 'round-robin', max_body INTEGER, PRIMARY KEY (host, path));
        CREATE TABLE domains (name TEXT PRIMARY KEY, cert_pem TEXT, key_pem TEXT,
            created_at INTEGER NOT NULL);
        CREATE TABLE buildpacks (position INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            enabled INTEGER NOT NULL, shipped INTEGER NOT NULL, sha256 TEXT NOT NULL);
    ";

    fn old_database(path: &Path, user_version: i64) {
        let db = Connection::open(path).unwrap();
        db.execute_batch(OLD_SCHEMA).unwrap();
        let settings = serde_json::to_string(&crate::store::tests::settings(2)).unwrap();
        db.execute_batch(&format!(
            "INSERT INTO apps VALUES ('web', 'g-web', '{settings}', 2, 1, 1);
             INSERT INTO apps VALUES ('api', 'g-api', '{settings}', NULL, 1, 1);
             INSERT INTO releases VALUES (1, 'web', 1, 'd1', 'p1', 'python', 'python3 a.py', 1);
             INSERT INTO releases VALUES (2, 'web', 2, 'd2', 'p1', 'python', 'python3 b.py', 2);
             INSERT INTO events VALUES (1, 'web', 10, 'deploy', NULL, NULL, 'first');
             INSERT INTO events VALUES (2, 'web', 20, 'crash', 0, 137, 'second');
             INSERT INTO app_stopped VALUES ('api');
             INSERT INTO id_slots VALUES (1, 'gone');
             INSERT INTO id_slots VALUES (2, 'web');
             DELETE FROM id_slots WHERE app = 'gone';
             INSERT INTO app_env VALUES ('web', 'GREETING', 'hi');
             INSERT INTO domains VALUES ('example.com', 'C', 'K', 1);
             INSERT INTO buildpacks VALUES (1, 'python', 1, 1, 'abc');
             PRAGMA user_version = {user_version};"
        ))
        .unwrap();
        if user_version >= 1 {
            db.execute_batch(
                "INSERT INTO routes VALUES ('shop.example.com', '/api', 'web', 'least-connections', 1024);
                 INSERT INTO routes VALUES ('kept.localhost', '', NULL, 'round-robin', NULL);",
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn an_older_database_is_imported_whole_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paas.db");
        old_database(&path, 1);
        let s = Store::open_sqlite(&path, "localhost").await.unwrap();
        let web = AppName::parse("web").unwrap();
        let api = AppName::parse("api").unwrap();
        let app = s.app(&web).await.unwrap().unwrap();
        assert_eq!(app.guid, "g-web");
        assert_eq!(app.settings.instances, 2);
        assert_eq!(app.release.unwrap().start_command, "python3 b.py");
        assert!(!app.stopped);
        assert!(s.app(&api).await.unwrap().unwrap().stopped);
        assert_eq!(s.releases(&web).await.unwrap().len(), 2);
        let events = s.events(&web).await.unwrap();
        assert_eq!(
            events
                .iter()
                .map(|e| e.description.as_str())
                .collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(s.env(&web).await.unwrap()["GREETING"], "hi");
        assert_eq!(s.id_slot(&web).await.unwrap(), 2, "its host user ids stay");
        assert_eq!(
            s.id_slot(&api).await.unwrap(),
            3,
            "a new slot is past every slot ever given, deleted apps' too"
        );
        let routes = s.routes().await.unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].route.to_string(), "shop.example.com/api");
        assert_eq!(routes[1].app.as_ref(), Some(&web));
        assert_eq!(routes[1].max_body, Some(1024));
        assert_eq!(routes[0].app, None, "an unmapped route stays reserved");
        assert_eq!(s.domains().await.unwrap()[0].cert_pem.as_deref(), Some("C"));
        assert_eq!(s.buildpacks().await.unwrap()[0].sha256, "abc");

        // Once only: a change made since is not undone at the next start.
        assert!(s
            .unmap_route(&Route::parse("shop.example.com/api").unwrap(), &web)
            .await
            .unwrap());
        drop(s);
        let s = Store::open_sqlite(&path, "localhost").await.unwrap();
        assert_eq!(s.app_routes(&web).await.unwrap(), Vec::<Route>::new());
    }

    #[tokio::test]
    async fn apps_from_before_stored_routes_get_their_old_route() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paas.db");
        old_database(&path, 0);
        let s = Store::open_sqlite(&path, "localhost").await.unwrap();
        let web = AppName::parse("web").unwrap();
        assert_eq!(
            s.app_routes(&web).await.unwrap(),
            vec![Route::parse("web.localhost").unwrap()]
        );
        let r = Route::parse("other.localhost").unwrap();
        assert!(s
            .map_route(
                &r,
                &web,
                paas_api::auth::DEFAULT_SPACE,
                RouteSettings::default()
            )
            .await
            .unwrap());
    }
}
