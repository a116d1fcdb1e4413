//! `vsr models list` and `vsr models fetch`.

use crate::catalog::Catalog;
use crate::config::Config;
use crate::fetch;

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
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<34} {:<21} {:>5} {:<13} {:>8}  {:<26} INSTALLED",
        "NAME", "FAMILY", "SCALE", "DENOISE", "SIZE", "LICENCE"
    );
    for m in &catalog.models {
        println!(
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
        );
    }
    println!("\nmodels directory: {}", config.models_dir.display());
    Ok(())
}

pub fn fetch(config: &Config, names: &[String], all: bool) -> anyhow::Result<()> {
    let catalog = Catalog::builtin();
    let selected = fetch::select(&catalog, names, all)?;
    eprintln!(
        "fetching {} model(s) into {}",
        selected.len(),
        config.models_dir.display()
    );
    fetch::fetch(config, &catalog, &selected, &mut |line| {
        eprintln!("  {line}")
    })?;
    Ok(())
}
