//! Keeps `workers` worker processes running: a worker that dies is replaced, and the task it
//! had goes back to the queue to resume from its finished segments, unless workers died on it
//! again and again with no segment finished in between (a hostile file must not be retried
//! forever): then it fails. On shutdown each worker gets SIGTERM, puts its task back in the
//! queue and exits.

use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::Command;
use tokio::sync::watch;
use vsr_cuda::{DeviceRequest, DeviceSet};
use vsr_media::code::Code;

use super::store::{AfterCrash, Outcome, Status, TaskError, TaskId, TaskStore, WorkerId};
use super::AppState;
use crate::config::ServiceConfig;
use crate::files::Files;

/// Environment variable carrying the effective service config to workers.
pub const CONFIG_ENV: &str = "VSR_WORKER_CONFIG";

/// Keeps a worker running in `slot`, on `device`.
pub async fn supervise(
    app: AppState,
    slot: usize,
    device: DeviceRequest,
    mut stop: watch::Receiver<bool>,
) {
    let config = worker_config(&app.config, device);
    loop {
        let exe = app
            .config
            .worker_program
            .clone()
            .or_else(|| std::env::current_exe().ok())
            .unwrap_or_else(|| "vsr".into());
        // Chosen here, so that the tasks of a worker that dies are known by it.
        let id = WorkerId::random();
        let spawned = Command::new(exe)
            .args(["--cache-dir"])
            .arg(&app.base.cache_dir)
            .args(["worker", "--slot", &slot.to_string()])
            .args(["--worker-id", &id.get().to_string()])
            .env(CONFIG_ENV, &config)
            .env("VSR_MODELS_DIR", &app.base.models_dir)
            .env("VSR_CUSTOM_MODELS_DIR", &app.base.custom_models_dir)
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
        // A child that has already exited has no pid; it is reaped just below.
        let pid = child.id();
        tokio::select! {
            status = child.wait() => {
                fail_tasks_of(&app, id).await;
                tracing::warn!(slot, ?pid, ?status, "worker exited; starting another");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ = stop.changed() => {
                // `Pid::from_raw` refuses 0, so this can never signal our own process group.
                if let Some(pid) = pid.and_then(|p| Pid::from_raw(p as i32)) {
                    let _ = kill_process(pid, Signal::TERM);
                }
                if tokio::time::timeout(Duration::from_secs(15), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

/// The configuration a worker gets (as JSON in [`CONFIG_ENV`]): the server's, on the one
/// device its slot was given.
fn worker_config(config: &ServiceConfig, device: DeviceRequest) -> String {
    let config = ServiceConfig {
        device: DeviceSet::One(device),
        ..config.clone()
    };
    serde_json::to_string(&config).expect("config serialises")
}

/// A worker died: the task it was running resumes, or fails after too many deaths.
async fn fail_tasks_of(app: &AppState, worker: WorkerId) {
    let tasks = app.store.running_on(worker).await.unwrap_or_default();
    let held = tasks.into_iter().map(|id| (id, worker)).collect();
    after_deaths(app.store.as_ref(), &app.files, &app.config, held).await;
}

/// Tasks whose worker vanished without a trace (its machine off, the network cut): once
/// their lease has lapsed, they are treated as their worker's death. Run by every server's
/// sweeper and by idle workers of their own, so a cluster recovers whoever is left.
pub async fn reclaim_lapsed(store: &dyn TaskStore, files: &Files, config: &ServiceConfig) {
    match store.lapsed(crate::store::now_ms()).await {
        Ok(tasks) => after_deaths(store, files, config, tasks).await,
        Err(e) => tracing::warn!(error = %e, "cannot look for lapsed leases"),
    }
}

/// Each task's worker (the one beside it) died: it resumes, or fails after too many deaths.
async fn after_deaths(
    store: &dyn TaskStore,
    files: &Files,
    config: &ServiceConfig,
    held: Vec<(TaskId, WorkerId)>,
) {
    let ended = |status, error| Outcome {
        status,
        error,
        expires_at: config.expiry_from_now(),
        output_bytes: None,
        notes: None,
    };
    let failed = ended(
        Status::Failed,
        Some(TaskError {
            code: Code::WorkerCrashed,
            message: "the worker processing this video stopped unexpectedly, again and again"
                .into(),
        }),
    );
    let cancelled = ended(Status::Cancelled, None);
    for (id, dead) in held {
        let lease = config.lease_from_now();
        match store.crashed(&id, dead, lease, &failed, &cancelled).await {
            Ok(AfterCrash::Requeued) => {
                tracing::warn!(task = %id, "its worker died; the task resumes")
            }
            Ok(AfterCrash::Ended) => {}
            Ok(verdict) => {
                if let Ok(Some(task)) = store.get(&id).await {
                    files.remove_working(&task).await;
                }
                if verdict == AfterCrash::Failed {
                    tracing::warn!(task = %id, "task failed: its workers kept dying")
                }
            }
            Err(e) => tracing::error!(task = %id, error = %e, "cannot record a worker's death"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each slot's worker is told its own device, everything else as the server has it.
    #[test]
    fn a_worker_gets_its_slots_device() {
        let server = ServiceConfig {
            device: DeviceSet::AllGpus,
            port: 8123,
            ..ServiceConfig::default()
        };
        for index in [0, 1] {
            let json = worker_config(&server, DeviceRequest::Cuda(index));
            let worker: ServiceConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(worker.device, DeviceSet::One(DeviceRequest::Cuda(index)));
            assert_eq!(worker.port, 8123);
        }
    }
}
