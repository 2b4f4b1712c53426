//! Each app's traffic through this host's router, by minute: requests, server errors
//! (5xx) and the 95th percentile of response time, for the last [`KEPT_MINUTES`].
//! Fed by the router's access log (`edge.rs`), read by the console's charts
//! (`GET /v1/apps/NAME/traffic`). Kept in memory: a restart of paasd starts it afresh.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

/// How many minutes each app keeps: the console charts the last hour.
pub const KEPT_MINUTES: usize = 90;

/// Upper bounds of the response-time buckets, in microseconds: 500 µs growing by a
/// quarter each, up to past two minutes; a p95 is at most a quarter above the truth.
fn bucket_bounds() -> &'static [u64] {
    static BOUNDS: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    BOUNDS.get_or_init(|| {
        let mut bounds = vec![500u64];
        while *bounds.last().unwrap_or(&0) < 150_000_000 {
            let last = bounds[bounds.len() - 1];
            bounds.push(last + last / 4);
        }
        bounds
    })
}

struct Minute {
    /// Minutes since the epoch.
    at: u64,
    requests: u64,
    errors: u64,
    /// Requests per response-time bucket (the last holds all slower ones).
    buckets: Vec<u32>,
}

impl Minute {
    fn new(at: u64) -> Minute {
        Minute {
            at,
            requests: 0,
            errors: 0,
            buckets: vec![0; bucket_bounds().len() + 1],
        }
    }

    /// The upper bound of the bucket that holds the 95th percentile, in milliseconds.
    fn p95_ms(&self) -> f64 {
        let wanted = (self.requests * 95).div_ceil(100);
        let mut seen = 0u64;
        let bounds = bucket_bounds();
        for (i, n) in self.buckets.iter().enumerate() {
            seen += u64::from(*n);
            if seen >= wanted && wanted > 0 {
                let bound = bounds.get(i).copied().unwrap_or(bounds[bounds.len() - 1]);
                return bound as f64 / 1000.0;
            }
        }
        0.0
    }
}

/// One minute of an app's traffic, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MinuteFigures {
    /// When the minute began (milliseconds since the epoch).
    pub start_ms: u64,
    pub requests: u64,
    /// Responses with a 5xx status.
    pub errors: u64,
    /// 95% of the minute's responses had their head ready within this (an upper bound).
    pub p95_ms: f64,
}

#[derive(Default)]
pub struct Traffic {
    apps: Mutex<Apps>,
}

#[derive(Default)]
struct Apps {
    minutes: HashMap<String, VecDeque<Minute>>,
    /// The minute apps without traffic since [`KEPT_MINUTES`] were last dropped (a
    /// deleted app's last lines may come after it was forgotten).
    pruned_at: u64,
}

impl Traffic {
    /// Counts one response of `app`: its status and the time until its head was ready.
    pub fn record(&self, app: &str, status: u16, micros: u64, now_ms: u64) {
        let at = now_ms / 60_000;
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        if apps.pruned_at < at {
            apps.pruned_at = at;
            apps.minutes
                .retain(|_, m| m.back().is_some_and(|m| m.at + KEPT_MINUTES as u64 > at));
        }
        // Looked up before it is inserted: the name is not copied for every response.
        if !apps.minutes.contains_key(app) {
            apps.minutes.insert(app.to_string(), VecDeque::new());
        }
        let Some(minutes) = apps.minutes.get_mut(app) else {
            return;
        };
        if minutes.back().is_none_or(|m| m.at < at) {
            minutes.push_back(Minute::new(at));
        }
        while minutes
            .front()
            .is_some_and(|m| m.at + KEPT_MINUTES as u64 <= at)
        {
            minutes.pop_front();
        }
        // A line of a minute that has just passed counts in the newest one.
        let Some(minute) = minutes.back_mut() else {
            return;
        };
        minute.requests += 1;
        if status >= 500 {
            minute.errors += 1;
        }
        let bucket = bucket_bounds().partition_point(|bound| *bound < micros);
        minute.buckets[bucket] += 1;
    }

    /// The app's minutes with traffic, oldest first, of the last [`KEPT_MINUTES`].
    pub fn of(&self, app: &str, now_ms: u64) -> Vec<MinuteFigures> {
        let now = now_ms / 60_000;
        let apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.minutes
            .get(app)
            .map(|minutes| {
                minutes
                    .iter()
                    .filter(|m| m.at + KEPT_MINUTES as u64 > now)
                    .map(|m| MinuteFigures {
                        start_ms: m.at * 60_000,
                        requests: m.requests,
                        errors: m.errors,
                        p95_ms: m.p95_ms(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a deleted app.
    pub fn forget(&self, app: &str) {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .minutes
            .remove(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn counts_requests_and_server_errors_by_minute() {
        let t = Traffic::default();
        for status in [200, 404, 500, 503] {
            t.record("shop", status, 2_000, 10 * MINUTE + 5);
        }
        t.record("shop", 200, 2_000, 11 * MINUTE);
        let figures = t.of("shop", 11 * MINUTE);
        assert_eq!(figures.len(), 2);
        assert_eq!((figures[0].requests, figures[0].errors), (4, 2));
        assert_eq!(figures[0].start_ms, 10 * MINUTE);
        assert_eq!((figures[1].requests, figures[1].errors), (1, 0));
        assert!(t.of("other", 11 * MINUTE).is_empty());
    }

    #[test]
    fn the_p95_is_the_bound_of_the_bucket_that_holds_it() {
        let t = Traffic::default();
        // 94 fast requests and 6 slow ones: the 95th is slow.
        for _ in 0..94 {
            t.record("shop", 200, 1_000, 0);
        }
        for _ in 0..6 {
            t.record("shop", 200, 200_000, 0);
        }
        let p95 = t.of("shop", 0)[0].p95_ms;
        assert!((200.0..=250.0).contains(&p95), "{p95}");
        // With 96 fast ones it is fast.
        let t = Traffic::default();
        for i in 0..100 {
            t.record("shop", 200, if i < 96 { 1_000 } else { 200_000 }, 0);
        }
        let p95 = t.of("shop", 0)[0].p95_ms;
        assert!((1.0..=1.25).contains(&p95), "{p95}");
    }

    #[test]
    fn keeps_ninety_minutes_and_forgets_a_deleted_app() {
        let t = Traffic::default();
        for minute in 0..200 {
            t.record("shop", 200, 1_000, minute * MINUTE);
        }
        let figures = t.of("shop", 199 * MINUTE);
        assert_eq!(figures.len(), KEPT_MINUTES);
        assert_eq!(figures[0].start_ms, (200 - KEPT_MINUTES as u64) * MINUTE);
        t.forget("shop");
        assert!(t.of("shop", 199 * MINUTE).is_empty());
    }

    #[test]
    fn an_app_without_traffic_for_ninety_minutes_is_dropped() {
        let t = Traffic::default();
        t.record("gone", 200, 1_000, 0);
        t.record("shop", 200, 1_000, KEPT_MINUTES as u64 * MINUTE);
        assert!(!t.apps.lock().unwrap().minutes.contains_key("gone"));
    }
}
