//! `vsr worker`: a separate process that claims queued tasks and runs them through the
//! video pipeline, so a crash while decoding a hostile file costs that task a retry, not the
//! server. Progress goes to the task row every 200 ms; a cancel request comes back the same
//! way. A worker with no task of its own helps with a running one: it takes segments the
//! task's worker has not reached (each locked while worked on), so one long video uses every
//! worker.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{set_parent_process_death_signal, Signal};
use tracing::Instrument;
use vsr_media::code::Code;
use vsr_media::config::Config;
use vsr_media::enhance::prepare;
use vsr_media::enhance::Enhancer;
use vsr_media::model_ref::ModelRef;
use vsr_media::video::encode::{Codec, EncodeSettings};
use vsr_media::video::pipeline::{self, Job, Progress, Segmenting};
use vsr_media::video::segment::{LocalLocks, Sharing};
use vsr_media::video::PipelineError;

use super::store::{
    Outcome, Report, Stage, Status, StoreError, Task, TaskError, TaskId, TaskStore, WorkerId,
    WorkerInfo,
};
use crate::config::ServiceConfig;
use crate::files::Files;
use crate::sharing::StoredSharing;
use crate::ServiceError;

/// How often progress is written and cancel requests are read.
const REPORT: Duration = Duration::from_millis(200);
/// How often an idle worker looks for a queued task.
const POLL: Duration = Duration::from_millis(250);
/// How often an idle worker with media in an object store looks for a task to help with.
const LOOK_FOR_HELP: Duration = Duration::from_secs(2);
/// How often a worker of its own looks for tasks whose worker vanished.
const RECLAIM: Duration = Duration::from_secs(5);
/// A frame of a heavy model can take many seconds; a stop is not left waiting for it.
const HARD_STOP: Duration = Duration::from_millis(600);
/// How long a task's outcome waits for a database that does not answer (restarting, say).
const STORE_PATIENCE: Duration = Duration::from_secs(600);

/// Runs a store write that must not be lost (a task's outcome) again and again while the
/// database does not answer, for up to [`STORE_PATIENCE`].
async fn durably<T, F, Fut>(what: &str, mut write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        match write().await {
            Err(e) if e.is_unavailable() && started.elapsed() < STORE_PATIENCE => {
                tracing::warn!(error = %e, what, "the task store does not answer; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            done => return done,
        }
    }
}

struct Worker {
    base: Arc<Config>,
    config: Arc<ServiceConfig>,
    store: Arc<dyn TaskStore>,
    /// The tasks' files: fetched, sent and dropped here when storage is an object store.
    files: Arc<Files>,
    /// Set on SIGTERM: the running task stops and goes back to the queue.
    shutdown: Arc<AtomicBool>,
    /// Who this worker is to the store, which records who holds a task by it.
    id: WorkerId,
    /// The task it runs now, for its heartbeat.
    current: Arc<std::sync::Mutex<Option<TaskId>>>,
}

/// How a worker was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By `vsr serve` on this machine, in its `slot`, as `id`: it lives and dies with the
    /// server.
    Supervised { slot: usize, id: WorkerId },
    /// On its own, on any machine that reaches the database and the media: it keeps its
    /// claims alive by its progress reports, and takes over those of workers that vanished.
    Standalone,
}

pub async fn run(base: Config, config: ServiceConfig, mode: Mode) -> Result<(), ServiceError> {
    let id = match mode {
        Mode::Supervised { id, .. } => {
            // If the server dies (even by SIGKILL), this worker gets SIGTERM: it puts its
            // task back in the queue for the next server instead of running on unsupervised.
            set_parent_process_death_signal(Some(Signal::TERM)).map_err(|e| {
                ServiceError::Worker(format!("asking for the parent's death signal: {e}"))
            })?;
            if std::os::unix::process::parent_id() == 1 {
                return Err(ServiceError::Worker(
                    "the server that started this worker is gone".into(),
                ));
            }
            id
        }
        Mode::Standalone => WorkerId::random(),
    };
    let store = crate::open_store(&config).await?;
    let files = Arc::new(Files::new(crate::storage::open(&config)?, &config));
    let shutdown = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            shutdown.store(true, Ordering::Relaxed);
        }
    });
    let worker = Worker {
        base: Arc::new(base),
        config: Arc::new(config),
        store,
        files,
        shutdown,
        id,
        current: Default::default(),
    };
    let beating = tokio::spawn(heartbeat(
        worker.store.clone(),
        WorkerInfo {
            id,
            host: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            pid: i64::from(std::process::id()),
            device: crate::device_name(&vsr_media::enhance::select_device(
                worker
                    .config
                    .worker_device()
                    .map_err(|e| ServiceError::Worker(e.to_string()))?,
            )?),
            standalone: mode == Mode::Standalone,
            task: None,
            started_at: crate::store::now_ms(),
            seen_at: 0,
        },
        worker.current.clone(),
    ));
    tracing::info!(
        ?mode,
        worker = %id,
        database = %worker.config.database,
        storage = worker.files.storage.describe(),
        "worker ready"
    );
    let mut last_reclaim = std::time::Instant::now();
    let mut last_look = std::time::Instant::now();
    while !worker.shutdown.load(Ordering::Relaxed) {
        if last_reclaim.elapsed() > RECLAIM {
            if mode == Mode::Standalone {
                let (store, files) = (worker.store.as_ref(), &worker.files);
                crate::supervisor::reclaim_lapsed(store, files, &worker.config).await;
            }
            // Copies of tasks no longer running (left by a killed worker or by helping).
            if let (false, Ok(running)) = (worker.files.in_place(), worker.store.processing().await)
            {
                let keys = running
                    .iter()
                    .flat_map(|t| [t.input_key.to_string(), t.output_key.to_string()])
                    .collect();
                crate::sweeper::remove_orphan_copies(&worker.files, &worker.config, &keys);
            }
            last_reclaim = std::time::Instant::now();
        }
        let lease = worker.config.lease_from_now();
        match worker.store.claim_next(id, lease).await {
            Ok(Some(task)) => {
                let span = tracing::info_span!("task", task = %task.id);
                let id = task.id.clone();
                *worker.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
                // The store failed to record the outcome: put the task back for another try
                // (if the store answers) rather than lose the worker.
                if let Err(e) = run_task(&worker, task).instrument(span).await {
                    tracing::error!(task = %id, error = %e, "cannot record the task's outcome");
                    let _ = worker.store.release(&id, worker.id).await;
                }
                *worker.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            Ok(None) => {
                // Looking costs a listing of the object store there: not at every poll.
                let look = worker.files.in_place() || last_look.elapsed() > LOOK_FOR_HELP;
                if look {
                    last_look = std::time::Instant::now();
                }
                if !(look && help_a_task(&worker).await) {
                    tokio::time::sleep(POLL).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim a task");
                tokio::time::sleep(POLL * 4).await;
            }
        }
    }
    beating.abort();
    let _ = worker.store.forget_workers(Some(id), 0).await;
    tracing::info!(worker = %id, "worker stopped");
    Ok(())
}

/// Writes the worker's heartbeat every [`crate::store::HEARTBEAT`] for as long as it runs.
async fn heartbeat(
    store: Arc<dyn TaskStore>,
    mut info: WorkerInfo,
    current: Arc<std::sync::Mutex<Option<TaskId>>>,
) {
    loop {
        info.seen_at = crate::store::now_ms();
        info.task = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) = store.heartbeat(&info).await {
            tracing::warn!(error = %e, "cannot record the heartbeat");
        }
        tokio::time::sleep(crate::store::HEARTBEAT).await;
    }
}

async fn run_task(worker: &Worker, task: Task) -> Result<(), ServiceError> {
    tracing::info!(input = %task.input_key, models = ?task.models, "task started");
    let cancel = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::watch::channel(None::<Progress>);
    // With an object store, finished segments are sent as they come: another machine
    // resumes from them if this one vanishes.
    let saver = (!worker.files.in_place()).then(|| {
        let (files, task) = (worker.files.clone(), task.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SAVE_WORK).await;
                if let Err(e) = files.save_work(&task).await {
                    tracing::warn!(error = %e, "cannot store finished segments yet; retrying");
                }
            }
        })
    });
    // Fetching the files and storing the result are part of the work, under the lease the
    // reports below renew: a slow store must not pass for a dead worker.
    let work = async {
        let fetched = fetch(&worker.files, &task).await;
        let job = spawn_job(worker, &task, &cancel, fetched, move |job, cancel| {
            Ok(pipeline::run(
                job,
                &mut |p| {
                    tx.send_replace(Some(p.clone()));
                },
                cancel,
            )?)
        });
        let summary = job.await.unwrap_or_else(|e| {
            Err(Failure::private(
                Code::WorkerPanicked,
                "the worker failed unexpectedly",
                e,
            ))
        })?;
        if let Some(saver) = &saver {
            saver.abort();
        }
        // The result goes to storage before the task is recorded complete.
        match worker.files.store_output(&task).await {
            Ok(bytes) => Ok((summary, bytes)),
            Err(e) => Err(Failure::private(
                e.code(),
                "the result could not be stored; try again later",
                e,
            )),
        }
    };
    tokio::pin!(work);
    let mut stop_asked: Option<std::time::Instant> = None;
    let result = loop {
        if stop_asked.is_some_and(|t| t.elapsed() > HARD_STOP) {
            hard_stop(worker, &task).await;
        }
        tokio::select! {
            r = &mut work => break r,
            _ = tokio::time::sleep(REPORT) => {
                let report = match &*rx.borrow() {
                    Some(p) => report(&task, p, Stage::Upscaling),
                    None => Report {
                        stage: Stage::LoadingModel,
                        current_frame: 0,
                        total_frames: task.total_frames,
                        fps: 0.0,
                        eta_seconds: 0.0,
                        resumed_frames: task.resumed_frames,
                        upscaled_frames: task.upscaled_frames,
                    },
                };
                // A store that does not answer for a moment must not stop the job.
                let cancelled = worker
                    .store
                    .progress(&task.id, worker.id, worker.config.lease_from_now(), &report)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "cannot record progress");
                        false
                    });
                if cancelled || worker.shutdown.load(Ordering::Relaxed) {
                    cancel.store(true, Ordering::Relaxed);
                    stop_asked.get_or_insert_with(std::time::Instant::now);
                }
            }
        }
    };
    if let Some(saver) = &saver {
        saver.abort();
    }
    let store = &worker.store;
    let ended = |status, error| Outcome {
        status,
        error,
        expires_at: worker.config.expiry_from_now(),
        output_bytes: None,
        notes: None,
    };
    match result {
        Ok((summary, bytes)) => {
            let frames = summary.frames;
            let resumed = summary.resumed_frames;
            let bytes = Some(bytes as i64);
            let last = rx.borrow().clone();
            if let Some(p) = last {
                let report = Report {
                    total_frames: p.total_frames.max(p.current_frame),
                    eta_seconds: 0.0,
                    ..report(&task, &p, Stage::Completed)
                };
                durably("progress", || {
                    store.progress(&task.id, worker.id, worker.config.lease_from_now(), &report)
                })
                .await?;
            }
            // A damaged source completes with the frames that decoded, and says so.
            let warning = summary.damage_warning();
            if let Some(warning) = &warning {
                tracing::warn!(%warning, "the source is damaged");
            }
            let added: Vec<String> = summary.left_out.iter().cloned().chain(warning).collect();
            let notes =
                (!added.is_empty()).then(|| task.notes.iter().cloned().chain(added).collect());
            // The upload stays until expiry: the page compares frames of source and result.
            let outcome = Outcome {
                output_bytes: bytes,
                notes,
                ..ended(Status::Completed, None)
            };
            if durably("outcome", || store.finish(&task.id, worker.id, &outcome)).await? {
                worker.files.remove_work(&task).await;
                tracing::info!(frames, resumed, bytes, "task completed");
            } else {
                tracing::info!("task finished here but taken over meanwhile; its files stay");
            }
            worker.files.drop_copies(&task);
        }
        Err(f) if f.error.code == Code::Cancelled && worker.shutdown.load(Ordering::Relaxed) => {
            save_before_leaving(&worker.files, &task).await;
            durably("release", || store.release(&task.id, worker.id)).await?;
            tracing::info!("worker stopping; task returned to the queue");
        }
        Err(f) if f.error.code == Code::Cancelled => {
            // A stop also comes when the task is not this worker's any more (its lease lapsed
            // and another took it over): then the files are the other's.
            let outcome = ended(Status::Cancelled, None);
            if durably("outcome", || store.finish(&task.id, worker.id, &outcome)).await? {
                worker.files.remove_working(&task).await;
                tracing::info!("task cancelled");
            } else {
                worker.files.drop_copies(&task);
                tracing::info!("task taken over by another worker; stopped here");
            }
        }
        Err(f)
            if matches!(
                f.error.code,
                Code::InsufficientStorage | Code::StorageUnavailable
            ) =>
        {
            // The finished segments stay (until expiry) for a retry once there is room.
            tracing::warn!(error = %f.detail, "task failed: no room or no storage");
            save_before_leaving(&worker.files, &task).await;
            let outcome = ended(Status::Failed, Some(f.error));
            durably("outcome", || store.finish(&task.id, worker.id, &outcome)).await?;
            worker.files.drop_copies(&task);
        }
        Err(f) => {
            tracing::warn!(code = %f.error.code, error = %f.detail, "task failed");
            let outcome = ended(Status::Failed, Some(f.error));
            if durably("outcome", || store.finish(&task.id, worker.id, &outcome)).await? {
                worker.files.remove_working(&task).await;
            } else {
                worker.files.drop_copies(&task);
            }
        }
    }
    Ok(())
}

/// How often a worker with an object store sends the segments it finished.
const SAVE_WORK: Duration = Duration::from_secs(1);

/// Brings the task's upload and the segments other machines finished to this machine (with
/// folders they are here already).
async fn fetch(files: &Files, task: &Task) -> Result<(), Failure> {
    let storage = |e: crate::storage::StorageError| {
        Failure::private(
            e.code(),
            "the task's files could not be fetched from storage",
            e,
        )
    };
    if files.fetch_input(task).await.map_err(storage)?.is_none() {
        return Err(Failure::public(
            Code::Expired,
            "the upload is no longer stored".into(),
        ));
    }
    let restored = files.restore_work(task).await.map_err(storage)?;
    if restored > 0 {
        tracing::info!(files = restored, "fetched the work another worker stored");
    }
    Ok(())
}

/// Sends the finished segments before this worker lets the task go, so the next resumes.
async fn save_before_leaving(files: &Files, task: &Task) {
    if let Err(e) = files.save_work(task).await {
        tracing::warn!(error = %e, "cannot store the finished segments");
    }
    files.drop_copies(task);
}

/// Ends a task whose pipeline did not stop in time: records the outcome, removes the task's
/// temporaries, and exits the process (the supervisor starts a fresh worker; FFmpeg children
/// end when their pipes close).
async fn hard_stop(worker: &Worker, task: &Task) -> ! {
    if worker.shutdown.load(Ordering::Relaxed) {
        let _ = worker.store.release(&task.id, worker.id).await;
        tracing::info!("worker stopping mid-frame; task returned to the queue");
    } else {
        let outcome = Outcome {
            status: Status::Cancelled,
            error: None,
            expires_at: worker.config.expiry_from_now(),
            output_bytes: None,
            notes: None,
        };
        if let Ok(true) = worker.store.finish(&task.id, worker.id, &outcome).await {
            worker.files.remove_working(task).await;
        }
        tracing::info!("task cancelled mid-frame; worker restarting");
    }
    for temp in vsr_media::video::pipeline::temporaries(&worker.files.output(task)) {
        let _ = std::fs::remove_file(temp);
    }
    std::process::exit(0)
}

/// Why a task failed: `error` is what its status shows (our own words, no server paths or
/// FFmpeg text); `detail` is the full story, for the log only.
struct Failure {
    error: TaskError,
    detail: String,
}

impl Failure {
    /// A failure whose message may be shown as it is.
    fn public(code: Code, message: String) -> Failure {
        Failure {
            detail: message.clone(),
            error: TaskError { code, message },
        }
    }

    /// A failure whose full text must stay in the log.
    fn private(code: Code, message: &str, detail: impl std::fmt::Display) -> Failure {
        Failure {
            error: TaskError {
                code,
                message: message.to_string(),
            },
            detail: detail.to_string(),
        }
    }
}

impl From<PipelineError> for Failure {
    fn from(e: PipelineError) -> Failure {
        Failure::private(e.code(), &e.public_message(), &e)
    }
}

/// What a worker writes to the task row for pipeline progress `p` of this attempt.
fn report(task: &Task, p: &Progress, stage: Stage) -> Report {
    Report {
        stage,
        current_frame: p.current_frame,
        total_frames: p.total_frames,
        fps: p.fps,
        eta_seconds: p.eta_seconds,
        resumed_frames: p.resumed_frames,
        // The row holds the attempts before this one until this one reports.
        upscaled_frames: task.upscaled_frames + p.upscaled_frames,
    }
}

/// Loads the task's models.
fn load(base: &Config, config: &ServiceConfig, task: &Task) -> Result<Enhancer, Failure> {
    // Checked at upload too; rows from before that check get it here.
    if let Some(name) = &task.settings.model {
        ModelRef::check_client_name(name, base, vsr_media::catalog::Catalog::builtin())
            .map_err(|e| Failure::public(Code::ModelUnavailable, e.to_string()))?;
    }
    let options = config
        .run_options()
        .map_err(|e| Failure::public(Code::InvalidSettings, e.to_string()))?;
    let device = config
        .worker_device()
        .map_err(|e| Failure::public(Code::CudaUnavailable, e.to_string()))?;
    let prepared = prepare(&task.settings, base, device, options).map_err(|e| {
        let message = match e.code() {
            Code::ModelFailed => "the model could not be loaded".to_string(),
            Code::ModelConventions => {
                "the model's conventions are unsettled; the operator gives them in MODEL_CONFIG_PATH"
                    .to_string()
            }
            _ => e.to_string(),
        };
        Failure::private(e.code(), &message, &e)
    })?;
    tracing::info!(device = %prepared.selection.reason, notes = ?prepared.notes, "models loaded");
    Ok(prepared.enhancer)
}

/// The pipeline job of a task: every worker that works on it builds the same one (so the
/// same key and work directory).
fn job<'a>(
    config: &ServiceConfig,
    task: &'a Task,
    (input, output): (&'a Path, &'a Path),
    enhancer: &'a Enhancer,
    sharing: &'a dyn Sharing,
) -> Job<'a> {
    let codec = task.settings.codec.unwrap_or(Codec::H264);
    Job {
        input,
        output,
        enhancer,
        encode: EncodeSettings {
            codec,
            crf: task.settings.crf.unwrap_or(codec.default_crf()),
            shortest: false,
        },
        limits: config.limits.clone(),
        max_output: config.max_output,
        max_frames: None,
        segmenting: Segmenting {
            seconds: config.segment_seconds(),
            resume: true,
            // An upload never changes under its task.
            input_identity: task.id.to_string(),
        },
        sharing,
    }
}

/// Runs `work` on `task`'s pipeline job in a blocking thread, once `ready` (the task's files
/// fetched) holds: its models loaded and its job built as every worker of the task builds it,
/// segments shared as this worker shares them.
fn spawn_job<R: Send + 'static>(
    worker: &Worker,
    task: &Task,
    cancel: &Arc<AtomicBool>,
    ready: Result<(), Failure>,
    work: impl FnOnce(&Job, &AtomicBool) -> Result<R, Failure> + Send + 'static,
) -> tokio::task::JoinHandle<Result<R, Failure>> {
    let (base, config, files, task, cancel) = (
        worker.base.clone(),
        worker.config.clone(),
        worker.files.clone(),
        task.clone(),
        cancel.clone(),
    );
    let sharing = sharing(worker, &task, &cancel);
    tokio::task::spawn_blocking(move || {
        ready?;
        let enhancer = load(&base, &config, &task)?;
        let (input, output) = (files.input(&task), files.output(&task));
        let job = job(
            &config,
            &task,
            (&input, &output),
            &enhancer,
            sharing.as_ref(),
        );
        work(&job, &cancel)
    })
}

/// How this worker shares the task's segments with the others: file locks in folders every
/// worker sees, or claims in the task database when media are in an object store.
fn sharing(worker: &Worker, task: &Task, cancel: &Arc<AtomicBool>) -> Box<dyn Sharing + Send> {
    if worker.files.in_place() {
        return Box::new(LocalLocks);
    }
    Box::new(StoredSharing::new(
        worker.store.clone(),
        worker.files.clone(),
        task.clone(),
        worker.id,
        Duration::from_secs(worker.config.lease_seconds.max(1)),
        cancel.clone(),
        tokio::runtime::Handle::current(),
    ))
}

/// Helps with the oldest running task that has segments nobody holds; whether there was one.
/// Only workers that share the task's folders can: segments are claimed by file locks there.
async fn help_a_task(worker: &Worker) -> bool {
    let tasks = match worker.store.processing().await {
        Ok(t) => t,
        Err(_) => return false,
    };
    let mut found = None;
    for task in tasks {
        if has_free_segments(worker, &task).await {
            found = Some(task);
            break;
        }
    }
    let Some(task) = found else {
        return false;
    };
    // The upload; the plan is here already, and finished segments are not needed.
    if !matches!(worker.files.fetch_input(&task).await, Ok(Some(_))) {
        tracing::info!(task = %task.id, "cannot fetch the upload of a task to help with");
        return false;
    }
    let span = tracing::info_span!("help", task = %task.id);
    let cancel = Arc::new(AtomicBool::new(false));
    let blocking = spawn_job(worker, &task, &cancel, Ok(()), |job, cancel| {
        Ok(pipeline::help(job, &mut |_| {}, cancel)?)
    });
    let watch = async {
        tokio::pin!(blocking);
        loop {
            tokio::select! {
                r = &mut blocking => break r,
                _ = tokio::time::sleep(REPORT) => {
                    // The task's own worker reports progress; a helper only watches for its end.
                    let running = matches!(
                        worker.store.get(&task.id).await,
                        Ok(Some(t)) if t.status == Status::Processing
                    );
                    if !running || worker.shutdown.load(Ordering::Relaxed) {
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    };
    match watch.instrument(span.clone()).await {
        Ok(Ok(frames)) => span.in_scope(|| tracing::info!(frames, "helped with a task")),
        Ok(Err(f)) if f.error.code == Code::Cancelled => {}
        // The task's own worker meets the same failure and records it.
        Ok(Err(f)) => span.in_scope(|| tracing::info!(error = %f.detail, "helping stopped")),
        Err(e) => span.in_scope(|| tracing::warn!(error = %e, "helping failed unexpectedly")),
    }
    // The copies stay while the task runs (a worker of this machine may be its own); the
    // sweep of copies removes them once it ended.
    true
}

/// Whether the running task has a segment that is neither finished nor held: in its work
/// directory on a shared mount, or by the plan its worker stored and the claims in the
/// database.
async fn has_free_segments(worker: &Worker, task: &Task) -> bool {
    if worker.files.in_place() {
        return vsr_media::video::segment::has_free_segments(&worker.files.output(task));
    }
    if *worker.current.lock().unwrap_or_else(|p| p.into_inner()) == Some(task.id.clone()) {
        return false;
    }
    let Ok(Some(segments)) = worker.files.stored_plan(task).await else {
        return false;
    };
    matches!(
        worker.store.segments_taken(&task.id, crate::store::now_ms()).await,
        Ok(taken) if taken < segments as i64
    )
}
