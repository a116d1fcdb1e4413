//! `vsr models list`, `vsr models inspect` and `vsr models fetch`.

use std::fmt::Write as _;
use std::io::Write as _;

use vsr_media::catalog::Catalog;
use vsr_media::config::Config;
use vsr_media::fetch;
use vsr_media::model_ref::ModelRef;
use vsr_media::settings::preset_table;

pub fn list(config: &Config, json: bool) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    if json {
        let rows: Vec<serde_json::Value> = catalog
            .models
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name, "family": m.family, "architecture": m.architecture, "scale": m.scale,
                    "denoise": m.denoise, "sizeBytes": m.size(), "licence": m.licence,
                    "installed": fetch::is_installed(config, m),
                })
            })
            .collect();
        return print(&(serde_json::to_string_pretty(&rows)? + "\n"));
    }
    let mut out = String::new();
    writeln!(
        out,
        "{:<34} {:<21} {:>5} {:<13} {:>8}  {:<26} INSTALLED",
        "NAME", "FAMILY", "SCALE", "DENOISE", "SIZE", "LICENCE"
    )?;
    for m in &catalog.models {
        writeln!(
            out,
            "{:<34} {:<21} {:>5} {:<13} {:>6.1}MB  {:<26} {}",
            m.name,
            m.family,
            format!("{}x", m.scale),
            m.denoise,
            m.size() as f64 / 1e6,
            m.licence,
            if fetch::is_installed(config, m) {
                "yes"
            } else {
                "no"
            }
        )?;
    }
    writeln!(
        out,
        "\nPRESETS (--preset, or \"quality\" in the API; --denoise and --preserve-details pick variants, see docs/models.md)\n"
    )?;
    out += &preset_table();
    writeln!(out, "\nmodels directory: {}", config.models_dir.display())?;
    print(&out)
}

/// `vsr models inspect MODEL`: what the model is and needs, as text or JSON.
pub fn inspect(config: &Config, model: &str, json: bool) -> anyhow::Result<()> {
    let model = ModelRef::resolve(Some(model), config, Catalog::builtin())?;
    let report = vsr_media::inspect::inspect(&model)?;
    if json {
        return print(&(serde_json::to_string_pretty(&report)? + "\n"));
    }
    print(&report.to_string())
}

/// Writes to stdout; a closed pipe (`vsr models list | head`) ends quietly.
fn print(text: &str) -> anyhow::Result<()> {
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

pub fn fetch(config: &Config, names: &[String], all: bool) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let selected = fetch::select(catalog, names, all)?;
    eprintln!(
        "fetching {} model(s) into {}",
        selected.len(),
        config.models_dir.display()
    );
    fetch::fetch(config, catalog, &selected, &mut |line| {
        eprintln!("  {line}")
    })?;
    Ok(())
}
