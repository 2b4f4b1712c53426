//! The platform's orchestration (deploy, roll-outs, crash restarts, drains, rollback)
//! against a cell whose engine only pretends (`cell/fake.rs`), with tokio's clock
//! paused: minutes of backoff pass at once, and no test needs root.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paas_api::{AppName, AppSettings, DeployEvent, RolloutRequest, Route, Strategy};
use tokio::time::Instant;

use super::{Error, Platform};
use crate::cell::fake::FakeEngine;
use crate::cell::{LocalCell, Parts};
use crate::edge::Edge;
use crate::store::{RouteSettings, Store};
use crate::Config;

const DOMAIN: &str = "apps.test";
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Route tables as published, with when: each route's host and its backends.
type Tables = Arc<Mutex<Vec<(Instant, HashMap<String, Vec<SocketAddr>>)>>>;

/// A platform on a fake cell, and what its router was given.
struct World {
    platform: Arc<Platform>,
    engine: Arc<FakeEngine>,
    /// Every route table published, with when, in order.
    tables: Tables,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let cfg = config(dir.path());
    let store = Store::open_sqlite(&dir.path().join("paas.db"), DOMAIN)
        .await
        .expect("the store opens");
    let engine = Arc::new(FakeEngine::default());
    let droplets_dir = dir.path().join("droplets");
    std::fs::create_dir_all(&droplets_dir).expect("the droplets folder");
    let cell = LocalCell::new(
        Parts {
            id: "fake-cell".into(),
            engine: Arc::new(Arc::clone(&engine)),
            stacks: vec![paas_api::StackInfo {
                name: paas_runtime::stack::HOST.into(),
                description: "pretend".into(),
                id: None,
                default: true,
            }],
            droplets_dir,
            outbound_resolv: None,
            start_timeout: START_TIMEOUT,
            advertise: None,
        },
        None,
    );
    let edge = Edge::none();
    let mut routes = edge.follow_routes();
    let tables = Arc::new(Mutex::new(Vec::new()));
    {
        let tables = Arc::clone(&tables);
        tokio::spawn(async move {
            while routes.changed().await.is_ok() {
                let Some(table) = routes.borrow_and_update().clone() else {
                    continue;
                };
                let backends = table
                    .iter()
                    .map(|e| {
                        let addrs = e.backends.iter().filter_map(|b| b.addr.parse().ok());
                        (e.host.clone(), addrs.collect())
                    })
                    .collect();
                tables.lock().unwrap().push((Instant::now(), backends));
            }
        });
    }
    let platform = Platform::with_cell(&cfg, store, cell, 80, edge, None)
        .await
        .expect("the platform opens");
    platform.restore().await;
    World {
        platform,
        engine,
        tables,
        _dir: dir,
    }
}

fn config(dir: &Path) -> Config {
    let any = "127.0.0.1:0".parse().expect("an address");
    Config {
        data_dir: dir.to_path_buf(),
        etcd_endpoints: Vec::new(),
        advertise_address: None,
        peer_port: 0,
        roles: crate::config::Roles::ALL,
        api_listen: any,
        http_listen: any,
        https_listen: any,
        trusted_proxies: Vec::new(),
        max_connections: 100,
        max_connections_per_client: 100,
        admin_listen: any,
        domain: DOMAIN.into(),
        instance_cidr: "10.0.0.0/16".into(),
        outbound_allow: Vec::new(),
        drain_allow: Vec::new(),
        route_service_allow: Vec::new(),
        host_routes: false,
        init_exe: "/nonexistent/paas-init".into(),
        router_exe: "/nonexistent/paas-router".into(),
        staging_timeout: Duration::from_secs(900),
        start_timeout: START_TIMEOUT,
        response_timeout: Duration::from_secs(60),
        drain: Duration::ZERO,
    }
}

impl World {
    /// Creates `app` with `instances` web instances and its route `APP.DOMAIN`.
    async fn create(&self, app: &str, instances: u32) -> AppName {
        let name = AppName::parse(app).expect("a valid name");
        let settings: AppSettings =
            serde_json::from_value(serde_json::json!({ "instances": instances, "memory": 256 }))
                .expect("settings");
        let store = &self.platform.store;
        store
            .put_app(&name, &settings, paas_api::auth::DEFAULT_SPACE)
            .await
            .expect("the app is stored");
        let route = Route::parse(&format!("{app}.{DOMAIN}")).expect("a route");
        store
            .map_route(
                &route,
                &name,
                paas_api::auth::DEFAULT_SPACE,
                RouteSettings::default(),
            )
            .await
            .expect("the route is mapped");
        self.platform.reload_routes().await;
        name
    }

    /// Pushes a package whose start command is `command` (see `cell/fake.rs`).
    async fn push(&self, app: &AppName, command: &str) -> Result<Vec<DeployEvent>, Error> {
        self.push_as(app, command, &RolloutRequest::default()).await
    }

    async fn push_as(
        &self,
        app: &AppName,
        command: &str,
        rollout: &RolloutRequest,
    ) -> Result<Vec<DeployEvent>, Error> {
        let file = self._dir.path().join("package");
        std::fs::write(&file, command).expect("the package is written");
        let package = self
            .platform
            .blobs
            .put_file(&file)
            .expect("the package is kept");
        self.platform
            .store
            .note_package(app, &package)
            .await
            .expect("the package is noted");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let done = self
            .platform
            .deploy(app, &package, true, rollout, &tx)
            .await;
        drop(tx);
        let mut events = Vec::new();
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        done.map(|()| events)
    }

    async fn rollback(&self, app: &AppName, version: i64) -> Result<(), Error> {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        self.platform
            .restart(app, Some(version), &RolloutRequest::default(), &tx)
            .await
    }

    /// The backends of `app`'s route in the last table published.
    fn routed(&self, app: &str) -> Vec<SocketAddr> {
        let tables = self.tables.lock().unwrap();
        let mut addrs = tables
            .last()
            .and_then(|(_, t)| t.get(&format!("{app}.{DOMAIN}")).cloned())
            .unwrap_or_default();
        addrs.sort();
        addrs
    }

    /// When `addr` was last in a table of `app`'s route, and when the table after that
    /// left it out.
    fn unrouted_at(&self, app: &str, addr: SocketAddr) -> Option<Instant> {
        let host = format!("{app}.{DOMAIN}");
        let tables = self.tables.lock().unwrap();
        let last_in = tables
            .iter()
            .rposition(|(_, t)| t.get(&host).is_some_and(|b| b.contains(&addr)))?;
        tables.get(last_in + 1).map(|(at, _)| *at)
    }

    async fn event_kinds(&self, app: &AppName) -> Vec<String> {
        let events = self.platform.store.events(app).await.expect("events");
        events.into_iter().map(|e| e.kind).collect()
    }
}

fn sorted_addrs(records: &[crate::cell::fake::Record]) -> Vec<SocketAddr> {
    let mut addrs: Vec<_> = records.iter().map(|r| r.addr).collect();
    addrs.sort();
    addrs
}

#[tokio::test(start_paused = true)]
async fn a_deploy_routes_the_new_instances_once_healthy_and_drains_the_old_ones() {
    let w = world().await;
    let app = w.create("web", 2).await;
    let events = w.push(&app, "serve v1").await.expect("the first push");
    assert!(
        matches!(events.last(), Some(DeployEvent::Done { instances: 2, .. })),
        "the push ends with 2 instances: {events:?}"
    );
    let v1 = w.engine.alive("web");
    assert_eq!(v1.len(), 2, "two instances run: {v1:?}");
    assert_eq!(w.routed("web"), sorted_addrs(&v1), "both are routed");
    assert_eq!(w.engine.stagings(), 1);

    w.push(&app, "serve v2").await.expect("the second push");
    let switched = Instant::now();
    let fresh: Vec<_> = w
        .engine
        .alive("web")
        .into_iter()
        .filter(|r| r.command == "serve v2")
        .collect();
    assert_eq!(fresh.len(), 2, "two new instances run");
    assert_eq!(
        w.routed("web"),
        sorted_addrs(&fresh),
        "only the new ones are routed"
    );
    // The old ones still serve what was sent to them, out of the table, for the drain.
    for old in &v1 {
        let now = w.engine.record(&old.id).unwrap();
        assert!(
            now.stop_asked.is_none(),
            "{} is asked to stop only after the drain",
            old.id
        );
    }
    tokio::time::sleep(crate::cell::DRAIN + Duration::from_secs(1)).await;
    for old in &v1 {
        let now = w.engine.record(&old.id).unwrap();
        let unrouted = w.unrouted_at("web", old.addr).expect("it left the table");
        let stopped = now.stop_asked.expect("it was asked to stop");
        assert!(
            stopped >= unrouted + crate::cell::DRAIN,
            "{} was stopped {:?} after it left the table; the drain is {:?}",
            old.id,
            stopped - unrouted,
            crate::cell::DRAIN
        );
        assert!(
            unrouted <= switched,
            "it left the table before the push returned"
        );
        assert!(!now.alive(), "{} is gone after its drain", old.id);
    }
    // Never a table without an instance of the app, from its first routing on.
    {
        let tables = w.tables.lock().unwrap();
        let host = format!("web.{DOMAIN}");
        let first = tables
            .iter()
            .position(|(_, t)| t.get(&host).is_some_and(|b| !b.is_empty()))
            .unwrap();
        for (at, t) in &tables[first..] {
            assert!(
                t.get(&host).is_some_and(|b| !b.is_empty()),
                "a table at {at:?} routes the app to nothing"
            );
        }
    }
    let kinds = w.event_kinds(&app).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "deploy").count(),
        2,
        "{kinds:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_release_that_never_becomes_healthy_leaves_the_old_one_serving() {
    let w = world().await;
    let app = w.create("steady", 2).await;
    w.push(&app, "serve v1").await.expect("the first push");
    let v1 = w.engine.alive("steady");
    let began = Instant::now();
    let failure = w
        .push(&app, "silent")
        .await
        .expect_err("a release whose instances never pass a health check is refused");
    let waited = began.elapsed();
    assert!(
        failure.body.message.contains("health check within 60s"),
        "the failure says why: {}",
        failure.body.message
    );
    assert!(
        waited >= START_TIMEOUT,
        "the new instances had their whole start timeout, not {waited:?}"
    );
    assert_eq!(
        sorted_addrs(&w.engine.alive("steady")),
        sorted_addrs(&v1),
        "only the old instances are left"
    );
    assert_eq!(
        w.routed("steady"),
        sorted_addrs(&v1),
        "and they stay routed"
    );
    assert!(
        waited < 2 * START_TIMEOUT,
        "the failure is told at the first timeout, not after restarts: {waited:?}"
    );
    let silent = w
        .engine
        .records()
        .into_iter()
        .filter(|r| r.command == "silent")
        .count();
    assert!(silent >= 2, "both new instances were tried");
    let record = w.platform.store.app(&app).await.unwrap().unwrap();
    assert_eq!(
        record.release.map(|r| r.start_command),
        Some("serve v1".to_string()),
        "the app's release is still the first"
    );
    assert!(w
        .event_kinds(&app)
        .await
        .contains(&"deploy-failed".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_crashing_instance_restarts_at_once_three_times_then_backs_off() {
    let w = world().await;
    let app = w.create("flaky", 1).await;
    w.push(&app, "crash 5")
        .await
        .expect("it starts and passes its first check");
    // Six restarts: 3 at once, then after 30 s × 2^(n−3) (DESIGN.md): 60, 120, 240 s.
    tokio::time::sleep(Duration::from_secs(6 * 5 + 60 + 120 + 240 + 10)).await;
    let starts: Vec<Instant> = w
        .engine
        .of_app("flaky")
        .into_iter()
        .map(|r| r.started)
        .collect();
    let gaps: Vec<Duration> = starts.windows(2).map(|p| p[1] - p[0]).collect();
    assert_eq!(
        starts.len(),
        7,
        "the first start and six restarts: {gaps:?}"
    );
    let backoff = [0, 0, 0, 60, 120, 240];
    for (i, (gap, wait)) in gaps.iter().zip(backoff).enumerate() {
        // Each run lasts the 5 s before its crash; the restart comes after the backoff.
        let expected = Duration::from_secs(5 + wait);
        assert!(
            *gap >= expected && *gap < expected + Duration::from_secs(2),
            "restart {} came {gap:?} after the start before it, not about {expected:?}; gaps: {gaps:?}",
            i + 1
        );
    }
    let events = w.platform.store.events(&app).await.unwrap();
    let crashes: Vec<_> = events.iter().filter(|e| e.kind == "crash").collect();
    let exited = w
        .engine
        .records()
        .iter()
        .filter(|r| r.exited.is_some())
        .count();
    assert!(exited >= 6);
    assert_eq!(crashes.len(), exited, "each crash is recorded: {events:?}");
    assert!(crashes.iter().all(|e| e.exit_code == Some(1)));
}

#[tokio::test(start_paused = true)]
async fn an_instance_that_fails_its_health_check_leaves_the_table_then_is_replaced() {
    let w = world().await;
    let app = w.create("sickly", 1).await;
    w.push(&app, "sicken 100")
        .await
        .expect("it is healthy at first");
    let first = w.engine.alive("sickly").remove(0);
    assert_eq!(w.routed("sickly"), vec![first.addr]);
    tokio::time::sleep(Duration::from_secs(100 + 3 * 30 + 10)).await;
    let unrouted = w
        .unrouted_at("sickly", first.addr)
        .expect("it left the table");
    let gone = w
        .engine
        .record(&first.id)
        .and_then(|r| r.stop_asked)
        .expect("it was killed");
    assert!(
        unrouted >= first.started + Duration::from_secs(100) && unrouted < gone,
        "out of the table at its first failed check ({:?} after its start), killed later ({:?})",
        unrouted - first.started,
        gone - first.started
    );
    let kinds = w.event_kinds(&app).await;
    assert!(kinds.contains(&"crash".to_string()), "{kinds:?}");
    assert_eq!(
        w.engine.of_app("sickly").len(),
        2,
        "one replacement was started"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rollback_runs_the_old_release_again() {
    let w = world().await;
    let app = w.create("undo", 2).await;
    w.push(&app, "serve v1").await.expect("v1");
    w.push(&app, "serve v2").await.expect("v2");
    let releases = w.platform.store.releases(&app).await.unwrap();
    let v1 = releases
        .iter()
        .find(|r| r.start_command == "serve v1")
        .expect("v1's release")
        .clone();
    w.rollback(&app, v1.version).await.expect("the rollback");
    tokio::time::sleep(crate::cell::DRAIN + Duration::from_secs(1)).await;
    let alive = w.engine.alive("undo");
    assert_eq!(alive.len(), 2);
    assert!(alive.iter().all(|r| r.command == "serve v1"), "{alive:?}");
    assert_eq!(w.routed("undo"), sorted_addrs(&alive));
    let record = w.platform.store.app(&app).await.unwrap().unwrap();
    assert_eq!(
        record.release.map(|r| r.droplet),
        Some(v1.droplet),
        "the app runs v1's droplet"
    );
    assert_eq!(w.engine.stagings(), 2, "a rollback stages nothing");
    assert!(w.event_kinds(&app).await.contains(&"rollback".to_string()));
}

#[tokio::test(start_paused = true)]
async fn an_old_droplet_is_collected_once() {
    let w = world().await;
    let app = w.create("aging", 1).await;
    for v in 1..=7 {
        w.push(&app, &format!("serve v{v}")).await.expect("a push");
    }
    // Collection runs once the replaced instances have stopped.
    tokio::time::sleep(crate::cell::DRAIN + Duration::from_secs(1)).await;
    let releases = w.platform.store.releases(&app).await.unwrap();
    let kept: Vec<bool> = releases
        .iter()
        .map(|r| w.platform.blobs.exists(&r.droplet))
        .collect();
    assert_eq!(
        kept,
        [true, true, true, true, true, false, false],
        "newest first"
    );
    // Before, every deploy collected every old droplet again: a line in the log for
    // each, and work that grew with the app's history.
    assert_eq!(w.platform.collect_droplets().await, Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn an_app_keeps_its_newest_releases_and_no_droplet_is_left_without_one() {
    let w = world().await;
    let app = w.create("long-lived", 1).await;
    let pushes = crate::store::KEPT_RELEASES + 3;
    for v in 1..=pushes {
        w.push(&app, &format!("serve v{v}")).await.expect("a push");
        // Each roll-out collects and prunes once its old instance has stopped.
        tokio::time::sleep(crate::cell::DRAIN + Duration::from_secs(1)).await;
    }
    let releases = w.platform.store.releases(&app).await.unwrap();
    let versions: Vec<i64> = releases.iter().map(|r| r.version).collect();
    let newest = pushes as i64;
    assert_eq!(
        versions,
        (newest - crate::store::KEPT_RELEASES as i64 + 1..=newest)
            .rev()
            .collect::<Vec<_>>()
    );
    // Every droplet still kept belongs to one of the newest five releases.
    let kept: Vec<bool> = releases
        .iter()
        .map(|r| w.platform.blobs.exists(&r.droplet))
        .collect();
    assert_eq!(kept.iter().filter(|k| **k).count(), 5);
    assert!(kept[..5].iter().all(|k| *k));
}

#[tokio::test(start_paused = true)]
async fn a_rolling_deploy_replaces_one_instance_at_a_time() {
    let w = world().await;
    let app = w.create("roll", 3).await;
    w.push(&app, "serve v1").await.expect("v1");
    let rolling = RolloutRequest {
        strategy: Some(Strategy::Rolling),
        max_in_flight: Some(1),
    };
    w.push_as(&app, "serve v2", &rolling).await.expect("v2");
    tokio::time::sleep(crate::cell::DRAIN + Duration::from_secs(1)).await;
    let records = w.engine.records();
    let v2: Vec<_> = records.iter().filter(|r| r.command == "serve v2").collect();
    assert_eq!(v2.len(), 3);
    // A batch of one: each new instance starts only after the one before is up, and
    // the app never has fewer than its 3 instances routed.
    for pair in v2.windows(2) {
        assert!(pair[1].started > pair[0].started, "{v2:?}");
    }
    let host = format!("roll.{DOMAIN}");
    let tables = w.tables.lock().unwrap();
    let full = tables
        .iter()
        .position(|(_, t)| t.get(&host).is_some_and(|b| b.len() == 3))
        .unwrap();
    for (at, t) in &tables[full..] {
        let n = t.get(&host).map_or(0, Vec::len);
        assert!(n >= 3, "a table at {at:?} routes {n} instances");
    }
    drop(tables);
    assert!(w
        .engine
        .alive("roll")
        .iter()
        .all(|r| r.command == "serve v2"));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_waits_for_the_platforms_work_and_leaves_none_running() {
    let w = world().await;
    let app = w.create("web", 2).await;
    // What runs before any app does: the store's own upkeep, this test's route
    // follower, and the platform's upkeep (which the shutdown ends).
    let before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
        - 1;
    w.push(&app, "serve v1").await.expect("the first push");
    // The second push leaves the first release's instances draining, to be stopped
    // and their droplet collected in the background.
    w.push(&app, "serve v2").await.expect("the second push");
    w.platform.shutdown().await;
    let after = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    assert_eq!(
        after, before,
        "tasks alive before the first push and after the shutdown"
    );
    for r in w.engine.records() {
        assert!(r.destroyed.is_some(), "{} is removed at shutdown", r.id);
    }
}
