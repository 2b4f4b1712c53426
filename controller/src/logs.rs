//! App logs: the last lines of each app in memory, all lines on disk, and live followers.
//!
//! Each app's lines are appended to `logs/<app>.ndjson` as they arrive, so
//! `paas logs --recent` still has them after `paasd` restarts; the file is rotated to
//! `<app>.ndjson.1` past a size bound. In memory, a bounded ring serves `--recent` and a
//! broadcast channel serves followers.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use paas_api::state::LogDrains;
use paas_api::{AppName, LogLine, LogStream};
use tokio::sync::broadcast;

use crate::drain::{Drains, Sender};

/// Lines kept in memory per app, and returned by `--recent`.
pub const RECENT_LINES: usize = 1000;
/// Size past which an app's log file is rotated.
const ROTATE_BYTES: u64 = 8 << 20;
/// How long lines for a deleted app are dropped: what is still on its way (its
/// instances' last lines, the router's access-log batches) arrives within seconds, and
/// must not make the app's log (a file and an in-memory ring) again.
const REMOVED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

pub struct Logs {
    dir: PathBuf,
    /// Where lines go on to: the syslog drains of the apps' bound services.
    drains: Drains,
    apps: Mutex<HashMap<String, AppLog>>,
    /// Apps deleted lately, and when.
    removed: Mutex<HashMap<String, std::time::Instant>>,
}

struct AppLog {
    recent: VecDeque<LogLine>,
    live: broadcast::Sender<LogLine>,
    file: Option<File>,
    written: u64,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Logs {
    /// `drain_allow`: networks drains may reach although the rule refuses them.
    pub fn open(dir: PathBuf, drain_allow: Vec<paas_egress::Ipv4Net>) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Logs {
            dir,
            drains: Drains::new(drain_allow),
            apps: Mutex::new(HashMap::new()),
            removed: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, app: &AppName) -> PathBuf {
        self.dir.join(format!("{app}.ndjson"))
    }

    fn with_app<R>(&self, app: &AppName, f: impl FnOnce(&mut AppLog) -> R) -> R {
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up before it is inserted: the name is not copied for every line.
        if let Some(log) = apps.get_mut(app.as_str()) {
            return f(log);
        }
        let path = self.path(app);
        let recent = read_tail(&path);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .ok();
        let written = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len());
        let log = apps.entry(app.to_string()).or_insert(AppLog {
            recent,
            live: broadcast::channel(1024).0,
            file,
            written,
        });
        f(log)
    }

    /// Records one line (none for an app deleted in the last [`REMOVED_FOR`]).
    pub fn append(&self, app: &AppName, source: &str, stream: LogStream, line: &str) {
        self.append_all(app, source, stream, [line]);
    }

    /// Records `lines` of one source, in one write to the app's file (the router's
    /// access log comes in batches).
    pub fn append_all<'a>(
        &self,
        app: &AppName,
        source: &str,
        stream: LogStream,
        lines: impl IntoIterator<Item = &'a str>,
    ) {
        let removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
        if removed
            .get(app.as_str())
            .is_some_and(|at| at.elapsed() < REMOVED_FOR)
        {
            return;
        }
        drop(removed);
        let timestamp_ms = now_ms();
        let rotate_path = self.path(app);
        self.with_app(app, |log| {
            let mut json = Vec::new();
            for line in lines {
                let line = LogLine {
                    timestamp_ms,
                    source: source.to_string(),
                    stream,
                    line: line.to_string(),
                };
                if serde_json::to_writer(&mut json, &line).is_ok() {
                    json.push(b'\n');
                }
                if log.recent.len() == RECENT_LINES {
                    log.recent.pop_front();
                }
                log.recent.push_back(line.clone());
                self.drains.send(app, &line);
                let _ = log.live.send(line);
            }
            if let Some(f) = log.file.as_mut().filter(|_| !json.is_empty()) {
                if f.write_all(&json).is_ok() {
                    log.written += json.len() as u64;
                } else {
                    // A full disk took part of the lines: cut the file back to whole
                    // lines (they stay in memory, for `--recent` and followers).
                    let _ = f.set_len(log.written);
                }
            }
            if log.written > ROTATE_BYTES {
                let _ = std::fs::rename(&rotate_path, rotate_path.with_extension("ndjson.1"));
                log.file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&rotate_path)
                    .ok();
                log.written = 0;
            }
        });
    }

    /// Sends `app`'s lines from now on to its syslog drains `drains` (and to no other).
    pub fn set_drains(self: &Arc<Self>, app: &AppName, app_guid: &str, drains: &LogDrains) {
        let from = Sender {
            hostname: drains.hostname.clone(),
            app_guid: app_guid.to_string(),
        };
        self.drains
            .set(app, from, &drains.urls, Arc::downgrade(self));
    }

    /// The most recent lines, oldest first.
    pub fn recent(&self, app: &AppName) -> Vec<LogLine> {
        self.with_app(app, |log| log.recent.iter().cloned().collect())
    }

    /// The recent lines and a receiver for every line after them.
    pub fn follow(&self, app: &AppName) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        self.with_app(app, |log| {
            (log.recent.iter().cloned().collect(), log.live.subscribe())
        })
    }

    /// An app of this name was made: its lines are kept again, even if one of its name
    /// was deleted a moment ago.
    pub fn created(&self, app: &AppName) {
        // The drains of an app of this name that was deleted are not this one's.
        self.drains.remove(app);
        self.removed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app.as_str());
    }

    /// Forgets an app's logs, on disk too; lines for it that are still on their way are
    /// dropped.
    pub fn remove(&self, app: &AppName) {
        {
            let mut removed = self.removed.lock().unwrap_or_else(|p| p.into_inner());
            removed.retain(|_, at| at.elapsed() < REMOVED_FOR);
            removed.insert(app.to_string(), std::time::Instant::now());
        }
        self.drains.remove(app);
        let mut apps = self.apps.lock().unwrap_or_else(|p| p.into_inner());
        apps.remove(app.as_str());
        let path = self.path(app);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("ndjson.1"));
    }
}

/// The last [`RECENT_LINES`] valid lines of a log file; unreadable lines are skipped.
fn read_tail(path: &std::path::Path) -> VecDeque<LogLine> {
    let mut out = VecDeque::with_capacity(RECENT_LINES);
    let Ok(f) = File::open(path) else { return out };
    for line in BufReader::new(f).lines().map_while(Result::ok) {
        if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
            if out.len() == RECENT_LINES {
                out.pop_front();
            }
            out.push_back(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_still_on_their_way_to_a_deleted_app_do_not_make_its_log_again() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::parse("gone").unwrap();
        let logs = Logs::open(dir.path().to_path_buf(), Vec::new()).unwrap();
        logs.append(&app, "APP/PROC/WEB/0", LogStream::Out, "before");
        logs.remove(&app);
        logs.append(&app, "RTR", LogStream::Out, "a late access-log line");
        assert!(
            !dir.path().join("gone.ndjson").exists(),
            "no file is made again"
        );
        assert!(
            logs.apps.lock().unwrap().is_empty(),
            "no ring is kept for the deleted app"
        );
        logs.created(&app);
        logs.append(&app, "STG", LogStream::Out, "a new app of the name");
        assert_eq!(logs.recent(&app).len(), 1, "a new app's lines are kept");
    }

    #[test]
    fn recent_lines_survive_reopening_and_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::parse("web").unwrap();
        {
            let logs = Logs::open(dir.path().to_path_buf(), Vec::new()).unwrap();
            for i in 0..(RECENT_LINES + 5) {
                logs.append(&app, "APP/PROC/WEB/0", LogStream::Out, &format!("line {i}"));
            }
            assert_eq!(logs.recent(&app).len(), RECENT_LINES);
        }
        let logs = Logs::open(dir.path().to_path_buf(), Vec::new()).unwrap();
        let recent = logs.recent(&app);
        assert_eq!(recent.len(), RECENT_LINES);
        assert_eq!(
            recent.last().unwrap().line,
            format!("line {}", RECENT_LINES + 4)
        );
        assert_eq!(recent[0].line, "line 5");
        logs.remove(&app);
        assert!(logs.recent(&app).is_empty());
    }

    #[tokio::test]
    async fn followers_get_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let app = AppName::parse("web").unwrap();
        let logs = Logs::open(dir.path().to_path_buf(), Vec::new()).unwrap();
        logs.append(&app, "STG", LogStream::Out, "before");
        let (recent, mut rx) = logs.follow(&app);
        assert_eq!(recent.len(), 1);
        logs.append(&app, "APP/PROC/WEB/0", LogStream::Err, "after");
        let l = rx.recv().await.unwrap();
        assert_eq!(
            (l.source.as_str(), l.stream, l.line.as_str()),
            ("APP/PROC/WEB/0", LogStream::Err, "after")
        );
    }
}
