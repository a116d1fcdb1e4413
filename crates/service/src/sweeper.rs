//! Deletes uploads and results past their retention and marks their tasks expired, removes
//! orphan files no task refers to (left by a crash between writing and recording, or by an
//! older version), and at start removes temporaries that a killed worker left behind.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::store::now_ms;
use super::AppState;
use crate::config::ServiceConfig;
use crate::files::Files;

pub async fn sweep_forever(app: AppState) {
    let every = Duration::from_secs(app.config.sweep_interval_seconds.max(1));
    loop {
        if let Err(e) = sweep_once(&app).await {
            tracing::warn!(error = %e, "sweep failed");
        }
        tokio::time::sleep(every).await;
    }
}

pub async fn sweep_once(app: &AppState) -> Result<(), super::store::StoreError> {
    super::supervisor::reclaim_lapsed(app.store.as_ref(), &app.files, &app.config).await;
    for task in app.store.expired(now_ms()).await? {
        // Marked first: a draft started meanwhile is not marked, and keeps its upload.
        if app.store.mark_expired(&task.id).await? {
            app.files.remove_all(&task).await;
            tracing::info!(task = %task.id, "expired: files removed");
        }
    }
    // Rows of workers silent for an hour: stopped without a word (killed, machine gone).
    app.store
        .forget_workers(None, now_ms() - 3600 * 1000)
        .await?;
    app.store.forget_segment_claims().await?;
    let referenced = app.store.referenced_files().await?;
    remove_stored_orphans(app, &referenced).await;
    remove_orphan_copies(&app.files, &app.config, &referenced);
    Ok(())
}

/// Removes stored objects (in folders or an object store) that no task refers to and that
/// were written more than [`ORPHAN_GRACE`] ago. Each is checked against its task's row once
/// more just before: an upload stored slowly may have got its row since `referenced` was read.
async fn remove_stored_orphans(app: &AppState, referenced: &HashSet<String>) {
    let files = &app.files;
    let before = SystemTime::now() - ORPHAN_GRACE;
    let objects = match files.storage.stored_before(before).await {
        Ok(objects) => objects,
        Err(e) => return tracing::warn!(error = %e, "cannot list the stored files"),
    };
    for object in objects {
        if referenced.contains(object.owner().as_str()) {
            continue;
        }
        let live = match object.owner().task() {
            Some(id) => match app.store.get(&id).await {
                Ok(Some(task)) => task.status != crate::store::Status::Expired,
                Ok(None) => false,
                // The store does not answer: kept, and judged at the next sweep.
                Err(_) => true,
            },
            None => false,
        };
        if live {
            continue;
        }
        match files.storage.delete(&object).await {
            Ok(()) => tracing::info!(object = object.name(), "orphan removed"),
            Err(e) => tracing::warn!(object = object.name(), error = %e, "cannot remove an orphan"),
        }
    }
}

/// With an object store: removes this machine's copies of files whose keys are not in
/// `keep` (an API node keeps those of every task, a worker those of running tasks), older
/// than [`ORPHAN_GRACE`]. Folders are the stored files themselves: swept above.
pub(crate) fn remove_orphan_copies(files: &Files, config: &ServiceConfig, keep: &HashSet<String>) {
    if files.in_place() {
        return;
    }
    for dir in [&config.upload_folder, &config.processed_folder] {
        remove_orphans(dir, keep, SystemTime::now());
    }
}

/// How old an unreferenced file must be before it is removed: an upload being received or
/// probed has no task row yet, and is written to (or probed) well within this.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// Removes files in `dir` named as this server names uploads and results (`UUID.ext`), and
/// the work directories of such results (`.UUID.ext.vsr-KEY`), that no task refers to and
/// that are older than [`ORPHAN_GRACE`], and fetches from storage cut short
/// (`.UUID.ext.get-*`) older than that. Nothing else is touched, so a folder shared with
/// other files (a database, say) is safe.
fn remove_orphans(dir: &Path, referenced: &HashSet<String>, now: SystemTime) {
    let old = |meta: &std::fs::Metadata| {
        meta.modified()
            .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > ORPHAN_GRACE)
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let fetch_cut_short = name
            .strip_prefix('.')
            .and_then(|rest| rest.split_once(".get-"))
            .is_some_and(|(key, _)| crate::storage::Key::parse(key).is_some());
        if fetch_cut_short {
            if entry.metadata().is_ok_and(|m| m.is_file() && old(&m)) {
                let _ = std::fs::remove_file(entry.path());
            }
            continue;
        }
        let work_of = vsr_media::video::segment::work_dir_output(&name);
        let owner = work_of.unwrap_or(&name);
        let ours = owner
            .split_once('.')
            .is_some_and(|(stem, _)| uuid::Uuid::parse_str(stem).is_ok());
        if !ours || referenced.contains(owner) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let old = old(&meta);
        let removed = match (work_of.is_some(), meta.is_dir(), meta.is_file()) {
            (true, true, _) => old && std::fs::remove_dir_all(entry.path()).is_ok(),
            (false, _, true) => old && std::fs::remove_file(entry.path()).is_ok(),
            _ => false,
        };
        if removed {
            tracing::info!(file = %name, "orphan removed");
        }
    }
}

/// Partial outputs (`.NAME.STAGE-PID.ext`) from workers killed mid-task; none runs yet.
pub fn remove_stale_temporaries(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
