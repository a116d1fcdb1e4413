//! `vsr serve` and `vsr worker`: configuration and logging at the binary's edge; the service
//! itself is in the `vsr-service` library.

use std::path::PathBuf;

use clap::Args;

use vsr_media::config::Config;
use vsr_service as service;
use vsr_service::config::ServiceConfig;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file [env: VSR_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1]
    #[arg(long)]
    pub host: Option<String>,
    /// Port [default: 5000]
    #[arg(long)]
    pub port: Option<u16>,
    /// Worker processes [default: 1]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Log one JSON object per line
    #[arg(long)]
    pub log_json: bool,
    /// Print the effective configuration and exit
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The slot `vsr serve` started this worker in (it passes its configuration along)
    #[arg(long, default_value_t = 0)]
    pub slot: usize,
    /// The id `vsr serve` chose for this worker (it finds the worker's tasks by it)
    #[arg(long, hide = true)]
    pub worker_id: Option<i64>,
    /// The task database to take work from (`postgres://...`), for a worker on its own
    /// (overrides VSR_DATABASE and the configuration file)
    #[arg(long)]
    pub database: Option<String>,
    /// Where uploads and results are: `s3://bucket/prefix` (endpoint and keys from
    /// VSR_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or `folders` (overrides
    /// VSR_STORAGE)
    #[arg(long)]
    pub storage: Option<String>,
    /// Configuration file (TOML), for a worker on its own [env: VSR_CONFIG]
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

pub fn serve(base: Config, args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = ServiceConfig::load(args.config.as_deref())?;
    if let Some(h) = &args.host {
        config.host = h.clone();
    }
    if let Some(p) = args.port {
        config.port = p;
    }
    if let Some(w) = args.workers {
        config.workers = w;
    }
    config.log_json |= args.log_json;
    if args.print_config {
        print!("{}", config.to_toml_masked());
        return Ok(());
    }
    init_logging(config.log_json);
    Ok(runtime()?.block_on(service::run(base, config))?)
}

/// A worker: started by `vsr serve` (which passes its configuration in the environment), or
/// on its own on any machine, configured like a server (file, environment, `--database`).
pub fn worker(base: Config, args: &WorkerArgs) -> anyhow::Result<()> {
    let (mut config, mode) = match std::env::var(service::CONFIG_ENV) {
        Ok(json) => (
            serde_json::from_str::<ServiceConfig>(&json)?,
            service::worker::Mode::Supervised {
                slot: args.slot,
                id: service::store::WorkerId::from_raw(
                    args.worker_id
                        .ok_or_else(|| anyhow::anyhow!("--worker-id is missing"))?,
                ),
            },
        ),
        Err(_) => (
            ServiceConfig::load(args.config.as_deref())?,
            service::worker::Mode::Standalone,
        ),
    };
    if let Some(url) = &args.database {
        config.database = url.parse().unwrap_or_else(|never| match never {});
    }
    if let Some(url) = &args.storage {
        config
            .set_storage(url)
            .map_err(|e| anyhow::anyhow!("--storage: {e}"))?;
    }
    init_logging(config.log_json);
    Ok(runtime()?.block_on(service::worker::run(base, config, mode))?)
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sqlx=warn".into());
    // Colours only on a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
