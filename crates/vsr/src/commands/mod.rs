//! One module per command; `main` only parses arguments and dispatches.

pub mod bench;
pub mod models;
pub mod probe;
pub mod upscale;
pub mod upscale_image;

use clap::{Args, ValueEnum};
use vsr_runtime::{Isa, Options};

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

    pub fn options(&self) -> anyhow::Result<Options> {
        Ok(Options {
            isa: self.isa()?,
            threads: self.threads,
            memory_budget: self.memory_mib << 20,
            tile: self.tile,
        })
    }
}
