//! Space quotas: what a change would add to a space's use, checked before anything of
//! it is made (before staging, for a push).

use paas_api::auth::SpaceUsage;
use paas_api::AppSettings;

use super::{Error, ErrorKind, Platform};
use crate::store::Release;

/// What a change adds to its space's use (negative: frees).
#[derive(Debug, Default, Clone, Copy)]
pub struct Demand {
    pub memory_mb: i64,
    pub instances: i64,
    pub routes: i64,
    pub services: i64,
    pub tasks: i64,
}

/// The memory (MiB) and instances an app asks for with `settings`, over every process
/// type it runs: those of `release` (its Procfile's too), else those the settings name.
pub fn demand(settings: &AppSettings, release: Option<&Release>) -> (u64, u32) {
    let mib = |s: &AppSettings| s.memory.bytes() / (1024 * 1024);
    let mut plans: Vec<AppSettings> = match release {
        Some(r) => r
            .processes(settings)
            .into_iter()
            .map(|p| p.settings)
            .collect(),
        None => std::iter::once(settings.clone())
            .chain(
                settings
                    .processes
                    .keys()
                    .filter(|p| *p != paas_api::WEB)
                    .map(|p| settings.for_process(p)),
            )
            .collect(),
    };
    plans.retain(|s| s.instances > 0);
    let memory = plans.iter().map(|s| mib(s) * u64::from(s.instances)).sum();
    let instances = plans.iter().map(|s| s.instances).sum();
    (memory, instances)
}

/// What one task takes of its space's memory, in MiB.
pub fn task_memory(memory: paas_api::MemorySize) -> u64 {
    memory.bytes() / (1024 * 1024)
}

impl Demand {
    /// What running with `new` settings and release instead of `old` (none: not
    /// running) adds.
    pub fn settings(
        old: Option<(&AppSettings, Option<&Release>)>,
        new: (&AppSettings, Option<&Release>),
    ) -> Self {
        let (m0, i0) = old.map_or((0, 0), |(s, r)| demand(s, r));
        let (m1, i1) = demand(new.0, new.1);
        Demand {
            memory_mb: m1 as i64 - m0 as i64,
            instances: i64::from(i1) - i64::from(i0),
            ..Demand::default()
        }
    }
}

impl Platform {
    /// Refuses a change that would take `space` over its quota, with the numbers.
    pub async fn check_quota(&self, space: &str, demand: Demand) -> Result<(), Error> {
        let Some(doc) = self.store.space(space).await.map_err(Error::internal)? else {
            return Ok(());
        };
        let q = &doc.quota;
        if *q == Default::default() {
            return Ok(());
        }
        let usage: SpaceUsage = self.space_usage(space).await?;
        let checks = [
            (
                "MiB of memory",
                q.memory_mb,
                usage.memory_mb as i64,
                demand.memory_mb,
            ),
            (
                "instances",
                q.instances.map(u64::from),
                i64::from(usage.instances),
                demand.instances,
            ),
            (
                "routes",
                q.routes.map(u64::from),
                i64::from(usage.routes),
                demand.routes,
            ),
            (
                "services",
                q.services.map(u64::from),
                i64::from(usage.services),
                demand.services,
            ),
            (
                "tasks at once",
                q.tasks.map(u64::from),
                i64::from(usage.tasks),
                demand.tasks,
            ),
        ];
        for (what, limit, used, more) in checks {
            let Some(limit) = limit else { continue };
            if more > 0 && used + more > limit as i64 {
                return Err(Error::new(
                    ErrorKind::Refused,
                    "quota-exceeded",
                    format!(
                        "space {space} may use {limit} {what}; it uses {used} and this asks for {more} more"
                    ),
                    Some("scale down or delete what the space does not need, or ask a manager of the space to raise its quota (`paas set-space-quota`)"),
                ));
            }
        }
        Ok(())
    }
}
