//! Deletes uploads and results past their retention and marks their tasks expired; at start,
//! removes temporaries that a killed worker left behind.

use std::time::Duration;

use super::store::now_ms;
use super::AppState;

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
    for task in app.store.expired(now_ms()).await? {
        let _ = std::fs::remove_file(&task.output_path);
        let _ = std::fs::remove_file(&task.input_path);
        app.store.mark_expired(&task.id).await?;
        tracing::info!(task = %task.id, "expired: files removed");
    }
    Ok(())
}

/// Partial outputs (`.NAME.STAGE-PID.ext`) from workers killed mid-task; none runs yet.
pub fn remove_stale_temporaries(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with('.') {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
