//! Keeps `workers` worker processes running: a worker that dies fails the task it had (a
//! hostile file must not be retried forever) and is replaced; on shutdown each gets SIGTERM,
//! puts its task back in the queue and exits.

use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

use super::store::{now_ms, Status};
use super::AppState;

/// Environment variable carrying the effective service config to workers.
pub const CONFIG_ENV: &str = "VSR_WORKER_CONFIG";

pub async fn supervise(app: AppState, slot: usize, mut stop: watch::Receiver<bool>) {
    loop {
        let exe = std::env::current_exe().unwrap_or_else(|_| "vsr".into());
        let config = serde_json::to_string(&app.config).expect("config serialises");
        let spawned = Command::new(exe)
            .args(["--cache-dir"])
            .arg(&app.base.cache_dir)
            .args(["worker", "--slot", &slot.to_string()])
            .env(CONFIG_ENV, config)
            .env("VSR_MODELS_DIR", &app.base.models_dir)
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(slot, error = %e, "cannot start a worker");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        tokio::select! {
            status = child.wait() => {
                let expires = now_ms() + app.config.retention_seconds as i64 * 1000;
                for id in app.store.running_on(pid).await.unwrap_or_default() {
                    let _ = app.store.finish(&id, Status::Failed, Some(("worker_crashed", "the worker processing this video stopped unexpectedly")), expires, None).await;
                    tracing::warn!(task = %id, "task failed: its worker died");
                }
                tracing::warn!(slot, pid, ?status, "worker exited; starting another");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = stop.changed() => {
                // SAFETY: plain kill(2) on our own child's pid.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}
