//! Watching mounted files (Secrets, ConfigMaps) the way the kubelet updates
//! them: inotify on the *directories* (a watch on a file breaks when the
//! kubelet swaps the `..data` symlink), plus polling for file systems
//! without inotify. Used for the credential and policy (`app`) and for the
//! certificate toward the mailer (`client_tls`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;

use crate::log;

/// How often the watched files are re-read when no inotify event arrives.
pub const POLL_INTERVAL: Duration = Duration::from_millis(1000);

/// Which changed paths matter (not our own reads, not other files sharing a
/// directory).
type Relevant = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// Wakes on a relevant inotify event or on the poll interval, whichever is first.
pub struct DirWatch {
    tick: tokio::time::Interval,
    wake: Arc<Notify>,
    relevant: Relevant,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl DirWatch {
    /// `relevant` gets the file name part of each changed path; the kubelet's
    /// own entries (`..data`, `..<timestamp>`) always count.
    pub fn new(dirs: &[&Path], relevant: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let relevant: Relevant = Arc::new(move |path: &Path| match path.file_name() {
            Some(name) => {
                let name = name.to_string_lossy();
                name.starts_with("..") || relevant(&name)
            }
            None => true,
        });
        let mut watch = DirWatch {
            tick,
            wake: Arc::new(Notify::new()),
            relevant,
            _watcher: None,
        };
        watch.watch_dirs(dirs);
        watch
    }

    /// Replaces the inotify watch with one on `dirs`.
    pub fn watch_dirs(&mut self, dirs: &[&Path]) {
        self._watcher = inotify(dirs, self.relevant.clone(), self.wake.clone());
    }

    /// Waits for the next poll tick or a relevant event (then lets a burst of
    /// events settle: a kubelet swap is several).
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.tick.tick() => {}
            _ = self.wake.notified() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An inotify watch on `dirs` that wakes `wake` on a relevant event. `None`
/// (with a warning) when inotify is unavailable: polling still works.
fn inotify(
    dirs: &[&Path],
    relevant: Relevant,
    wake: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) => {
            if !matches!(event.kind, notify::EventKind::Access(_))
                && (event.paths.is_empty() || event.paths.iter().any(|p| relevant(p)))
            {
                wake.notify_one();
            }
        }
        Err(_) => wake.notify_one(),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            log::warn(
                "watch",
                json!({ "message": "inotify unavailable, polling only", "error": e.to_string() }),
            );
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            log::warn(
                "watch",
                json!({ "message": "cannot watch, polling only", "dir": dir.display().to_string(), "error": e.to_string() }),
            );
        }
    }
    Some(watcher)
}
