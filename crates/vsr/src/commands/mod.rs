//! One module per command; `main` only parses arguments and dispatches.

pub mod bench;
pub mod devices;
pub mod models;
pub mod probe;
pub mod serve;
pub mod upscale;
pub mod upscale_image;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};
use vsr_runtime::{Isa, Options};

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
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Instruction set for the CPU kernels
    #[arg(long, value_enum, default_value_t = IsaChoice::Auto)]
    pub isa: IsaChoice,
    /// Tile size in input pixels (default: the largest that fits --memory-mib)
    #[arg(long)]
    pub tile: Option<usize>,
    /// Memory budget for one tile's activations, in MiB
    #[arg(long, default_value_t = 2048)]
    pub memory_mib: usize,
    /// Where the model runs: auto, cpu, cuda or cuda:N
    #[arg(long, env = "VSR_DEVICE", default_value = "auto")]
    pub device: vsr_cuda::DeviceRequest,
}

impl RunArgs {
    pub fn isa(&self) -> anyhow::Result<Isa> {
        let best = Isa::detect();
        let wanted = match self.isa {
            IsaChoice::Auto => return Ok(best),
            IsaChoice::Avx512 => Isa::Avx512,
            IsaChoice::Avx2 => Isa::Avx2,
            IsaChoice::Portable => Isa::Portable,
        };
        anyhow::ensure!(
            Isa::all_supported().contains(&wanted),
            "this CPU does not support {}",
            wanted.name()
        );
        Ok(wanted)
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
        })
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
        }
    }

    /// The models these settings ask for, loaded; the device and notes go to stderr.
    pub fn load(&self, config: &Config, run: &RunArgs) -> anyhow::Result<Enhancer> {
        load(&self.settings(), config, run)
    }
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
