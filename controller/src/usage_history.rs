//! Each app's CPU and memory, by minute, for the last [`KEPT_MINUTES`]: what the
//! console charts under an app's instances. The platform reads every app's instances
//! every [`SAMPLE_EVERY`] (`Platform::sample_usage`) and records them here. Kept by
//! app, not by instance, so a chart goes on across restarts and deploys. Kept in
//! memory: a restart of paasd starts it afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use paas_api::InstanceSummary;
use serde::Serialize;

/// How many minutes each app keeps: the console charts the last hour.
pub const KEPT_MINUTES: usize = 60;

/// How often the platform reads its apps' instances.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// One minute of an app's usage, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageMinute {
    /// When the minute began (milliseconds since the epoch).
    pub start_ms: u64,
    /// CPU its instances used together, on average over the minute, in percent of
    /// one core.
    pub cpu_percent: f64,
    /// The most memory its instances used together at one reading.
    pub memory_bytes: u64,
    /// The memory its instances were given together at that time.
    pub memory_limit_bytes: u64,
    /// The most instances that ran at one reading.
    pub instances: u32,
}

#[derive(Default)]
pub struct UsageHistory {
    apps: Mutex<HashMap<String, AppHistory>>,
}

#[derive(Default)]
struct AppHistory {
    minutes: VecDeque<Minute>,
    /// Each instance's CPU time at the last reading, and when, by instance id: CPU use
    /// is the CPU time spent between two readings.
    last_cpu: HashMap<String, (u64, u64)>,
}

struct Minute {
    /// Minutes since the epoch.
    at: u64,
    /// The CPU percentages of the minute's readings, summed, and how many there were.
    cpu_sum: f64,
    cpu_readings: u32,
    memory_bytes: u64,
    memory_limit_bytes: u64,
    instances: u32,
}

impl UsageHistory {
    /// Records one reading of an app's `instances`; `limit_bytes` says what each of
    /// them is given.
    pub fn record(
        &self,
        app: &str,
        instances: &[InstanceSummary],
        limit_bytes: impl Fn(&InstanceSummary) -> u64,
        now_ms: u64,
    ) {
        let at = now_ms / 60_000;
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let history = apps.entry(app.to_string()).or_default();
        // CPU: the time each instance spent since its last reading, over the time
        // between them. A new instance (or a restarted container, whose counter
        // began again) counts from its next reading.
        let mut cpu_percent = None;
        let mut seen = HashMap::with_capacity(instances.len());
        for i in instances.iter().filter(|i| !i.id.is_empty()) {
            if let Some((cpu_ns, then_ms)) = history.last_cpu.get(&i.id) {
                if i.cpu_ns >= *cpu_ns && now_ms > *then_ms {
                    let wall_ns = (now_ms - then_ms) as f64 * 1e6;
                    *cpu_percent.get_or_insert(0.0) += (i.cpu_ns - cpu_ns) as f64 / wall_ns * 100.0;
                }
            }
            seen.insert(i.id.clone(), (i.cpu_ns, now_ms));
        }
        history.last_cpu = seen;
        let running: Vec<&InstanceSummary> =
            instances.iter().filter(|i| i.state == "running").collect();
        if history.minutes.back().is_none_or(|m| m.at < at) {
            history.minutes.push_back(Minute {
                at,
                cpu_sum: 0.0,
                cpu_readings: 0,
                memory_bytes: 0,
                memory_limit_bytes: 0,
                instances: 0,
            });
        }
        while history
            .minutes
            .front()
            .is_some_and(|m| m.at + KEPT_MINUTES as u64 <= at)
        {
            history.minutes.pop_front();
        }
        let Some(minute) = history.minutes.back_mut() else {
            return;
        };
        if let Some(p) = cpu_percent {
            minute.cpu_sum += p;
            minute.cpu_readings += 1;
        }
        let memory: u64 = instances.iter().map(|i| i.memory_bytes).sum();
        if memory >= minute.memory_bytes {
            minute.memory_bytes = memory;
            minute.memory_limit_bytes = running.iter().map(|i| limit_bytes(i)).sum();
        }
        minute.instances = minute.instances.max(running.len() as u32);
    }

    /// The app's minutes, oldest first, of the last [`KEPT_MINUTES`].
    pub fn of(&self, app: &str, now_ms: u64) -> Vec<UsageMinute> {
        let now = now_ms / 60_000;
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        let Some(history) = apps.get(app) else {
            return Vec::new();
        };
        history
            .minutes
            .iter()
            .filter(|m| m.at + KEPT_MINUTES as u64 > now)
            .map(|m| UsageMinute {
                start_ms: m.at * 60_000,
                cpu_percent: if m.cpu_readings == 0 {
                    0.0
                } else {
                    (m.cpu_sum / f64::from(m.cpu_readings) * 10.0).round() / 10.0
                },
                memory_bytes: m.memory_bytes,
                memory_limit_bytes: m.memory_limit_bytes,
                instances: m.instances,
            })
            .collect()
    }

    /// Keeps only the apps named in `apps` (those that still exist).
    pub fn retain(&self, apps: &std::collections::HashSet<&str>) {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| apps.contains(name.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;
    const MIB: u64 = 1 << 20;

    fn instance(id: &str, state: &str, cpu_ns: u64, memory_bytes: u64) -> InstanceSummary {
        InstanceSummary {
            id: id.into(),
            process: "web".into(),
            index: 0,
            state: state.into(),
            since_ms: 0,
            memory_bytes,
            cpu_percent: 0.0,
            cpu_ns,
            disk_bytes: 0,
            cell: String::new(),
        }
    }

    #[test]
    fn cpu_is_the_time_spent_between_readings_summed_over_instances() {
        let h = UsageHistory::default();
        let limit = |_: &InstanceSummary| 256 * MIB;
        let at = 10 * MINUTE;
        h.record(
            "shop",
            &[
                instance("a", "running", 0, 10 * MIB),
                instance("b", "running", 0, 20 * MIB),
            ],
            limit,
            at,
        );
        // 15 s later: a spent 1.5 s of CPU (10 %), b 3 s (20 %).
        h.record(
            "shop",
            &[
                instance("a", "running", 1_500_000_000, 12 * MIB),
                instance("b", "running", 3_000_000_000, 20 * MIB),
            ],
            limit,
            at + 15_000,
        );
        let minutes = h.of("shop", at + 15_000);
        assert_eq!(minutes.len(), 1);
        assert_eq!(minutes[0].start_ms, at);
        assert_eq!(minutes[0].cpu_percent, 30.0);
        assert_eq!(minutes[0].memory_bytes, 32 * MIB);
        assert_eq!(minutes[0].memory_limit_bytes, 512 * MIB);
        assert_eq!(minutes[0].instances, 2);
        assert!(h.of("other", at).is_empty());
    }

    #[test]
    fn a_restarted_container_counts_from_its_next_reading() {
        let h = UsageHistory::default();
        let read = |cpu_ns, at| {
            h.record(
                "shop",
                &[instance("a", "running", cpu_ns, MIB)],
                |_| MIB,
                at,
            )
        };
        read(9_000_000_000, 0);
        // Its CPU counter began again: no reading this time, not a huge or negative one.
        read(1_000, 15_000);
        assert_eq!(h.of("shop", 15_000)[0].cpu_percent, 0.0);
        read(1_500_001_000, 30_000);
        assert_eq!(h.of("shop", 30_000)[0].cpu_percent, 10.0);
    }

    #[test]
    fn keeps_an_hour_by_minute_and_forgets_apps_that_are_gone() {
        let h = UsageHistory::default();
        for minute in 0..100 {
            h.record(
                "shop",
                &[instance("a", "crashed", 0, MIB)],
                |_| MIB,
                minute * MINUTE,
            );
        }
        let minutes = h.of("shop", 99 * MINUTE);
        assert_eq!(minutes.len(), KEPT_MINUTES);
        assert_eq!(minutes[0].start_ms, (100 - KEPT_MINUTES as u64) * MINUTE);
        // A crashed instance's memory counts; it is not counted as running.
        assert_eq!((minutes[0].memory_bytes, minutes[0].instances), (MIB, 0));
        h.retain(&["other"].into_iter().collect());
        assert!(h.of("shop", 99 * MINUTE).is_empty());
    }
}
