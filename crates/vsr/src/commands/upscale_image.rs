//! `vsr upscale-image IN... -o OUT`: images through the models. One input and an output
//! named like an image writes that file; otherwise OUT is a folder and every input (a file,
//! or a folder's PNG, JPEG and WebP files) goes into it under its own name. A file that
//! fails is reported and skipped; the others are done, and the exit status says whether
//! any failed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::{RunArgs, SettingsArgs};
use vsr_media::code::Code;
use vsr_media::config::Config;
use vsr_media::enhance::Enhancer;
use vsr_media::picture::{self, Format};

#[derive(Debug, Args)]
pub struct UpscaleImageArgs {
    /// Input images (PNG, JPEG, WebP) or folders of them
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output image (one input), or the folder results go into
    #[arg(short, long)]
    pub output: PathBuf,
    /// Format of results written into a folder [default: each input's own]
    #[arg(long, value_parser = ["png", "jpg", "webp"])]
    pub format: Option<String>,
    #[command(flatten)]
    pub model: SettingsArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

pub fn run(config: &Config, args: &UpscaleImageArgs) -> anyhow::Result<()> {
    let jobs = plan(args)?;
    let enhancer = args.model.load(config, &args.run)?;
    let bar = if jobs.len() > 1 {
        ProgressBar::new(jobs.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images  {elapsed} {msg}")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut failed = 0;
    // The code the run ends with: the first failure's.
    let mut first_code = None;
    for (input, output) in &jobs {
        bar.set_message(input.display().to_string());
        match upscale_one(&enhancer, input, output) {
            Ok(line) => bar.suspend(|| eprintln!("{line}")),
            Err((message, code)) => {
                failed += 1;
                first_code.get_or_insert(code);
                bar.suspend(|| eprintln!("error: {message} [{code}]"));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let done = jobs.len() - failed;
    if jobs.len() > 1 {
        eprintln!(
            "{done} of {} images upscaled in {:.1}s{}",
            jobs.len(),
            started.elapsed().as_secs_f64(),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        );
    }
    if let Some(code) = first_code {
        anyhow::bail!("{failed} of {} images failed [{code}]", jobs.len());
    }
    Ok(())
}

/// Each input file and where its result goes. Nothing is written when the request cannot be
/// done as asked: a missing input, an output format we do not write, a result that would
/// replace its source or another input's result.
fn plan(args: &UpscaleImageArgs) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    if let Some(missing) = args.inputs.iter().find(|p| !p.exists()) {
        let e = std::io::Error::from(std::io::ErrorKind::NotFound);
        return Err(super::input_error(missing, e));
    }
    let single = args.inputs.len() == 1
        && !args.inputs[0].is_dir()
        && Format::of_path(&args.output).is_some();
    if single {
        super::refuse_overwriting_input(&args.inputs[0], &args.output)?;
        return Ok(vec![(args.inputs[0].clone(), args.output.clone())]);
    }
    if let Some(ext) = args.output.extension().filter(|_| !args.output.is_dir()) {
        if Format::of_path(&args.output).is_none() && args.inputs.len() == 1 {
            anyhow::bail!(
                "{}: .{} is not a format written here: .png, .jpg or .webp, or a folder [{}]",
                args.output.display(),
                ext.to_string_lossy(),
                Code::InvalidSettings
            );
        }
    }
    let mut files = Vec::new();
    for input in &args.inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)
                .map_err(|e| super::input_error(input, e))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && Format::of_path(p).is_some())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!(
            "no PNG, JPEG or WebP files in the inputs [{}]",
            Code::MissingImage
        );
    }
    let jobs: Vec<(PathBuf, PathBuf)> = files
        .into_iter()
        .map(|input| {
            let mut name = PathBuf::from(input.file_name().unwrap_or_default());
            if let Some(ext) = &args.format {
                name.set_extension(ext);
            } else if Format::of_path(&name).is_none() {
                name.set_extension("png");
            }
            let output = args.output.join(name);
            (input, output)
        })
        .collect();
    let mut outputs = std::collections::HashMap::new();
    for (input, output) in &jobs {
        super::refuse_overwriting_input(input, output)?;
        if let Some(other) = outputs.insert(output, input) {
            anyhow::bail!(
                "{} and {} would both be written to {}: upscale them into separate folders [{}]",
                other.display(),
                input.display(),
                output.display(),
                Code::InvalidSettings
            );
        }
    }
    std::fs::create_dir_all(&args.output)
        .map_err(|e| anyhow::anyhow!("{}: {e} [{}]", args.output.display(), Code::IoError))?;
    Ok(jobs)
}

/// Upscales one file; the line that tells what was done, or what failed and its code.
fn upscale_one(enhancer: &Enhancer, input: &Path, output: &Path) -> Result<String, (String, Code)> {
    let source = picture::read(input).map_err(|e| (e.to_string(), e.code()))?;
    let started = Instant::now();
    let color = enhancer
        .process(&source.color)
        .map_err(|e| (format!("{}: {e}", input.display()), Code::ModelFailed))?;
    let result = source.with_color(color);
    picture::write(output, &result).map_err(|e| (e.to_string(), e.code()))?;
    let alpha = match (&source.alpha, Format::of_path(output)) {
        (Some(_), Some(f)) if !f.has_alpha() => " (alpha dropped: the format has none)",
        (Some(_), _) => " (alpha kept)",
        _ => "",
    };
    Ok(format!(
        "{}: {}x{} -> {}x{} with {} in {:.2}s{alpha}",
        output.display(),
        source.width(),
        source.height(),
        result.width(),
        result.height(),
        enhancer.model_names(),
        started.elapsed().as_secs_f64()
    ))
}
