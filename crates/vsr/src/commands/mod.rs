//! One module per command; `main` only parses arguments and dispatches.

pub mod bench;
pub mod devices;
pub mod models;
pub mod output_lock;
pub mod probe;
pub mod serve;
pub mod upscale;
pub mod upscale_image;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use vsr_runtime::{Isa, IsaLevel, Options, Tuning};

use vsr_media::code::Code;
use vsr_media::config::Config;
use vsr_media::enhance::{prepare, select_device, Enhancer};
use vsr_media::settings::{Preset, Settings};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum IsaChoice {
    Auto,
    Avx512,
    Avx2,
    Portable,
}

/// How inference runs; shared by every command that runs a model.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Worker threads (0 = one per core)
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024).map(usize::from))]
    pub threads: usize,
    /// Instruction set for the CPU kernels
    #[arg(long, value_enum, env = "VSR_ISA", default_value_t = IsaChoice::Auto)]
    pub isa: IsaChoice,
    /// Tile size in input pixels (default: the largest that fits --memory-mib)
    #[arg(long, value_parser = clap::value_parser!(u32).range(16..).map(|t| t as usize))]
    pub tile: Option<usize>,
    /// Memory budget for one tile's activations, in MiB
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(64..).map(|m| m as usize))]
    pub memory_mib: usize,
    /// Where the model runs: auto, cpu, cuda or cuda:N
    #[arg(long, env = "VSR_DEVICE", default_value = "auto")]
    pub device: vsr_cuda::DeviceRequest,
}

impl RunArgs {
    pub fn isa(&self) -> anyhow::Result<Isa> {
        let level = match self.isa {
            IsaChoice::Auto => return Ok(Isa::detect()),
            IsaChoice::Avx512 => IsaLevel::Avx512,
            IsaChoice::Avx2 => IsaLevel::Avx2,
            IsaChoice::Portable => IsaLevel::Portable,
        };
        Ok(Isa::new(level)?)
    }

    /// The device to run on, announced in one line with the reason.
    pub fn device(&self) -> anyhow::Result<vsr_cuda::Device> {
        let selection =
            select_device(self.device).map_err(|e| anyhow::anyhow!("{e} [{}]", Code::from(&e)))?;
        eprintln!("device: {}", selection.reason);
        Ok(selection.device)
    }

    pub fn options(&self) -> anyhow::Result<Options> {
        Ok(Options {
            isa: self.isa()?,
            threads: self.threads,
            memory_budget: self.memory_mib << 20,
            tile: self.tile,
            tuning: tuning_from_env(),
        })
    }
}

/// Library logs for every command but the service: warnings (a GPU falling back to the CPU,
/// say) and, under `VSR_PROFILE`, each layer's time, on stderr; `RUST_LOG` overrides.
pub fn init_cli_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warn,vsr_runtime::profile=info".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}

/// Profiling and kernel tuning from `VSR_PROFILE` (any value) and `VSR_WINO_TILES` (a count):
/// the environment is read here, at the binary's edge, never inside the runtime.
pub fn tuning_from_env() -> Tuning {
    Tuning {
        profile: std::env::var_os("VSR_PROFILE").is_some(),
        winograd_tiles: std::env::var("VSR_WINO_TILES")
            .ok()
            .and_then(|v| v.parse().ok()),
    }
}

/// What to upscale with, as the seed's settings; shared by `upscale` and `upscale-image`.
#[derive(Debug, Clone, Args)]
pub struct SettingsArgs {
    /// Upscale factor: 2, 3, 4, or 8 (two passes) [default: 4, or the model's own]
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["2", "3", "4", "8"])
        .map(|s| s.parse::<u32>().expect("listed values are numbers")))]
    pub scale: Option<u32>,
    /// Speed against quality; the models each uses are in `vsr models list`
    #[arg(long, value_enum, default_value_t = Preset::Balanced)]
    pub preset: Preset,
    /// Denoise strength, 0 (off) to 3
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub denoise: u8,
    /// Keep the source's fine texture (conservative models, or a Lanczos blend)
    #[arg(long)]
    pub preserve_details: bool,
    /// Accepted for compatibility with the seed's API; has no effect on these models
    #[arg(long)]
    pub guide_scale: Option<f64>,
    /// Model name from `vsr models list`, or a path to a .param file (overrides --preset)
    #[arg(long)]
    pub model: Option<String>,
}

impl SettingsArgs {
    pub fn settings(&self) -> Settings {
        Settings {
            scale: self.scale,
            quality: self.preset,
            denoise_level: self.denoise,
            preserve_details: self.preserve_details,
            guide_scale: self.guide_scale,
            model: self.model.clone(),
            codec: None,
            crf: None,
            temporal_stability: Default::default(),
        }
    }

    /// The models these settings ask for, loaded; the device and notes go to stderr.
    pub fn load(&self, config: &Config, run: &RunArgs) -> anyhow::Result<Enhancer> {
        load(&self.settings(), config, run)
    }
}

/// A command stopped by Ctrl-C or SIGTERM: the process exits with 130, as shells report an
/// interrupted program.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// Refuses an output that is the input itself (the same file under any name): the result
/// would replace its own source.
pub fn refuse_overwriting_input(
    input: &std::path::Path,
    output: &std::path::Path,
) -> anyhow::Result<()> {
    let same = match (std::fs::canonicalize(input), std::fs::canonicalize(output)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        anyhow::bail!(
            "{}: the output is the input itself; choose another output name [{}]",
            output.display(),
            Code::InvalidSettings
        );
    }
    Ok(())
}

/// An input that cannot be read, with its path and the code for why: missing, a folder, or
/// not readable.
pub fn input_error(path: &std::path::Path, e: std::io::Error) -> anyhow::Error {
    let (what, code) = if path.is_dir() {
        ("a folder, not a file".to_string(), Code::NotAFile)
    } else if e.kind() == std::io::ErrorKind::NotFound {
        ("no such file".to_string(), Code::NotFound)
    } else {
        (format!("cannot be read: {e}"), Code::IoError)
    };
    anyhow::anyhow!("{}: {what} [{code}]", path.display())
}

/// `settings` loaded for `run` through the one path (`prepare`), its choices told on stderr.
pub fn load(settings: &Settings, config: &Config, run: &RunArgs) -> anyhow::Result<Enhancer> {
    let prepared = prepare(settings, config, run.device, run.options()?)
        .map_err(|e| anyhow::anyhow!("{e} [{}]", e.code()))?;
    eprintln!("device: {}", prepared.selection.reason);
    for note in &prepared.notes {
        eprintln!("note: {note}");
    }
    Ok(prepared.enhancer)
}
