//! `vsr worker`: a separate process that takes jobs from the queue and runs them through the
//! video pipeline, so a crash while decoding a hostile file fails that task, not the server.
//! Progress goes to the task row every 250 ms; a cancel request comes back the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use tracing::Instrument;

use super::queue::{Queue, UpscaleJob};
use super::store::{now_ms, Status, Store, Task};
use crate::config::ServiceConfig;
use vsr_media::catalog::Catalog;
use vsr_media::config::Config;
use vsr_media::enhance::Enhancer;
use vsr_media::model_ref::ModelRef;
use vsr_media::video::encode::{Codec, EncodeSettings};
use vsr_media::video::pipeline::{self, Job, Progress};
use vsr_media::video::PipelineError;

/// How often progress is written and cancel requests are read.
const REPORT: Duration = Duration::from_millis(200);
/// A frame of a heavy model can take many seconds; a stop is not left waiting for it.
const HARD_STOP: Duration = Duration::from_millis(600);

#[derive(Clone)]
struct Worker {
    base: Arc<Config>,
    config: Arc<ServiceConfig>,
    store: Store,
    /// Set on SIGTERM: the running task stops and goes back to the queue.
    shutdown: Arc<AtomicBool>,
}

pub async fn run(base: Config, config: ServiceConfig, slot: usize) -> anyhow::Result<()> {
    // If the server dies (even by SIGKILL), this worker gets SIGTERM: it puts its task back
    // in the queue for the next server instead of running on unsupervised.
    // SAFETY: prctl with an integer signal number has no memory effects.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    if std::os::unix::process::parent_id() == 1 {
        anyhow::bail!("the server that started this worker is gone");
    }
    let store = Store::open(&config.database).await?;
    let queue = Queue::open(store.pool()).await?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let state = Worker {
        base: Arc::new(base),
        config: Arc::new(config),
        store,
        shutdown: shutdown.clone(),
    };
    tracing::info!(slot, pid = std::process::id(), "worker ready");
    let worker = WorkerBuilder::new(format!("vsr-worker-{slot}"))
        .concurrency(1)
        .data(state)
        .backend(queue.storage())
        .build_fn(handle);
    Monitor::new()
        .register(worker)
        .shutdown_timeout(Duration::from_secs(20))
        .run_with_signal(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
            shutdown.store(true, Ordering::Relaxed);
            Ok(())
        })
        .await?;
    Ok(())
}

async fn handle(job: UpscaleJob, worker: Data<Worker>) -> Result<(), BoxDynError> {
    // Claiming fails if another worker has it or it was cancelled meanwhile: nothing to do.
    let Some(task) = worker.store.claim(&job.task_id, std::process::id()).await? else {
        return Ok(());
    };
    let span = tracing::info_span!("task", task = %task.id);
    run_task(&worker, task).instrument(span).await?;
    Ok(())
}

async fn run_task(worker: &Worker, task: Task) -> Result<(), BoxDynError> {
    tracing::info!(input = %task.input_path.display(), models = ?task.models, "task started");
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(None::<Progress>);
    let blocking = {
        let (base, config, task, cancel) = (
            worker.base.clone(),
            worker.config.clone(),
            task.clone(),
            cancel.clone(),
        );
        tokio::task::spawn_blocking(move || {
            upscale(&base, &config, &task, &cancel, &mut |p| {
                tx.send_replace(Some(p.clone()));
            })
        })
    };
    tokio::pin!(blocking);
    let mut stop_asked: Option<std::time::Instant> = None;
    let result = loop {
        if stop_asked.is_some_and(|t| t.elapsed() > HARD_STOP) {
            hard_stop(worker, &task).await;
        }
        tokio::select! {
            r = &mut blocking => break r.unwrap_or_else(|e| Err(TaskError::private("worker_panicked", "the worker failed unexpectedly", e))),
            _ = tokio::time::sleep(REPORT) => {
                let p = rx.borrow().clone();
                let (stage, done, total, fps, eta) = match &p {
                    Some(p) => ("upscaling", p.current_frame, p.total_frames, p.fps, p.eta_seconds),
                    None => ("loading_model", 0, task.total_frames, 0.0, 0.0),
                };
                let cancelled = worker.store.progress(&task.id, stage, (done, total), fps, eta).await?;
                if cancelled || worker.shutdown.load(Ordering::Relaxed) {
                    cancel.store(true, Ordering::Relaxed);
                    stop_asked.get_or_insert_with(std::time::Instant::now);
                }
            }
        }
    };
    let expires = now_ms() + worker.config.retention_seconds as i64 * 1000;
    let store = &worker.store;
    match result {
        Ok(frames) => {
            let bytes = std::fs::metadata(&task.output_path)
                .map(|m| m.len() as i64)
                .ok();
            let last = rx.borrow().clone();
            if let Some(p) = last {
                store
                    .progress(
                        &task.id,
                        "completed",
                        (p.current_frame, p.total_frames.max(frames)),
                        p.fps,
                        0.0,
                    )
                    .await?;
            }
            // The upload stays until expiry: the page compares frames of source and result.
            store
                .finish(&task.id, Status::Completed, None, expires, bytes)
                .await?;
            tracing::info!(frames, bytes, "task completed");
        }
        Err(e) if e.code == "cancelled" && worker.shutdown.load(Ordering::Relaxed) => {
            store.release(&task.id).await?;
            tracing::info!("worker stopping; task returned to the queue");
        }
        Err(e) if e.code == "cancelled" => {
            store
                .finish(&task.id, Status::Cancelled, None, expires, None)
                .await?;
            let _ = std::fs::remove_file(&task.input_path);
            tracing::info!("task cancelled");
        }
        Err(e) => {
            store
                .finish(
                    &task.id,
                    Status::Failed,
                    Some((e.code, &e.message)),
                    expires,
                    None,
                )
                .await?;
            let _ = std::fs::remove_file(&task.input_path);
            tracing::warn!(code = e.code, error = %e.detail, "task failed");
        }
    }
    Ok(())
}

/// Ends a task whose pipeline did not stop in time: records the outcome, removes the task's
/// temporaries, and exits the process (the supervisor starts a fresh worker; FFmpeg children
/// end when their pipes close).
async fn hard_stop(worker: &Worker, task: &Task) -> ! {
    let expires = now_ms() + worker.config.retention_seconds as i64 * 1000;
    if worker.shutdown.load(Ordering::Relaxed) {
        let _ = worker.store.release(&task.id).await;
        tracing::info!("worker stopping mid-frame; task returned to the queue");
    } else {
        let _ = worker
            .store
            .finish(&task.id, Status::Cancelled, None, expires, None)
            .await;
        let _ = std::fs::remove_file(&task.input_path);
        tracing::info!("task cancelled mid-frame; worker restarting");
    }
    for temp in vsr_media::video::pipeline::temporaries(&task.output_path) {
        let _ = std::fs::remove_file(temp);
    }
    std::process::exit(0)
}

/// Why a task failed: `code` and `message` are what its status shows (our own words, no
/// server paths or FFmpeg text); `detail` is the full story, for the log only.
struct TaskError {
    code: &'static str,
    message: String,
    detail: String,
}

impl TaskError {
    fn new(code: &'static str, message: String) -> TaskError {
        TaskError {
            code,
            detail: message.clone(),
            message,
        }
    }

    /// A failure whose full text must stay in the log.
    fn private(code: &'static str, message: &str, detail: impl std::fmt::Display) -> TaskError {
        TaskError {
            code,
            message: message.to_string(),
            detail: detail.to_string(),
        }
    }
}

impl From<PipelineError> for TaskError {
    fn from(e: PipelineError) -> TaskError {
        TaskError {
            code: e.code(),
            message: e.public_message(),
            detail: e.to_string(),
        }
    }
}

/// Loads the task's models and runs the pipeline; the number of frames written.
fn upscale(
    base: &Config,
    config: &ServiceConfig,
    task: &Task,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<u64, TaskError> {
    let catalog = Catalog::builtin();
    // Checked at upload too; rows from before that check get it here.
    if let Some(name) = &task.settings.model {
        ModelRef::resolve_for_client(name, base, &catalog)
            .map_err(|e| TaskError::new("model_unavailable", e.to_string()))?;
    }
    let recipe = task
        .settings
        .recipe(&catalog, base.default_model.as_deref())
        .map_err(|e| TaskError::new("invalid_settings", e.to_string()))?;
    let options = vsr_runtime::Options {
        threads: config.threads,
        ..Default::default()
    };
    let request: vsr_cuda::DeviceRequest = config.device.parse().unwrap_or_default();
    let device = vsr_cuda::select(request, &vsr_cuda::inventory())
        .map_err(|e| TaskError::new(e.code(), e.to_string()))?
        .device;
    let strict = matches!(request, vsr_cuda::DeviceRequest::Cuda(_));
    let enhancer = Enhancer::load(recipe, base, &catalog, options, &device, strict)
        .map_err(|e| TaskError::private("model_failed", "the model could not be loaded", e))?;
    let codec = task.settings.codec.unwrap_or(Codec::H264);
    let job = Job {
        input: &task.input_path,
        output: &task.output_path,
        enhancer: &enhancer,
        encode: EncodeSettings {
            codec,
            crf: task.settings.crf.unwrap_or(codec.default_crf()),
            shortest: false,
        },
        limits: config.limits.clone(),
        max_output: config.max_output,
        max_frames: None,
    };
    Ok(pipeline::run(&job, progress, cancel)?.frames)
}
