//! The staging lifecycle: package → build folder → buildpacks → droplet.
//!
//! Inside every staging container the layout is the one apps run with, so paths that
//! buildpacks bake in stay true at launch:
//!
//! | path                         | what                                   |
//! |------------------------------|----------------------------------------|
//! | `/home/vcap/app`             | the build folder (`BUILD_DIR`)         |
//! | `/home/vcap/deps`, `profile.d` | buildpack output beside the app      |
//! | `/tmp/cache/<name>`          | each buildpack's build cache (`CACHE_DIR`) |
//! | `/tmp/env`                   | config vars, one file each (`ENV_DIR`) |
//! | `/tmp/buildpacks/<name>`     | each buildpack, a private copy         |
//!
//! Buildpacks get copies rather than read-only binds because Heroku's multi-buildpack
//! protocol has a buildpack write an `export` file into its own folder.
//!
//! Only the Heroku dialect runs so far; the others are recognised and refused with a
//! message that says so.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use paas_api::{AppName, LogStream, MemorySize};
use paas_runtime::spec::{Mount, MountKind};
use paas_runtime::{
    ContainerConfig, ExitReason, IdMap, Limits, NetworkMode, Runtime, RuntimeError, VCAP_GID,
    VCAP_UID,
};
use tokio::io::AsyncRead;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::archive::{self, ArchiveError, ArchivePolicy};
use crate::buildpack::{Buildpack, Dialect};
use crate::cnb::{self, DetectPlan, Phase};
use crate::droplet::{self, StagingInfo};
use crate::tree::{self, Tree};

/// Where a staging log line goes: `(stream, line)`.
pub type LogSink = UnboundedSender<(LogStream, String)>;

#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error("the app package was refused: {0}")]
    Package(#[source] ArchiveError),
    #[error("no buildpack detected this app: add a Procfile and choose one with -b (for example -b binary), or add the files a buildpack looks for (Staticfile, requirements.txt, package.json)")]
    NoneDetected,
    #[error("buildpack {buildpack} failed to {step} ({reason}); see the staging log above")]
    StepFailed {
        buildpack: String,
        step: &'static str,
        reason: ExitReason,
    },
    #[error("buildpack {buildpack} printed release output that is not YAML with default_process_types: {detail}")]
    BadRelease { buildpack: String, detail: String },
    #[error("buildpack {buildpack} cannot run {position}: {detail}")]
    BadOrder {
        buildpack: String,
        position: &'static str,
        detail: &'static str,
    },
    #[error("buildpack {buildpack} wrote a build plan that cannot be read: {detail}")]
    BadPlan { buildpack: String, detail: String },
    #[error("no buildpack of the group provides {0:?}, which the build plan requires: add a buildpack that provides it")]
    UnmetRequirement(String),
    #[error("buildpack {buildpack} left layers that cannot be read: {detail}")]
    BadLayers { buildpack: String, detail: String },
    #[error("no start command: add a Procfile with a 'web:' line, or give one with -c")]
    NoStartCommand,
    #[error(
        "the app's Procfile cannot be read: {detail}; make it a plain text file of at most 1 MiB"
    )]
    BadProcfile { detail: String },
    #[error("the droplet the build left is refused: {0}; see the staging log above")]
    BadDroplet(#[source] ArchiveError),
    #[error("staging took longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("staging container: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("staging: {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
}

impl StagingError {
    /// Cloud Foundry's exit code for the failure, where it has one.
    pub fn cf_exit_code(&self) -> Option<i32> {
        match self {
            StagingError::NoneDetected => Some(222),
            StagingError::StepFailed { step, .. } => match *step {
                "detect" => Some(222),
                // A Cloud Native build is the compile of its dialect.
                "compile" | "build" => Some(223),
                "release" => Some(224),
                "supply" => Some(225),
                "finalize" => Some(226),
                _ => None,
            },
            StagingError::UnmetRequirement(_) | StagingError::BadPlan { .. } => Some(222),
            StagingError::BadLayers { .. } | StagingError::BadDroplet(_) => Some(223),
            StagingError::BadRelease { .. } => Some(224),
            _ => None,
        }
    }

    /// True when the user's input (package, buildpack, app) caused the failure.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, StagingError::Runtime(_) | StagingError::Io { .. })
    }
}

fn io_err(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> StagingError {
    let action = action.into();
    move |source| StagingError::Io { action, source }
}

/// One staging.
#[derive(Debug, Clone)]
pub struct StagingRequest {
    /// Unique id of this staging: lowercase letters and digits.
    pub id: String,
    pub app: AppName,
    /// The app's source, a tar.gz already checked with [`archive::scan`].
    pub package: PathBuf,
    /// Buildpacks in position order.
    pub buildpacks: Vec<Buildpack>,
    /// Detect: pick the first of `buildpacks` whose `bin/detect` passes. Otherwise run
    /// all of them in order, as `-b` asks.
    pub detect: bool,
    /// `-c`: overrides the Procfile and the buildpack.
    pub start_command: Option<String>,
    /// The app's own environment, also written to `ENV_DIR`.
    pub env: Vec<(String, String)>,
    /// The stack the build runs on, and so the droplet's (`CF_STACK`).
    pub stack: String,
    pub memory: MemorySize,
    /// The most the build may write (app, dependencies, caches); `None` for no limit.
    pub disk: Option<MemorySize>,
    pub timeout: Duration,
    /// Where the droplet is written.
    pub droplet_out: PathBuf,
    /// Where this app's build caches are kept between stagings, one per buildpack;
    /// `None` for no cache.
    pub cache_dir: Option<PathBuf>,
    /// Buildpacks may open connections to the world (the app was given
    /// `allow-outbound`), with the name servers of this resolv.conf, if any. `None`:
    /// loopback only.
    pub outbound: Option<Option<PathBuf>>,
    /// The user namespace the steps run in (the app's own host ids); `None`: the
    /// host's ids.
    pub id_map: Option<IdMap>,
}

impl StagingRequest {
    /// vcap as the host sees it: the owner of everything the build may write.
    fn owner(&self) -> (u32, u32) {
        match self.id_map {
            Some(m) => (m.host(VCAP_UID), m.host(VCAP_GID)),
            None => (VCAP_UID, VCAP_GID),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StagingResult {
    pub info: StagingInfo,
    /// The whole staging, from start to a packed droplet.
    pub total: Duration,
    /// The part of it spent running buildpack scripts (parallel detects count once).
    pub in_buildpacks: Duration,
}

/// Runs stagings in containers of `runtime`, with scratch folders under `work_root`.
#[derive(Debug, Clone)]
pub struct Stager {
    runtime: Arc<Runtime>,
    work_root: PathBuf,
}

/// Memory for staging: never less than this, however small the app's limit.
const MIN_STAGING_MEMORY: u64 = 1 << 30;

impl Stager {
    pub fn new(runtime: Arc<Runtime>, work_root: PathBuf) -> Self {
        Stager { runtime, work_root }
    }

    /// Stages `req`, sending the log to `log` line by line as it is printed.
    pub async fn stage(
        &self,
        req: &StagingRequest,
        log: &LogSink,
    ) -> Result<StagingResult, StagingError> {
        let started = Instant::now();
        let work = self.work_root.join(&req.id);
        // The build writes only inside `work`: with a disk limit, `work` is a filesystem
        // of that size, so a runaway build fails with "no space left" and harms no one.
        let result = match req.disk {
            Some(limit) => match paas_runtime::disk::create(&work, limit.bytes(), 0, 0).await {
                Ok(mounted) => self.stage_in(&mounted, req, log).await,
                Err(e) => Err(StagingError::Io {
                    action: "making the build's disk".into(),
                    source: std::io::Error::other(e),
                }),
            },
            None => self.stage_in(&work, req, log).await,
        };
        // What the build left is thrown away: unmounted without being written back.
        paas_runtime::disk::discard(&work);
        let _ = tokio::fs::remove_dir_all(&work).await;
        result.map(|(info, in_buildpacks)| {
            let total = started.elapsed();
            say(
                log,
                &format!(
                    "Staged in {} ms: {} ms in buildpack scripts, {} ms by the platform",
                    total.as_millis(),
                    in_buildpacks.as_millis(),
                    total.saturating_sub(in_buildpacks).as_millis()
                ),
            );
            StagingResult {
                info,
                total,
                in_buildpacks,
            }
        })
    }

    async fn stage_in(
        &self,
        work: &Path,
        req: &StagingRequest,
        log: &LogSink,
    ) -> Result<(StagingInfo, Duration), StagingError> {
        let deadline = Instant::now() + req.timeout;
        let layout = Layout::new(work, req.owner());
        layout.create(req).await?;

        let mut plans: BTreeMap<String, DetectPlan> = BTreeMap::new();
        let chosen: Vec<&Buildpack> = if req.detect {
            let (bp, plan) = self.detect(req, &layout, log, deadline).await?;
            if let Some(plan) = plan {
                plans.insert(bp.name.to_string(), plan);
            }
            vec![bp]
        } else {
            // Cloud Native buildpacks always detect: their detect writes the build plan.
            for (i, bp) in req.buildpacks.iter().enumerate() {
                if bp.dialect == Dialect::CloudNative {
                    match self.detect_one(req, &layout, i, bp, log, deadline).await? {
                        Detection::Pass { plan, .. } => {
                            plans.insert(bp.name.to_string(), plan.unwrap_or_default());
                        }
                        Detection::Fail => {
                            return Err(StagingError::StepFailed {
                                buildpack: bp.name.to_string(),
                                step: "detect",
                                reason: ExitReason::Exited(100),
                            })
                        }
                    }
                }
            }
            req.buildpacks.iter().collect()
        };
        let group: Vec<&DetectPlan> = plans.values().collect();
        if let Some(missing) = cnb::unmet_requirement(&group) {
            return Err(StagingError::UnmetRequirement(missing));
        }
        let names: Vec<String> = chosen.iter().map(|b| b.name.to_string()).collect();
        say(log, &format!("Buildpacks: {}", names.join(", ")));
        let restored = match &req.cache_dir {
            Some(store) => restore_caches(store, &layout.cache, &chosen, req.owner(), log).await,
            None => HashMap::new(),
        };

        layout.create_dialect_dirs(&chosen).await?;
        for (i, bp) in chosen.iter().enumerate() {
            let last = i + 1 == chosen.len();
            let idx = deps_index(i, chosen.len());
            let steps = dialect_steps(bp, &chosen[..i], &idx, last)?;
            if bp.dialect == Dialect::CloudNative {
                let plan = plans.get(bp.name.as_str()).cloned().unwrap_or_default();
                layout.prepare_cnb_build(bp, &plan).await?;
            }
            for (step, script) in steps {
                say(log, &format!("Running {} ({step})", bp.name));
                let env = step_env(bp);
                let (reason, _) = self
                    .run_step(
                        req,
                        &layout,
                        format!("{step}{i}"),
                        script,
                        env,
                        log,
                        Output::Log,
                        deadline,
                    )
                    .await?;
                if reason != ExitReason::Exited(0) {
                    return Err(StagingError::StepFailed {
                        buildpack: bp.name.to_string(),
                        step,
                        reason,
                    });
                }
            }
            if bp.dialect == Dialect::CloudNative {
                let cached = layout.after_cnb_build(bp, &chosen[..=i]).await?;
                self.cache_cnb_layers(req, &layout, i, bp, &cached, log, deadline)
                    .await?;
            }
        }

        let last = chosen.last().ok_or(StagingError::NoneDetected)?;
        let mut process_types = layout.declared_processes(&chosen)?;
        let mut config_vars = BTreeMap::new();
        if last.dialect != Dialect::CloudNative && last.dir.join("bin/release").is_file() {
            let script = format!(
                "exec /tmp/buildpacks/{}/bin/release /home/vcap/app\n",
                last.name
            );
            let (reason, out) = self
                .run_step(
                    req,
                    &layout,
                    "r".into(),
                    script,
                    Vec::new(),
                    log,
                    Output::Capture,
                    deadline,
                )
                .await?;
            if reason != ExitReason::Exited(0) {
                return Err(StagingError::StepFailed {
                    buildpack: last.name.to_string(),
                    step: "release",
                    reason,
                });
            }
            let released = parse_release(&out).map_err(|detail| StagingError::BadRelease {
                buildpack: last.name.to_string(),
                detail,
            })?;
            process_types.extend(released.default_process_types);
            config_vars = released.config_vars;
        }
        let procfile = cnb::read_left(&layout.home_tree()?, Path::new("app/Procfile"))
            .map_err(|detail| StagingError::BadProcfile { detail })?;
        process_types.extend(procfile.map(|s| parse_procfile(&s)).unwrap_or_default());
        let start_command = req
            .start_command
            .clone()
            .or_else(|| process_types.get("web").cloned())
            .ok_or(StagingError::NoStartCommand)?;
        let build_only = layout.finish_droplet(&chosen, &config_vars).await?;
        let info = StagingInfo {
            detected_buildpack: names.join(", "),
            start_command,
            process_types,
        };
        if let Some(store) = &req.cache_dir {
            self.save_caches(req, &layout, store, (&chosen, &restored), log, deadline)
                .await;
        }
        say(log, "Uploading droplet");
        droplet::write_info(&layout.home_tree()?, &info)
            .map_err(io_err("writing staging_info.yml"))?;
        self.pack_droplet(req, &layout, &build_only, log, deadline)
            .await?;
        let in_buildpacks = Duration::from_micros(
            layout.detect_us.load(Ordering::Relaxed) + layout.steps_us.load(Ordering::Relaxed),
        );
        Ok((info, in_buildpacks))
    }

    /// Packs the droplet inside a staging container, as vcap: only the archive's bytes
    /// leave it, and they are checked as untrusted input before they become the droplet.
    /// Root on the host never walks the tree the build left.
    async fn pack_droplet(
        &self,
        req: &StagingRequest,
        layout: &Layout,
        left_out: &[PathBuf],
        log: &LogSink,
        deadline: Instant,
    ) -> Result<(), StagingError> {
        let tmp = req.droplet_out.with_extension("packing");
        let mut script = String::from("cd /home/vcap || exit 1\n");
        for p in left_out {
            let p = crate::shell::quote(&p.to_string_lossy());
            script.push_str(&format!("rm -rf -- {p} || exit 1\n"));
        }
        let parts = droplet::PARTS.join(" ");
        script.push_str(&format!(
            "for p in {parts}; do [ -e \"$p\" ] || [ -L \"$p\" ] || mkdir \"$p\" || exit 1; done\n\
             exec tar --create --file=- {parts} {env} {info}\n",
            env = droplet::LAUNCH_ENV,
            info = droplet::INFO,
        ));
        self.pack_sealed(req, layout, "pack".into(), script, &tmp, log, deadline)
            .await
            .map_err(|e| match e {
                Packing::Failed(e) => e,
                Packing::Exited(reason) => StagingError::StepFailed {
                    buildpack: "(the platform's droplet packer)".into(),
                    step: "pack the droplet",
                    reason,
                },
                Packing::Refused(e) => StagingError::BadDroplet(e),
            })?;
        std::fs::rename(&tmp, &req.droplet_out).map_err(io_err("storing the droplet"))
    }

    /// Saves each buildpack's `CACHE_DIR` after a successful staging: packed inside a
    /// staging container as vcap, checked, then renamed into place. A cache the build
    /// left as it was restored (`restored`: its digest then) is kept as it is.
    async fn save_caches(
        &self,
        req: &StagingRequest,
        layout: &Layout,
        store: &Path,
        (chosen, restored): (&[&Buildpack], &HashMap<String, u64>),
        log: &LogSink,
        deadline: Instant,
    ) {
        if let Err(e) = std::fs::create_dir_all(store) {
            say(log, &format!("Build cache not saved: {e}"));
            return;
        }
        for (i, bp) in chosen.iter().enumerate() {
            let before = restored.get(bp.name.as_str()).copied();
            if before.is_some() && before == cache_digest(&layout.cache, bp).await {
                say(log, &format!("Build cache for {}: unchanged", bp.name));
                continue;
            }
            let (archive_path, version_path) = cache_paths(store, bp);
            // Named for this staging: two stagings of one app on one cell (pushes
            // through two controllers) each pack their own, and the last rename wins.
            let tmp = archive_path.with_extension(format!("tgz.{}.tmp", req.id));
            let script = format!(
                "cd /tmp/cache/{} || exit 1\nexec tar --create --file=- .\n",
                bp.name
            );
            let saved = match self
                .pack_sealed(req, layout, format!("pc{i}"), script, &tmp, log, deadline)
                .await
            {
                Ok(()) => match std::fs::metadata(&tmp) {
                    Ok(m) if m.len() > MAX_CACHE_BYTES => Err(format!(
                        "packed, it is over the {} MiB a build cache may take",
                        MAX_CACHE_BYTES >> 20
                    )),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                Err(Packing::Exited(reason)) => Err(format!("packing it failed ({reason})")),
                Err(Packing::Failed(e)) => Err(e.to_string()),
                Err(Packing::Refused(e)) => Err(e.to_string()),
            };
            let saved = saved.and_then(|()| {
                std::fs::rename(&tmp, &archive_path).map_err(|e| e.to_string())?;
                std::fs::write(&version_path, &bp.version).map_err(|e| e.to_string())
            });
            match saved {
                Ok(()) => {
                    let size = std::fs::metadata(&archive_path)
                        .map(|m| m.len())
                        .unwrap_or(0);
                    say(
                        log,
                        &format!(
                            "Build cache for {}: saved ({} KiB packed)",
                            bp.name,
                            size >> 10
                        ),
                    )
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    say(log, &format!("Build cache for {}: not saved: {e}", bp.name))
                }
            }
        }
    }

    /// Runs `script`, a step that packs a plain tar to its stdout, and seals what it
    /// packed into `out` ([`archive::seal`]: checked, gzipped, synced). The plain tar,
    /// kept beside `out` meanwhile, is removed whatever happens; so is `out` on failure.
    #[allow(clippy::too_many_arguments)]
    async fn pack_sealed(
        &self,
        req: &StagingRequest,
        layout: &Layout,
        step: String,
        script: String,
        out: &Path,
        log: &LogSink,
        deadline: Instant,
    ) -> Result<(), Packing> {
        let mut plain = out.as_os_str().to_owned();
        plain.push(".tar");
        let plain = PathBuf::from(plain);
        let policy = ArchivePolicy::droplet();
        let output = Output::Archive {
            to: plain.clone(),
            max: policy.max_tar_bytes(),
        };
        let packed = self
            .run_step(req, layout, step, script, Vec::new(), log, output, deadline)
            .await;
        let sealed = match packed {
            Ok((ExitReason::Exited(0), _)) => {
                let (from, to, deadline) = (plain.clone(), out.to_path_buf(), deadline.into_std());
                tokio::task::spawn_blocking(move || archive::seal(&from, &to, policy, deadline))
                    .await
                    .unwrap_or_else(|e| Err(ArchiveError::Corrupt(std::io::Error::other(e))))
                    .map(|_| ())
                    .map_err(Packing::Refused)
            }
            Ok((reason, _)) => Err(Packing::Exited(reason)),
            Err(e) => Err(Packing::Failed(e)),
        };
        let _ = std::fs::remove_file(&plain);
        sealed
    }

    /// Keeps a Cloud Native buildpack's `cache` layers for its next staging: copied into
    /// its `CACHE_DIR` inside a staging container, as vcap.
    #[allow(clippy::too_many_arguments)]
    async fn cache_cnb_layers(
        &self,
        req: &StagingRequest,
        layout: &Layout,
        i: usize,
        bp: &Buildpack,
        cached: &[String],
        log: &LogSink,
        deadline: Instant,
    ) -> Result<(), StagingError> {
        let n = &bp.name;
        let mut script = format!(
            "set -e\nrm -rf /tmp/cache/{n}/layers\nmkdir -p /tmp/cache/{n}/layers\ncd /home/vcap/layers/{n}\n"
        );
        for layer in cached {
            let q = crate::shell::quote(layer);
            let t = crate::shell::quote(&format!("{layer}.toml"));
            script.push_str(&format!("cp -a -- {q} {t} /tmp/cache/{n}/layers/\n"));
        }
        let (reason, _) = self
            .run_step(
                req,
                layout,
                format!("pl{i}"),
                script,
                Vec::new(),
                log,
                Output::Log,
                deadline,
            )
            .await?;
        if reason != ExitReason::Exited(0) {
            return Err(StagingError::BadLayers {
                buildpack: n.to_string(),
                detail: format!("its cache layers could not be kept ({reason})"),
            });
        }
        Ok(())
    }

    /// Runs every candidate's detect at once; the first by position that passes wins.
    async fn detect<'a>(
        &self,
        req: &'a StagingRequest,
        layout: &Layout,
        log: &LogSink,
        deadline: Instant,
    ) -> Result<(&'a Buildpack, Option<DetectPlan>), StagingError> {
        let runs = req
            .buildpacks
            .iter()
            .enumerate()
            .map(|(i, bp)| self.detect_one(req, layout, i, bp, log, deadline));
        let results = futures_join_all(runs).await;
        for (bp, res) in req.buildpacks.iter().zip(results) {
            if let Detection::Pass { name, plan } = res? {
                let label = if name.is_empty() {
                    String::new()
                } else {
                    format!(" ({name})")
                };
                say(log, &format!("Detected {}{label}", bp.name));
                return Ok((bp, plan));
            }
        }
        Err(StagingError::NoneDetected)
    }

    /// Runs one buildpack's detect, as its dialect has it.
    async fn detect_one(
        &self,
        req: &StagingRequest,
        layout: &Layout,
        i: usize,
        bp: &Buildpack,
        log: &LogSink,
        deadline: Instant,
    ) -> Result<Detection, StagingError> {
        if !bp.dir.join("bin/detect").is_file() {
            return Ok(Detection::Fail); // a supply-only Cloud Foundry buildpack
        }
        let n = &bp.name;
        let script = match bp.dialect {
            Dialect::CloudNative => {
                format!(
                    "exec /tmp/buildpacks/{n}/bin/detect /tmp/platform /tmp/stage/{n}.plan.toml\n"
                )
            }
            _ => format!("exec /tmp/buildpacks/{n}/bin/detect /home/vcap/app\n"),
        };
        let (reason, out) = self
            .run_step(
                req,
                layout,
                format!("d{i}"),
                script,
                step_env(bp),
                log,
                Output::Capture,
                deadline,
            )
            .await?;
        let name = out.lines().next().unwrap_or("").trim().to_string();
        match (bp.dialect, reason) {
            (Dialect::CloudNative, ExitReason::Exited(0)) => {
                let raw =
                    cnb::read_left(&layout.stage_tree()?, Path::new(&format!("{n}.plan.toml")))
                        .map_err(|detail| StagingError::BadPlan {
                            buildpack: n.to_string(),
                            detail,
                        })?
                        .unwrap_or_default();
                let plan = DetectPlan::parse(&raw).map_err(|detail| StagingError::BadPlan {
                    buildpack: n.to_string(),
                    detail,
                })?;
                Ok(Detection::Pass {
                    name,
                    plan: Some(plan),
                })
            }
            (Dialect::CloudNative, ExitReason::Exited(100)) => Ok(Detection::Fail),
            // CNB: any other code is an error, not a "no".
            (Dialect::CloudNative, reason) => Err(StagingError::StepFailed {
                buildpack: n.to_string(),
                step: "detect",
                reason,
            }),
            (_, ExitReason::Exited(0)) => Ok(Detection::Pass { name, plan: None }),
            _ => Ok(Detection::Fail),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        req: &StagingRequest,
        layout: &Layout,
        step: String,
        script: String,
        extra_env: Vec<String>,
        log: &LogSink,
        output: Output,
        deadline: Instant,
    ) -> Result<(ExitReason, String), StagingError> {
        let memory_bytes = req.memory.bytes().max(MIN_STAGING_MEMORY);
        let mut env = vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".to_string(),
            "HOME=/home/vcap".to_string(),
            "USER=vcap".to_string(),
            "LANG=C.UTF-8".to_string(),
            "TMPDIR=/tmp".to_string(),
            format!("CF_STACK={}", req.stack),
            format!("MEMORY_LIMIT={}m", memory_bytes >> 20),
        ];
        env.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
        env.extend(extra_env);
        let id = format!("stg-{}-{step}", req.id);
        let mut mounts = layout.mounts(req);
        // Loopback only, unless the app may reach the world: then an address of its own,
        // in the outbound set for as long as the step runs.
        let (network, outbound_ip) = match &req.outbound {
            None => (NetworkMode::Isolated, None),
            Some(resolv) => {
                let address = self.runtime.allocate_address(&id)?;
                let ip = address.instance_ip;
                if let Err(e) = paas_runtime::network::set_outbound(ip, true).await {
                    self.runtime.release_address(&address);
                    return Err(RuntimeError::from(e).into());
                }
                if let Some(r) = resolv {
                    mounts.push(Mount {
                        target: "/etc/resolv.conf".into(),
                        kind: MountKind::Bind {
                            source: r.clone(),
                            readonly: true,
                        },
                    });
                }
                (NetworkMode::Routed(address), Some(ip))
            }
        };
        let cfg = ContainerConfig {
            id,
            hostname: "staging".to_string(),
            stack: req.stack.clone(),
            mounts,
            args: vec!["/bin/bash".into(), "-c".into(), timed(&step, &script)],
            env,
            cwd: "/home/vcap/app".into(),
            uid: VCAP_UID,
            gid: VCAP_GID,
            limits: Limits {
                memory_bytes,
                pids: 1024,
            },
            network,
            writable: None,
            id_map: req.id_map,
            stdin: false,
            tty: None,
            survivor_label: None,
        };
        let revoke = || async {
            if let Some(ip) = outbound_ip {
                if let Err(e) = paas_runtime::network::set_outbound(ip, false).await {
                    tracing::warn!("revoking a staging container's outbound access: {e}");
                }
            }
        };
        let mut c = match self.runtime.start(cfg).await {
            Ok(c) => c,
            Err(e) => {
                revoke().await;
                return Err(e.into());
            }
        };
        let stdout = c.stdout.take();
        let stderr = c.stderr.take();
        let work = async {
            let out = async {
                match &output {
                    Output::Archive { to, max } => {
                        save_stream(stdout, to, *max).await.map(|_| String::new())
                    }
                    _ => Ok(pump(stdout, LogStream::Out, log, &output).await),
                }
            };
            let (out, _) = tokio::join!(out, pump(stderr, LogStream::Err, log, &Output::Log));
            (c.wait().await, out)
        };
        let res = tokio::time::timeout_at(deadline, work).await;
        let res = match res {
            Ok((reason, Ok(out))) => Ok((reason, out)),
            Ok((_, Err(e))) => Err(StagingError::Io {
                action: "receiving the archive a staging step packed".into(),
                source: e,
            }),
            Err(_) => {
                c.stop(Duration::ZERO).await;
                Err(StagingError::Timeout(req.timeout))
            }
        };
        c.destroy().await;
        revoke().await;
        let timed = layout
            .stage_tree()
            .ok()
            .and_then(|t| t.read_string(Path::new(&format!("time-{step}")), 64).ok())
            .flatten();
        if let Some(us) = timed {
            let us: u64 = us.trim().parse().unwrap_or(0);
            // Steps named `p…` are the platform's own (packing, copying caches).
            if step.starts_with('p') {
            } else if step.starts_with('d') {
                layout.detect_us.fetch_max(us, Ordering::Relaxed);
            } else {
                layout.steps_us.fetch_add(us, Ordering::Relaxed);
            }
        }
        res
    }
}

/// The largest build cache kept for one buildpack, gzipped.
const MAX_CACHE_BYTES: u64 = 1 << 30;

/// The most names a build cache may hold for its digest to be taken (and so for it to
/// be kept without packing it again when a build leaves it unchanged).
const MAX_DIGESTED_NAMES: usize = 200_000;

/// The digest of `bp`'s `CACHE_DIR` under `work_cache` ([`Tree::digest`]); `None` when
/// it cannot be taken.
async fn cache_digest(work_cache: &Path, bp: &Buildpack) -> Option<u64> {
    let dir = work_cache.join(bp.name.as_str());
    tokio::task::spawn_blocking(move || {
        Tree::open(&dir)
            .and_then(|t| t.digest(Path::new(""), MAX_DIGESTED_NAMES))
            .ok()
    })
    .await
    .ok()
    .flatten()
}

/// Restores each buildpack's cache from `store` into `work_cache/<name>` (its
/// `CACHE_DIR`), if it was saved by the same version of that buildpack; answers the
/// digest of each restored, by buildpack name.
async fn restore_caches(
    store: &Path,
    work_cache: &Path,
    chosen: &[&Buildpack],
    (uid, gid): (u32, u32),
    log: &LogSink,
) -> HashMap<String, u64> {
    let mut digests = HashMap::new();
    for bp in chosen {
        let (archive_path, version_path) = cache_paths(store, bp);
        let dir = work_cache.join(bp.name.as_str());
        let saved = std::fs::read_to_string(&version_path).unwrap_or_default();
        if saved.trim() != bp.version || !archive_path.is_file() {
            let why = if saved.is_empty() {
                "first staging"
            } else {
                "the buildpack changed"
            };
            say(log, &format!("Build cache for {}: none ({why})", bp.name));
            continue;
        }
        let target = dir.clone();
        let restored = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let f = std::fs::File::open(&archive_path).map_err(|e| e.to_string())?;
            archive::unpack(
                std::io::BufReader::new(f),
                &target,
                ArchivePolicy::droplet(),
                Some((uid, gid)),
            )
            .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match restored {
            Ok(()) => {
                say(log, &format!("Build cache for {}: restored", bp.name));
                if let Some(d) = cache_digest(work_cache, bp).await {
                    digests.insert(bp.name.to_string(), d);
                }
            }
            Err(e) => {
                // A broken cache costs a slower build, never a failed one.
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::os::unix::fs::chown(&dir, Some(uid), Some(gid));
                say(
                    log,
                    &format!(
                        "Build cache for {}: dropped, it could not be read ({e})",
                        bp.name
                    ),
                );
            }
        }
    }
    digests
}

/// Why a packing step's archive was not stored ([`Stager::pack_sealed`]).
enum Packing {
    /// The step could not run, or its output could not be saved.
    Failed(StagingError),
    /// The step ended other than with 0.
    Exited(ExitReason),
    /// What it packed did not pass the checks, or could not be stored.
    Refused(ArchiveError),
}

fn cache_paths(store: &Path, bp: &Buildpack) -> (PathBuf, PathBuf) {
    (
        store.join(format!("{}.tgz", bp.name)),
        store.join(format!("{}.version", bp.name)),
    )
}

/// What a detect said.
enum Detection {
    Pass {
        name: String,
        plan: Option<DetectPlan>,
    },
    Fail,
}

/// The steps (name, script) a buildpack runs in its place in the group, by dialect.
///
/// - Heroku: `compile`, seeing the `export` files of Heroku buildpacks before it;
/// - Cloud Foundry: `supply` when it has one, then for the last `finalize`, or `compile`
///   for an older final buildpack;
/// - Cloud Native: `build`, after sourcing the build environment of earlier layers.
fn dialect_steps(
    bp: &Buildpack,
    before: &[&Buildpack],
    idx: &str,
    last: bool,
) -> Result<Vec<(&'static str, String)>, StagingError> {
    let n = &bp.name;
    let has = |f: &str| bp.dir.join("bin").join(f).is_file();
    let mut steps = Vec::new();
    match bp.dialect {
        Dialect::Heroku => {
            let mut script = String::from("set -e\n");
            for b in before.iter().filter(|b| b.dialect == Dialect::Heroku) {
                script.push_str(&format!(
                    "if [ -f /tmp/buildpacks/{m}/export ]; then . /tmp/buildpacks/{m}/export; fi\n",
                    m = b.name
                ));
            }
            script.push_str(&format!(
                "exec /tmp/buildpacks/{n}/bin/compile /home/vcap/app /tmp/cache/{n} /tmp/env\n"
            ));
            steps.push(("compile", script));
        }
        Dialect::CloudFoundry => {
            if has("supply") {
                steps.push((
                    "supply",
                    format!("exec /tmp/buildpacks/{n}/bin/supply /home/vcap/app /tmp/cache/{n} /home/vcap/deps {idx}\n"),
                ));
            } else if !last {
                return Err(StagingError::BadOrder {
                    buildpack: n.to_string(),
                    position: "before other buildpacks",
                    detail: "it has no bin/supply; make it the last buildpack",
                });
            }
            if last {
                if has("finalize") {
                    steps.push((
                        "finalize",
                        format!(
                            "exec /tmp/buildpacks/{n}/bin/finalize /home/vcap/app /tmp/cache/{n} /home/vcap/deps {idx} /home/vcap/profile.d\n"
                        ),
                    ));
                } else if has("compile") {
                    steps.push((
                        "compile",
                        format!(
                            "exec /tmp/buildpacks/{n}/bin/compile /home/vcap/app /tmp/cache/{n}\n"
                        ),
                    ));
                } else {
                    return Err(StagingError::BadOrder {
                        buildpack: n.to_string(),
                        position: "last",
                        detail: "it has neither bin/finalize nor bin/compile; add a final buildpack after it",
                    });
                }
            }
        }
        Dialect::CloudNative => {
            steps.push((
                "build",
                format!(
                    "if [ -d /tmp/cache/{n}/layers ]; then cp -a /tmp/cache/{n}/layers/. /home/vcap/layers/{n}/ || exit 1; fi\n\
                     if [ -f /tmp/stage/build-env.sh ]; then . /tmp/stage/build-env.sh; fi\n\
                     exec /tmp/buildpacks/{n}/bin/build /home/vcap/layers/{n} /tmp/platform /tmp/stage/{n}.bp-plan.toml\n"
                ),
            ));
        }
    }
    Ok(steps)
}

/// The environment a buildpack's steps get beyond the common one: the Cloud Native
/// Buildpacks variables for that dialect.
fn step_env(bp: &Buildpack) -> Vec<String> {
    if bp.dialect != Dialect::CloudNative {
        return Vec::new();
    }
    let n = &bp.name;
    vec![
        format!("CNB_BUILDPACK_DIR=/tmp/buildpacks/{n}"),
        "CNB_PLATFORM_DIR=/tmp/platform".to_string(),
        format!("CNB_BUILD_PLAN_PATH=/tmp/stage/{n}.plan.toml"),
        format!("CNB_LAYERS_DIR=/home/vcap/layers/{n}"),
        format!("CNB_BP_PLAN_PATH=/tmp/stage/{n}.bp-plan.toml"),
        "CNB_TARGET_OS=linux".to_string(),
        format!(
            "CNB_TARGET_ARCH={}",
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            }
        ),
    ]
}

/// What to do with a step's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Log,
    Capture,
    /// The step packs an archive to stdout: its bytes go to this file, at most `max` of
    /// them (then the pipe is closed, and the step fails).
    Archive {
        to: PathBuf,
        max: u64,
    },
}

/// The longest line kept from a buildpack; the rest of a longer line is cut.
const MAX_LINE: usize = 16 * 1024;
/// Lines per second a step may print (on each stream); more are dropped and counted, as
/// for instances, so a build cannot flood the log store or the client's stream.
const LINES_PER_SECOND: u32 = 1000;
/// The most a step's captured output may be (detect names, release YAML).
const MAX_CAPTURE: usize = 1 << 20;

async fn pump(
    pipe: Option<impl AsyncRead + Unpin>,
    stream: LogStream,
    log: &LogSink,
    output: &Output,
) -> String {
    let mut captured = String::new();
    let Some(pipe) = pipe else { return captured };
    let mut limit = paas_runtime::output::RateLimit::new(LINES_PER_SECOND);
    paas_runtime::output::for_each_line(pipe, MAX_LINE, |line| {
        if *output == Output::Capture {
            if captured.len() + line.len() < MAX_CAPTURE {
                captured.push_str(&line);
                captured.push('\n');
            }
            return;
        }
        let now = tokio::time::Instant::now();
        if let Some(dropped) = limit.dropped_before(now) {
            say(
                log,
                &format!("{dropped} lines of build output dropped: a step may print at most {LINES_PER_SECOND} lines a second"),
            );
        }
        if limit.admit(now) {
            let _ = log.send((stream, line));
        }
    })
    .await;
    if let Some(dropped) = limit.dropped_since_report() {
        say(
            log,
            &format!("{dropped} lines of build output dropped: a step may print at most {LINES_PER_SECOND} lines a second"),
        );
    }
    captured
}

/// Copies a step's stdout to a new file `to`, at most `max` bytes. More is an error; the
/// pipe is closed then, so the step ends with a broken pipe. `to` is not synced: it is
/// read at once and removed ([`archive::seal`] syncs what is kept).
async fn save_stream(
    pipe: Option<impl AsyncRead + Unpin>,
    to: &Path,
    max: u64,
) -> std::io::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(pipe) = pipe else {
        return Err(std::io::Error::other("the step had no output pipe"));
    };
    let mut f = tokio::fs::File::create(to).await?;
    let n = tokio::io::copy(&mut pipe.take(max + 1), &mut f).await?;
    if n > max {
        return Err(std::io::Error::other(format!(
            "the archive is larger than the {} MiB allowed",
            max >> 20
        )));
    }
    f.flush().await?;
    Ok(n)
}

fn say(log: &LogSink, msg: &str) {
    let _ = log.send((LogStream::Out, format!("-----> {msg}")));
}

/// Polls futures together (each drives its own container) and returns their outputs in
/// order. They borrow the stager, so they cannot be spawned as `'static` tasks.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futs.map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// `bin/release` output: YAML whose `default_process_types` maps names to commands.
/// What `bin/release` says: process types, and config vars that are defaults for the
/// app's environment (the app's own variables win, as on Heroku).
#[derive(Debug, Default, serde::Deserialize)]
pub struct Release {
    #[serde(default)]
    pub default_process_types: BTreeMap<String, String>,
    #[serde(default)]
    pub config_vars: BTreeMap<String, String>,
}

pub fn parse_release(out: &str) -> Result<Release, String> {
    if out.trim().is_empty() {
        return Ok(Release::default());
    }
    let r: Option<Release> = serde_yaml_ng::from_str(out).map_err(|e| e.to_string())?;
    Ok(r.unwrap_or_default())
}

/// A Cloud Foundry buildpack's `launch.yml`: its processes, as (type, command).
pub fn parse_launch_yml(raw: &str) -> Result<Vec<(String, String)>, String> {
    #[derive(serde::Deserialize)]
    struct LaunchYml {
        #[serde(default)]
        processes: Vec<LaunchYmlProcess>,
    }
    #[derive(serde::Deserialize)]
    struct LaunchYmlProcess {
        #[serde(rename = "type")]
        kind: String,
        command: String,
    }
    let l: LaunchYml = serde_yaml_ng::from_str(raw).map_err(|e| format!("launch.yml: {e}"))?;
    Ok(l.processes
        .into_iter()
        .map(|p| (p.kind, p.command))
        .collect())
}

/// A Procfile: `name: command` lines; blank lines and `#` comments are skipped.
pub fn parse_procfile(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, v)| {
            !k.is_empty()
                && !v.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
        .collect()
}

/// The scratch folders of one staging.
struct Layout {
    home: PathBuf,
    cache: PathBuf,
    env: PathBuf,
    buildpacks: PathBuf,
    /// `/tmp/stage`: build plans and the build environment of Cloud Native layers.
    stage: PathBuf,
    /// Microseconds in detect scripts (they run in parallel: the longest counts).
    detect_us: AtomicU64,
    /// Microseconds in every other buildpack script.
    steps_us: AtomicU64,
    /// vcap as the host sees it ([`StagingRequest::owner`]).
    owner: (u32, u32),
}

/// Wraps a step's script so that it records how long the buildpack's own code ran, in
/// microseconds, in `/tmp/stage/time-STEP` (bash's clock, read with no process started).
fn timed(step: &str, script: &str) -> String {
    format!(
        "__paas_t0=${{EPOCHREALTIME/./}}\n( {script} )\n__paas_rc=$?\n\
         echo $(( ${{EPOCHREALTIME/./}} - __paas_t0 )) > /tmp/stage/time-{step} 2>/dev/null\n\
         exit $__paas_rc\n"
    )
}

/// `deps/<idx>` is zero-padded when there are more than ten buildpacks, as in Cloud Foundry.
fn deps_index(i: usize, len: usize) -> String {
    let width = if len > 10 { 2 } else { 1 };
    format!("{i:0width$}")
}

impl Layout {
    fn new(work: &Path, owner: (u32, u32)) -> Self {
        Layout {
            owner,
            home: work.join("home"),
            cache: work.join("cache"),
            env: work.join("env"),
            stage: work.join("stage"),
            detect_us: AtomicU64::new(0),
            steps_us: AtomicU64::new(0),
            buildpacks: work.join("buildpacks"),
        }
    }

    /// `/home/vcap` as a [`Tree`]: the build's output, which only the build controls.
    fn home_tree(&self) -> Result<Tree, StagingError> {
        Tree::open(&self.home).map_err(io_err("opening the build folder"))
    }

    /// `/tmp/stage` as a [`Tree`].
    fn stage_tree(&self) -> Result<Tree, StagingError> {
        Tree::open(&self.stage).map_err(io_err("opening the staging folder"))
    }

    async fn create(&self, req: &StagingRequest) -> Result<(), StagingError> {
        let home = self.home.clone();
        let cache = self.cache.clone();
        let env_dir = self.env.clone();
        let bps = self.buildpacks.clone();
        let stage = self.stage.clone();
        let req = req.clone();
        let (uid, gid) = self.owner;
        tokio::task::spawn_blocking(move || -> Result<(), StagingError> {
            for d in ["app", "deps", "profile.d", "tmp"] {
                let p = home.join(d);
                std::fs::create_dir_all(&p).map_err(io_err("creating the build folder"))?;
            }
            for d in [&cache, &env_dir, &bps, &stage] {
                std::fs::create_dir_all(d).map_err(io_err("creating the build folder"))?;
            }
            let pkg = std::fs::File::open(&req.package).map_err(io_err("opening the package"))?;
            archive::unpack(
                std::io::BufReader::new(pkg),
                &home.join("app"),
                ArchivePolicy::upload(),
                Some((uid, gid)),
            )
            .map_err(StagingError::Package)?;
            for (k, v) in &req.env {
                std::fs::write(env_dir.join(k), v).map_err(io_err("writing ENV_DIR"))?;
            }
            for bp in &req.buildpacks {
                copy_dir(&bp.dir, &bps.join(bp.name.as_str()), (uid, gid))
                    .map_err(io_err(format!("copying buildpack {}", bp.name)))?;
                let own_cache = cache.join(bp.name.as_str());
                std::fs::create_dir_all(&own_cache).map_err(io_err("creating a cache folder"))?;
                std::os::unix::fs::chown(&own_cache, Some(uid), Some(gid))
                    .map_err(io_err("handing the cache folder to vcap"))?;
            }
            for d in [
                home.clone(),
                home.join("app"),
                home.join("deps"),
                home.join("profile.d"),
                home.join("tmp"),
                cache.clone(),
                stage.clone(),
            ] {
                std::os::unix::fs::chown(&d, Some(uid), Some(gid))
                    .map_err(io_err("handing the build folder to vcap"))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StagingError::Io {
            action: "preparing the build".into(),
            source: std::io::Error::other(e),
        })?
    }

    /// `deps/<idx>` for Cloud Foundry buildpacks, `layers/<name>` for Cloud Native ones.
    /// Detect scripts have run by now, so the folders are made through the tree.
    async fn create_dialect_dirs(&self, chosen: &[&Buildpack]) -> Result<(), StagingError> {
        let home = self.home_tree()?;
        for (i, bp) in chosen.iter().enumerate() {
            let dir = match bp.dialect {
                Dialect::CloudFoundry => Path::new("deps").join(deps_index(i, chosen.len())),
                Dialect::CloudNative => Path::new("layers").join(bp.name.as_str()),
                Dialect::Heroku => continue,
            };
            let made = home.mkdir_all(&dir, 0o755).and_then(|()| {
                for d in dir.ancestors().filter(|d| !d.as_os_str().is_empty()) {
                    home.chown(d, self.owner.0, self.owner.1)?;
                }
                Ok(())
            });
            made.map_err(io_err(format!("creating {}", dir.display())))?;
        }
        Ok(())
    }

    /// Writes the Buildpack Plan (the build step itself brings back the layers cached by
    /// the last build).
    async fn prepare_cnb_build(
        &self,
        bp: &Buildpack,
        plan: &DetectPlan,
    ) -> Result<(), StagingError> {
        let plan_path = PathBuf::from(format!("{}.bp-plan.toml", bp.name));
        let stage = self.stage_tree()?;
        stage
            .write(&plan_path, cnb::buildpack_plan(plan).as_bytes(), 0o644)
            .and_then(|()| stage.chown(&plan_path, self.owner.0, self.owner.1))
            .map_err(io_err("writing the buildpack plan"))
    }

    /// After a Cloud Native build: writes the build environment of every `build` layer so
    /// far for later buildpacks, and returns the names of this buildpack's `cache` layers.
    async fn after_cnb_build(
        &self,
        bp: &Buildpack,
        so_far: &[&Buildpack],
    ) -> Result<Vec<String>, StagingError> {
        let bad = |detail: String| StagingError::BadLayers {
            buildpack: bp.name.to_string(),
            detail,
        };
        let home = self.home_tree()?;
        let dir = Path::new("layers").join(bp.name.as_str());
        let cached = cnb::layers(&home, &dir)
            .map_err(bad)?
            .into_iter()
            .filter(|l| l.types.cache)
            .map(|l| l.name)
            .collect();
        let mut script = String::from(cnb::ENV_FUNCTIONS);
        for b in so_far.iter().filter(|b| b.dialect == Dialect::CloudNative) {
            let bdir = Path::new("layers").join(b.name.as_str());
            for layer in cnb::layers(&home, &bdir)
                .map_err(bad)?
                .iter()
                .filter(|l| l.types.build)
            {
                let seen = Path::new("/home/vcap").join(&layer.dir);
                for line in cnb::env_lines(&home, layer, &seen, Phase::Build).map_err(bad)? {
                    script.push_str(&line);
                    script.push('\n');
                }
            }
        }
        self.stage_tree()?
            .write(Path::new("build-env.sh"), script.as_bytes(), 0o644)
            .map_err(io_err("writing the build environment"))?;
        Ok(cached)
    }

    /// Process types the buildpacks declared in their own files: Cloud Foundry's
    /// `deps/<idx>/launch.yml` and Cloud Native's `launch.toml`; later buildpacks win.
    fn declared_processes(
        &self,
        chosen: &[&Buildpack],
    ) -> Result<BTreeMap<String, String>, StagingError> {
        let mut out = BTreeMap::new();
        let home = self.home_tree()?;
        for (i, bp) in chosen.iter().enumerate() {
            let bad = |detail: String| StagingError::BadRelease {
                buildpack: bp.name.to_string(),
                detail,
            };
            match bp.dialect {
                Dialect::CloudFoundry => {
                    let path = Path::new("deps")
                        .join(deps_index(i, chosen.len()))
                        .join("launch.yml");
                    if let Some(raw) = cnb::read_left(&home, &path).map_err(bad)? {
                        let processes =
                            parse_launch_yml(&raw).map_err(|detail| StagingError::BadRelease {
                                buildpack: bp.name.to_string(),
                                detail,
                            })?;
                        out.extend(processes);
                    }
                }
                Dialect::CloudNative => {
                    let launch =
                        cnb::LaunchToml::read(&home, &Path::new("layers").join(bp.name.as_str()))
                            .map_err(|detail| StagingError::BadLayers {
                            buildpack: bp.name.to_string(),
                            detail,
                        })?;
                    out.extend(
                        launch
                            .processes
                            .iter()
                            .map(|p| (p.kind.clone(), p.command_line())),
                    );
                }
                Dialect::Heroku => {}
            }
        }
        Ok(out)
    }

    /// Drops build-only layers and writes the launch environment script
    /// ([`droplet::LAUNCH_ENV`]): Cloud Foundry's `deps/<idx>/{bin,lib,env}` and the
    /// environment of Cloud Native `launch` layers.
    /// Returns the build-only layers to leave out of the droplet (paths under
    /// `/home/vcap`).
    async fn finish_droplet(
        &self,
        chosen: &[&Buildpack],
        config_vars: &BTreeMap<String, String>,
    ) -> Result<Vec<PathBuf>, StagingError> {
        let mut dropped = Vec::new();
        let mut lines: Vec<String> = config_vars
            .iter()
            .filter(|(k, _)| cnb::valid_var(k))
            .map(|(k, v)| format!("_paas_default {k} {}", crate::shell::quote(v)))
            .collect();
        let home = self.home_tree()?;
        let is_dir = |p: &Path| matches!(home.kind(p), Ok(Some(tree::Kind::Dir)));
        for (i, bp) in chosen.iter().enumerate() {
            let bad = |detail: String| StagingError::BadLayers {
                buildpack: bp.name.to_string(),
                detail,
            };
            match bp.dialect {
                Dialect::CloudFoundry => {
                    let idx = deps_index(i, chosen.len());
                    let dir = Path::new("deps").join(&idx);
                    let seen = format!("/home/vcap/deps/{idx}");
                    if is_dir(&dir.join("bin")) {
                        lines.push(format!("_paas_prepend PATH {seen}/bin :"));
                    }
                    if is_dir(&dir.join("lib")) {
                        lines.push(format!("_paas_prepend LD_LIBRARY_PATH {seen}/lib :"));
                    }
                    for (k, v) in cnb::env_files(&home, &dir.join("env")).map_err(bad)? {
                        if cnb::valid_var(&k) {
                            lines.push(format!(
                                "export {k}={}",
                                crate::shell::quote(v.trim_end_matches('\n'))
                            ));
                        }
                    }
                }
                Dialect::CloudNative => {
                    let dir = Path::new("layers").join(bp.name.as_str());
                    for layer in cnb::layers(&home, &dir).map_err(bad)? {
                        if layer.types.launch {
                            let seen = Path::new("/home/vcap").join(&layer.dir);
                            lines.extend(
                                cnb::env_lines(&home, &layer, &seen, Phase::Launch).map_err(bad)?,
                            );
                        } else {
                            // Dropped by the packing step, inside the container: a
                            // tenant's folder may be deeper than paasd should walk.
                            dropped.push(layer.dir.clone());
                            dropped.push(dir.join(format!("{}.toml", layer.name)));
                        }
                    }
                }
                Dialect::Heroku => {}
            }
        }
        // Always written, so whatever the build left under this name is replaced.
        let mut script =
            String::from("# Written at staging: the environment buildpacks set up for launch.\n");
        if !lines.is_empty() {
            script.push_str(cnb::ENV_FUNCTIONS);
            for l in lines {
                script.push_str(&l);
                script.push('\n');
            }
        }
        home.write(Path::new(droplet::LAUNCH_ENV), script.as_bytes(), 0o644)
            .map_err(io_err("writing the launch environment"))?;
        Ok(dropped)
    }

    fn mounts(&self, req: &StagingRequest) -> Vec<Mount> {
        let bind = |source: &Path, target: &str, readonly: bool| Mount {
            target: target.to_string(),
            kind: MountKind::Bind {
                source: source.to_path_buf(),
                readonly,
            },
        };
        let mut m = vec![
            Mount {
                target: "/tmp".into(),
                kind: MountKind::Tmpfs {
                    size_bytes: 256 << 20,
                    mode: 0o1777,
                    uid: 0,
                    gid: 0,
                },
            },
            bind(&self.home, "/home/vcap", false),
            bind(&self.cache, "/tmp/cache", false),
            bind(&self.env, "/tmp/env", true),
            bind(&self.env, "/tmp/platform/env", true),
            bind(&self.stage, "/tmp/stage", false),
        ];
        for bp in &req.buildpacks {
            m.push(bind(
                &self.buildpacks.join(bp.name.as_str()),
                &format!("/tmp/buildpacks/{}", bp.name),
                false,
            ));
        }
        m
    }
}

/// Copies a buildpack folder, giving every file to vcap. Symlinks are copied as links.
fn copy_dir(from: &Path, to: &Path, (uid, gid): (u32, u32)) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    std::os::unix::fs::chown(to, Some(uid), Some(gid))?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type()?;
        if ft.is_dir() {
            copy_dir(&src, &dst, (uid, gid))?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            std::os::unix::fs::lchown(&dst, Some(uid), Some(gid))?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
            std::os::unix::fs::chown(&dst, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfile_lines_become_process_types() {
        let p = parse_procfile(
            "# comment\nweb: python3 app.py --port $PORT\nworker:  ./w\n\nbad line\n: x\n",
        );
        assert_eq!(p.get("web").unwrap(), "python3 app.py --port $PORT");
        assert_eq!(p.get("worker").unwrap(), "./w");
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn release_yaml_gives_default_process_types() {
        let p = parse_release(
            "---\naddons: []\ndefault_process_types:\n  web: npm start\nconfig_vars:\n  A: b\n",
        )
        .unwrap();
        assert_eq!(p.default_process_types.get("web").unwrap(), "npm start");
        assert_eq!(p.config_vars.get("A").unwrap(), "b");
        assert!(parse_release("").unwrap().default_process_types.is_empty());
        assert!(parse_release("default_process_types: [1, 2").is_err());
    }
}
