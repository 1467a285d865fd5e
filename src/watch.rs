//! Watching mounted files the way the kubelet updates them: an inotify
//! watch on the *directories* (a watch on a file breaks when the kubelet
//! swaps the `..data` symlink) that wakes a task, which also polls, so file
//! systems without inotify work too. Used for the policy and credential of
//! `smtpbind run` and for the serving certificate of `smtpbind webhook`.

use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::log;

/// Starts an inotify watch on `dirs` that wakes `wake` on every event that
/// is not an access and concerns a path `relevant` accepts (or names no
/// path). `None` (with a warning) when inotify is unavailable: the caller's
/// polling still works.
pub fn inotify(
    dirs: &[&Path],
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    wake: Arc<tokio::sync::Notify>,
    log: &log::Context,
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
            log.warn(
                "watch",
                json!({ "message": "inotify unavailable, polling only", "error": e.to_string() }),
            );
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            log.warn(
                "watch",
                json!({ "message": "cannot watch, polling only", "dir": dir.display().to_string(), "error": e.to_string() }),
            );
        }
    }
    Some(watcher)
}

/// Whether `path` is one of the kubelet's own entries of a mounted volume
/// (`..data`, `..2026_11_30_...`): its swap is what replaces the files.
pub fn is_kubelet_entry(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(".."))
}
