//! `vsr serve`: the HTTP API over a task store, with jobs run by worker processes.
//! connection (listener) -> who is calling (auth) -> upload (api) -> queued task row (store)
//! -> claimed by a worker process (supervisor, worker) -> video pipeline (vsr-media) -> result
//! in storage (files) -> download (api) -> expiry and orphan files (sweeper).
//!
//! [`serve`] runs it on a listener until a shutdown future completes (tests run it
//! in-process); [`run`] is `vsr serve` itself.

mod api;
mod auth;
pub mod config;
pub mod files;
mod listener;
mod metrics;
mod problem;
mod sharing;
pub mod storage;
pub mod store;
mod supervisor;
mod sweeper;
pub mod worker;

use std::sync::Arc;

pub use supervisor::CONFIG_ENV;

use vsr_media::catalog::Catalog;
use vsr_media::code::Code;
use vsr_media::config::Config;

use crate::config::ServiceConfig;
use crate::store::{SqliteStore, TaskStore};

/// What every request handler can reach.
pub struct App {
    pub config: ServiceConfig,
    pub base: Config,
    pub catalog: &'static Catalog,
    pub store: Arc<dyn TaskStore>,
    /// Uploads and results: the storage every machine shares, and this machine's copies.
    pub files: files::Files,
    pub keys: auth::Keys,
    /// Signs download links.
    pub secret: Vec<u8>,
    pub metrics: metrics::Metrics,
    /// Previews run one at a time: each is a full model run in this process.
    pub previews: tokio::sync::Semaphore,
    /// Uploads being received; a full set answers 503 at once.
    pub uploads: Arc<tokio::sync::Semaphore>,
    /// FFmpeg probes and frame grabs running in this process.
    pub probes: tokio::sync::Semaphore,
    /// The operator's key for `/metrics`, if set.
    pub metrics_key: Option<auth::Keys>,
    /// Where models run (the workers select the same way), and why: for /healthz.
    pub device: vsr_cuda::Selection,
}

pub type AppState = Arc<App>;

/// How long a request waits for a free probe slot before it is answered 503.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl App {
    /// A turn to run FFmpeg on a client's file, or 503 `server_busy` after a short wait.
    pub async fn probe_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, problem::Problem> {
        match tokio::time::timeout(PROBE_WAIT, self.probes.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(problem::Problem::busy("video probes")),
        }
    }
}

/// Why the service (or a worker) could not start or went down.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} [{code}]", code = Code::from(.0))]
    Device(#[from] vsr_cuda::DeviceError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("creating {}: {source}", .path.display())]
    Folder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("task store {database}: {source}")]
    OpenStore {
        database: config::Database,
        source: store::StoreError,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error("worker: {0}")]
    Worker(String),
}

/// Runs `vsr serve` as configured: binds `host:port` and serves until SIGINT or SIGTERM.
pub async fn run(base: Config, config: ServiceConfig) -> Result<(), ServiceError> {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServiceError::Listen { addr, source })?;
    serve(listener, shutdown_signal(), base, config).await
}

/// The service on `listener` until `shutdown` completes: opens the task store, re-queues
/// what a stopped server left running, starts the worker processes and the sweeper, serves
/// the API, then stops the workers (each puts its task back in the queue).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    base: Config,
    config: ServiceConfig,
) -> Result<(), ServiceError> {
    let placed = worker_devices(&config)?;
    // What this process reports (and its workers use, unless a set of GPUs spreads them).
    let shown = config.device.single().or(placed.first().copied());
    let selection = vsr_media::enhance::select_device(shown.unwrap_or_default())?;
    tracing::info!(device = %config.device, "{}", selection.reason);
    for dir in [&config.upload_folder, &config.processed_folder] {
        create_folder(dir)?;
    }
    let store = open_store(&config).await?;
    let storage = storage::open(&config)?;
    tracing::info!(storage = storage.describe(), "storage ready");
    sweeper::remove_stale_temporaries(&config.processed_folder);
    // Tasks a stopped server left running are queued afresh; queued ones wait in their rows.
    let requeued = store
        .requeue_interrupted(store::now_ms(), config.expiry_from_now())
        .await?;
    if !requeued.is_empty() {
        tracing::info!(count = requeued.len(), "interrupted tasks re-queued");
    }
    let secret = match &config.secret_key {
        Some(k) => k.as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "SECRET_KEY is not set: download links stop working when the server restarts"
            );
            uuid::Uuid::new_v4().as_bytes().to_vec()
        }
    };
    let app = Arc::new(App {
        keys: auth::Keys::new(&config.api_keys),
        catalog: Catalog::builtin(),
        metrics: metrics::Metrics::new(config.workers),
        previews: tokio::sync::Semaphore::new(1),
        uploads: Arc::new(tokio::sync::Semaphore::new(
            config.http.max_concurrent_uploads.max(1),
        )),
        probes: tokio::sync::Semaphore::new(config.http.max_concurrent_probes.max(1)),
        metrics_key: config
            .metrics_key
            .as_ref()
            .map(|k| auth::Keys::new(std::slice::from_ref(k))),
        secret,
        store,
        files: files::Files::new(storage, &config),
        base,
        config,
        device: selection,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::new();
    // No workers: an API node of a cluster whose workers run on their own (`vsr worker`).
    let worker_count = placed.len();
    for (slot, device) in placed.into_iter().enumerate() {
        workers.push(tokio::spawn(supervisor::supervise(
            app.clone(),
            slot,
            device,
            stop_rx.clone(),
        )));
    }
    tokio::spawn(sweeper::sweep_forever(app.clone()));
    let address = listener.local_addr().map_err(ServiceError::Serve)?;
    tracing::info!(%address, workers = worker_count, "serving");
    listener::run(
        listener,
        api::router(app.clone()),
        app.config.http.header_timeout(),
        shutdown,
    )
    .await
    .map_err(ServiceError::Serve)?;
    tracing::info!("stopping workers");
    let _ = stop_tx.send(true);
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

/// The device of each worker slot: every slot on the configured device, or one worker per GPU
/// of a set (the driver asked only then).
fn worker_devices(config: &ServiceConfig) -> Result<Vec<vsr_cuda::DeviceRequest>, ServiceError> {
    let inventory = match config.device {
        vsr_cuda::DeviceSet::One(_) => vsr_cuda::Inventory {
            gpus: Ok(Vec::new()),
            libraries: Vec::new(),
        },
        _ => vsr_cuda::inventory(),
    };
    let placed = vsr_cuda::place(&config.device, config.workers, &inventory)?;
    if placed.len() > config.workers {
        tracing::info!(
            configured = config.workers,
            workers = placed.len(),
            device = %config.device,
            "one worker per GPU"
        );
    }
    Ok(placed)
}

/// Where models run, as health and the workers list show it: `cpu` or `cuda:N (name)`.
pub(crate) fn device_name(selection: &vsr_cuda::Selection) -> String {
    match &selection.device {
        vsr_cuda::Device::Cpu => "cpu".to_string(),
        vsr_cuda::Device::Cuda(gpu) => format!("cuda:{} ({})", gpu.index, gpu.name),
    }
}

fn create_folder(path: &std::path::Path) -> Result<(), ServiceError> {
    std::fs::create_dir_all(path).map_err(|source| ServiceError::Folder {
        path: path.to_path_buf(),
        source,
    })
}

/// The configured task store, its folder created if needed: how the server and its workers
/// open it.
pub(crate) async fn open_store(config: &ServiceConfig) -> Result<Arc<dyn TaskStore>, ServiceError> {
    let failed = |source| ServiceError::OpenStore {
        database: config.database.clone(),
        source,
    };
    Ok(match &config.database {
        config::Database::Sqlite(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                create_folder(parent)?;
            }
            Arc::new(SqliteStore::open(path).await.map_err(failed)?)
        }
        config::Database::Postgres(url) => {
            Arc::new(store::PostgresStore::open(url).await.map_err(failed)?)
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
