//! A cell: where stagings and app instances run, on this host's runtime.
//!
//! This is the boundary between orchestration and execution. The platform (`platform/`)
//! decides what should run and asks a cell to stage an app, to run, stop and exec in
//! instances, and to ready droplets; it never touches the runtime or the stager itself.
//! The cell supervises each instance it runs (health checks, crash restarts with
//! backoff; `instance.rs`) and tells the platform what happens through a [`Reporter`]:
//! log lines, events, and that an instance became routable or stopped being so.
//! [`LocalCell`] is this host's cell, called in-process; a cell on another host will be
//! reached through the state store, behind the same calls.

mod alone;
mod assigned;
pub mod engine;
#[cfg(test)]
pub mod fake;
mod forward;
pub mod host;
pub mod instance;
pub mod presence;
pub mod task;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use paas_api::{AppName, LogStream};
use paas_runtime::{AddressPool, CgroupDriver, ExecTarget, IdMap, Runtime, Stack};
use paas_stager::{Stager, StagingError, StagingRequest, StagingResult};

use crate::store::Store;
use crate::Config;
pub use alone::run_alone;
pub use engine::Engine;
pub use instance::{Instance, InstanceSpec, InstanceState};

/// How long a stopping instance gets between SIGTERM and SIGKILL (DESIGN.md).
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a replaced or stopped instance keeps serving the requests already sent to
/// it, out of every route table, before it is asked to stop.
pub const DRAIN: Duration = Duration::from_secs(2);

/// What a cell tells the platform about the instances it runs.
pub trait Reporter: Send + Sync + 'static {
    /// A line of an app's log (`APP/PROC/WEB/N` output, `CELL` notices).
    fn log(&self, app: &AppName, source: &str, stream: LogStream, line: &str);

    /// Something that happened to an instance (a crash); the cell waits a moment for it
    /// to be recorded before it goes on (see `instance.rs`).
    fn event<'a>(
        &'a self,
        app: &'a AppName,
        kind: &'a str,
        index: u32,
        exit_code: Option<i32>,
        description: &'a str,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

    /// An instance became routable, or stopped being so.
    fn routable_changed(&self);

    /// A line of `app`'s task that another host's log already keeps: passed on to
    /// whoever waits on the task, not logged again here.
    fn pass_on(&self, _app: &AppName, _source: &str, _stream: LogStream, _line: &str) {}

    /// An instance of `app` starts here: its log lines go on to `drains` from now on.
    fn drains(&self, _app: &AppName, _app_guid: &str, _drains: &paas_api::state::LogDrains) {}
}

/// What a cell is made of: see [`LocalCell::new`].
pub struct Parts {
    pub id: String,
    pub engine: Arc<dyn Engine>,
    /// The stacks offered, the host's first; one is the default.
    pub stacks: Vec<paas_api::StackInfo>,
    /// Where droplets are unpacked for instances.
    pub droplets_dir: PathBuf,
    pub outbound_resolv: Option<PathBuf>,
    pub start_timeout: Duration,
    pub advertise: Option<std::net::Ipv4Addr>,
}

/// This host's cell. See the module docs.
pub struct LocalCell {
    /// This cell's name in the cluster, kept in the data folder (`cell-id`).
    id: String,
    /// Where other hosts reach this cell's instances; `None` on a single host, where
    /// routers reach instance addresses directly.
    advertise: Option<std::net::Ipv4Addr>,
    /// The task that keeps the cell's presence and instances in the state store.
    presence: tokio::sync::mpsc::UnboundedSender<presence::Change>,
    /// What runs containers and stagings here.
    engine: Arc<dyn Engine>,
    /// The stacks offered here, as `paas stacks` lists them: the host's first.
    stacks: Vec<paas_api::StackInfo>,
    droplets_dir: PathBuf,
    /// The resolv.conf instances with outbound access see: the host's name servers.
    outbound_resolv: Option<PathBuf>,
    /// How long an instance may take to pass its first health check, unless its app
    /// says otherwise.
    start_timeout: Duration,
    /// The instances the controller placed here through the state store, by id.
    assigned: std::sync::Mutex<std::collections::HashMap<String, Arc<Instance>>>,
    /// The task that follows those placements.
    following: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Instances an earlier run of paasd left running, by what they run
    /// (`instance::survivor_label`), until an instance of the same spec takes one over
    /// or they are removed.
    survivors: std::sync::Mutex<std::collections::HashMap<String, Vec<paas_runtime::Survivor>>>,
}

impl LocalCell {
    /// Readies the runtime (cgroups, the instance network and its isolation, the
    /// stack) in the data folder `dir`, and announces the cell in `store`.
    /// `peer` is where this host serves the others of its cluster, if it is in one.
    pub async fn open(
        cfg: &Config,
        dir: &Path,
        store: Store,
        peer: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Arc<Self>> {
        // The host's userland first, then each stack built here (`paasd stack build`).
        let mut stacks =
            vec![Stack::prepare_host(&dir.join("stack")).context("preparing the host stack")?];
        let mut stack_infos = vec![paas_api::StackInfo {
            name: paas_runtime::stack::HOST.into(),
            description: "this host's own userland (/usr), for offline use".into(),
            id: None,
            default: false,
        }];
        for built in crate::stacks::current(&dir.join("stacks")) {
            // Its /etc is this host's to write: the stack itself is only read.
            let etc_dir = dir.join("stack-etc").join(&built.name);
            let stack = Stack::prepare(&built.name, &built.rootfs(), &etc_dir)
                .with_context(|| format!("preparing stack {}", built.name))?;
            stacks.push(stack);
            stack_infos.push(paas_api::StackInfo {
                name: built.name.clone(),
                description: format!("Debian {}, {} packages", built.suite, built.packages.len()),
                id: Some(built.id.clone()),
                default: false,
            });
        }
        // New apps get the first stack built, else the host's.
        let default = stack_infos.len().min(2) - 1;
        stack_infos[default].default = true;
        let cgroup_base = Path::new("/sys/fs/cgroup");
        let cgroups = CgroupDriver::detect(cgroup_base).context("finding cgroups")?;
        match paas_runtime::cgroup_mount::favor_dynamic_changes(cgroup_base) {
            Ok(Some(point)) => tracing::info!(
                mount = %point.display(),
                "cgroups: turned on favordynmods, so that moving a new container's process into its cgroup does not wait"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!("cgroups: {e}; container starts may wait 9-14 ms on an idle host")
            }
        }
        let pool = AddressPool::new(&cfg.instance_cidr).context("--instance-cidr")?;
        // Clouds' name servers sit in ranges instances may not reach (AWS's 10.x.0.2 and
        // 169.254.169.253, GCP's 169.254.169.254): those the instances are given stay
        // reachable on port 53.
        let dns: Vec<std::net::Ipv4Addr> = host_name_servers()
            .into_iter()
            .filter_map(|a| match a {
                std::net::IpAddr::V4(v4) => Some(v4),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        paas_runtime::network::isolate_instances(&pool, &cfg.outbound_allow, &dns, cfg.host_routes)
            .await
            .context("isolating instances from the host")?;
        let runtime = Arc::new(
            Runtime::new(
                cfg.init_exe.clone(),
                dir.join("containers"),
                cgroups,
                pool,
                stacks,
            )
            .context("starting the runtime")?,
        );
        let stager = Stager::new(Arc::clone(&runtime), dir.join("staging"));
        let droplets_dir = dir.join("droplets");
        // Made now, so that the data folder is closed over all of them at start.
        for d in [&droplets_dir, &dir.join("staging")] {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        // Stagings a killed paasd left: their disks (a loop-mounted image each) are
        // unmounted, which frees the loop device, and their folders removed.
        for e in std::fs::read_dir(dir.join("staging"))
            .into_iter()
            .flatten()
            .flatten()
        {
            paas_runtime::disk::remove(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
        tracing::info!(cgroup_version = runtime.cgroup_version(), "runtime ready");
        let outbound_resolv = outbound_resolv_conf(dir);
        let engine = host::HostEngine {
            runtime,
            stager,
            outbound_resolv: outbound_resolv.clone(),
        };
        let id = cell_id(dir)?;
        let me = paas_api::state::CellPresence {
            id: id.clone(),
            address: cfg
                .advertise_address
                .unwrap_or(std::net::Ipv4Addr::LOCALHOST)
                .to_string(),
            peer: peer.map(|p| p.to_string()),
            memory_bytes: host_memory_bytes(),
            memory_used_bytes: 0,
            instances: 0,
            updated_ms: 0,
        };
        Ok(Self::new(
            Parts {
                id,
                engine: Arc::new(engine),
                stacks: stack_infos,
                droplets_dir,
                outbound_resolv,
                start_timeout: cfg.start_timeout,
                advertise: cfg.advertise_address,
            },
            // A controller without the cell role stages here, but is no cell of the
            // cluster: nothing is placed on it.
            cfg.roles.cell.then_some((store, me)),
        ))
    }

    /// A cell of `parts`; with `announce`, it keeps its presence and its instances in
    /// that state store under that name.
    pub fn new(
        parts: Parts,
        announce: Option<(Store, paas_api::state::CellPresence)>,
    ) -> Arc<Self> {
        let (presence, changes) = tokio::sync::mpsc::unbounded_channel();
        if let Some((store, me)) = announce {
            tokio::spawn(presence::run(store, me, presence.clone(), changes));
        }
        let Parts {
            id,
            engine,
            stacks,
            droplets_dir,
            outbound_resolv,
            start_timeout,
            advertise,
        } = parts;
        Arc::new(LocalCell {
            id,
            advertise,
            presence,
            engine,
            stacks,
            droplets_dir,
            outbound_resolv,
            start_timeout,
            assigned: Default::default(),
            following: Default::default(),
            survivors: Default::default(),
        })
    }

    /// This cell's name in the cluster.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Tells the state store about an instance.
    fn report(&self, change: presence::Change) {
        // The task ends only after `leave`, when nothing runs any more.
        let _ = self.presence.send(change);
    }

    /// Runs the instances placed on this cell through the state store (see
    /// `assigned.rs`), fetching droplets through `peers`, until [`LocalCell::shut_down`].
    pub fn follow_assignments(
        self: &Arc<Self>,
        store: Store,
        peers: Arc<crate::peer::Peers>,
        reporter: Arc<dyn Reporter>,
    ) {
        self.report(presence::Change::PlacedOnly);
        let task = tokio::spawn(assigned::follow(Arc::clone(self), store, peers, reporter));
        *self.following.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// The running instance `id` placed here through the state store, if any.
    pub fn assigned_instance(&self, id: &str) -> Option<Arc<Instance>> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Every instance placed here, as measured now, by id.
    pub fn assigned_summaries(
        &self,
    ) -> std::collections::HashMap<String, paas_api::InstanceSummary> {
        self.assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(id, i)| (id.clone(), i.summary()))
            .collect()
    }

    /// For a clean shutdown: stops following placements, stops the instances placed
    /// here, and leaves the state store. Their placements stay: when the cell is back, it
    /// runs them again.
    pub async fn shut_down(&self) {
        if let Some(t) = self
            .following
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
        let placed: Vec<Arc<Instance>> = self
            .assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, i)| i)
            .collect();
        crate::join_all(placed.into_iter().map(|i| async move { i.stop().await })).await;
        self.leave().await;
    }

    /// Takes the cell and its instances out of the state store at once (a clean
    /// shutdown), instead of when its lease runs out.
    pub async fn leave(&self) {
        let (done, left) = tokio::sync::oneshot::channel();
        if self.presence.send(presence::Change::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), left).await;
        }
    }

    /// Removes the containers an earlier run of paasd left behind; returns how many.
    pub async fn clean_up_leftovers(&self) -> usize {
        self.engine.clean_up_leftovers().await
    }

    /// Finds the instances an earlier run of paasd left running (removing every other
    /// container it left), so that instances started next with the same spec take them
    /// over instead of starting anew ([`LocalCell::run`]); returns how many.
    pub async fn recover_survivors(&self) -> usize {
        let found = self.engine.recover().await;
        let n = found.len();
        let mut survivors = self.survivors.lock().unwrap_or_else(|p| p.into_inner());
        for s in found {
            survivors.entry(s.label.clone()).or_default().push(s);
        }
        n
    }

    /// A survivor that runs what `label` names, taken from those left.
    fn claim_survivor(&self, label: &str) -> Option<paas_runtime::Survivor> {
        let mut survivors = self.survivors.lock().unwrap_or_else(|p| p.into_inner());
        let list = survivors.get_mut(label)?;
        let s = list.pop();
        if list.is_empty() {
            survivors.remove(label);
        }
        s
    }

    /// Removes the survivors no instance took over; returns how many.
    pub async fn remove_unclaimed_survivors(&self) -> usize {
        let left: Vec<_> =
            std::mem::take(&mut *self.survivors.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .flatten()
                .collect();
        let n = left.len();
        for s in left {
            self.engine.remove(s).await;
        }
        n
    }

    /// The stacks containers may run on here: the host's first.
    pub fn stacks(&self) -> &[paas_api::StackInfo] {
        &self.stacks
    }

    /// The resolv.conf for containers that may reach the world, if the host has name
    /// servers they can use.
    pub fn outbound_resolv_conf(&self) -> Option<PathBuf> {
        self.outbound_resolv.clone()
    }

    /// Stages an app: its buildpacks run in staging containers here; their output lines
    /// go to `log`.
    pub async fn stage(
        &self,
        req: &StagingRequest,
        log: &tokio::sync::mpsc::UnboundedSender<(LogStream, String)>,
    ) -> Result<StagingResult, StagingError> {
        self.engine.stage(req, log).await
    }

    /// Starts supervising an instance; it runs, is health-checked and restarted until
    /// stopped, and `reporter` hears what happens.
    pub fn run(self: &Arc<Self>, reporter: Arc<dyn Reporter>, spec: InstanceSpec) -> Arc<Instance> {
        instance::spawn(Arc::clone(self), reporter, spec)
    }

    /// Starts `command` (a shell command line) in a running instance.
    pub fn exec(
        &self,
        target: &ExecTarget,
        command: &str,
    ) -> Result<tokio::process::Child, paas_runtime::RuntimeError> {
        self.engine.exec(target, instance::launcher_args(command))
    }

    /// Deletes the droplet `sha`'s unpacked folders (one per user namespace).
    pub fn forget_droplet(&self, sha: &str) {
        let prefix = format!("{sha}-");
        for e in std::fs::read_dir(&self.droplets_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// The unpacked droplet `sha` for containers of `ids`, unpacking it on first use.
    /// Instances share it read-only as the lower layer of their `/home/vcap` overlay; its
    /// files belong to vcap of that user namespace.
    pub async fn droplet_dir(&self, sha: &str, blob: &Path, ids: IdMap) -> anyhow::Result<PathBuf> {
        let dir = self.droplets_dir.join(format!("{sha}-{:x}", ids.host_base));
        if dir.is_dir() {
            return Ok(dir);
        }
        let blob = blob.to_path_buf();
        let droplets = self.droplets_dir.clone();
        let target = dir.clone();
        let engine = Arc::clone(&self.engine);
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            // A folder of its own: two starts unpacking the same droplet at once must
            // not write into one folder, nor rename a half-made one into place.
            let unpacking = tempfile::Builder::new()
                .prefix(".unpacking-")
                .tempdir_in(&droplets)?;
            engine.unpack_droplet(&blob, unpacking.path(), ids)?;
            let tmp = unpacking.keep();
            if let Err(e) = std::fs::rename(&tmp, &target) {
                let _ = std::fs::remove_dir_all(&tmp);
                // Another start got there first: its folder is whole.
                if !target.is_dir() {
                    return Err(e.into());
                }
            }
            Ok(())
        })
        .await
        .context("unpacking the droplet")??;
        Ok(dir)
    }
}

/// Writes `DIR/resolv.conf` with the host's name servers that an instance can reach
/// (not loopback ones: those are the host's own, which instances may not reach; with
/// systemd-resolved, its upstream servers). `None` when there are none.
fn outbound_resolv_conf(dir: &std::path::Path) -> Option<PathBuf> {
    let servers = host_name_servers();
    if servers.is_empty() {
        return None;
    }
    let path = dir.join("resolv.conf");
    let text: String = servers
        .iter()
        .map(|s| format!("nameserver {s}\n"))
        .collect();
    std::fs::write(&path, text).ok()?;
    Some(path)
}

/// The host's name servers that an instance can reach: `/etc/resolv.conf`'s, or, when
/// that names only loopback (systemd-resolved), the upstream servers.
fn host_name_servers() -> Vec<std::net::IpAddr> {
    ["/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
                .filter(|a| !a.is_loopback())
                .collect::<Vec<_>>()
        })
        .find(|list| !list.is_empty())
        .unwrap_or_default()
}

/// The cell's id: made at first start from the host's name and a random part, and kept
/// in `DIR/cell-id`, so a restarted cell is the same cell.
fn cell_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("cell-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let id = format!("{}-{}", host.trim_matches('-'), hex::encode(b));
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// The host's memory (`MemTotal`), what the cell may give instances.
fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
