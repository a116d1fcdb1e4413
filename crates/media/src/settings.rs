//! What a user asks for, in the seed's words (`scale`, `quality`, `denoiseLevel`,
//! `preserveDetails`, `guideScale`), and the recipe that delivers it: which models run, in
//! which order, with which pre-filter and blend. One table, used by `vsr upscale`, the HTTP
//! API, `vsr models list` and docs/models.md (a test keeps the docs in step).

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::code::Code;

/// Speed against quality, as the seed names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Fast,
    #[default]
    Balanced,
    Quality,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Fast, Preset::Balanced, Preset::Quality];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Fast => "fast",
            Preset::Balanced => "balanced",
            Preset::Quality => "quality",
        }
    }

    /// The model one pass at `scale` (2, 3 or 4) starts from, before denoise and
    /// preserve-details pick a variant of it.
    pub fn base_model(self, scale: u32) -> &'static str {
        match (self, scale) {
            (Preset::Fast, 2) => "realesr-animevideov3-x2",
            (Preset::Fast, 3) => "realesr-animevideov3-x3",
            (Preset::Fast, _) => "realesr-animevideov3-x4",
            (Preset::Balanced, 2) => "realcugan-se-up2x",
            (Preset::Balanced, 3) => "realcugan-se-up3x",
            (Preset::Balanced, _) => "realcugan-se-up4x",
            (Preset::Quality, 2) => "realcugan-pro-up2x",
            (Preset::Quality, 3) => "realcugan-pro-up3x",
            (Preset::Quality, _) => "realesrgan-x4plus",
        }
    }

    /// Why a user would pick it; measured costs are in docs/benchmarks.md.
    pub fn summary(self) -> &'static str {
        match self {
            Preset::Fast => "SRVGGNetCompact, made for video: the fastest",
            Preset::Balanced => {
                "Real-CUGAN SE: sharper lines and texture, denoise variants; 1.6-3x the time of fast"
            }
            Preset::Quality => {
                "Real-CUGAN Pro (refined SE) at 2x/3x; Real-ESRGAN x4plus at 4x, the strongest restoration at about 40x the time of fast"
            }
        }
    }
}

/// Every scale a user may ask for; 8 is two passes (2x, then 4x).
pub const SCALES: [u32; 4] = [2, 3, 4, 8];
pub const DEFAULT_SCALE: u32 = 4;
/// The largest `guideScale` accepted (it has no effect on these models).
pub const MAX_GUIDE_SCALE: f64 = 100.0;
/// The share of a Lanczos upscale mixed into the result when details are preserved and the
/// model has no conservative variant: enough to keep fine texture a GAN would smooth.
pub const DETAIL_BLEND: f32 = 0.25;

/// The user's request. Every field has a default, so `{}` is a valid request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// 2, 3, 4 or 8; `None` means 4, or the chosen model's own scale.
    pub scale: Option<u32>,
    pub quality: Preset,
    /// 0 (off) to 3 (strongest).
    pub denoise_level: u8,
    pub preserve_details: bool,
    /// A diffusion setting from the seed; accepted and reported as not applicable.
    pub guide_scale: Option<f64>,
    /// A model name or (on the command line only) a `.param` path, instead of the preset's
    /// choice. API clients may name catalog and installed models only (`ModelRef::check_client_name`).
    pub model: Option<String>,
    /// Output codec (default H.264) and CRF (default: visually lossless for the codec).
    pub codec: Option<crate::video::encode::Codec>,
    pub crf: Option<u32>,
    /// Damp the shimmer per-frame models leave in fine texture (`off`, `auto`, `strong`).
    pub temporal_stability: crate::temporal::Temporal,
}

/// A setting that cannot be honoured; `field` uses the API's names.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub reason: String,
}

impl SettingsError {
    pub fn code(&self) -> Code {
        Code::InvalidSettings
    }
}

/// An FFmpeg `hqdn3d` strength, applied to decoded frames before the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prefilter(pub u8);

impl Prefilter {
    /// The filter for FFmpeg's `-vf` (luma/chroma spatial, luma/chroma temporal); level 2 is
    /// FFmpeg's default strength, 1 half of it, 3 double.
    pub fn ffmpeg_filter(self) -> String {
        let k = [0.0, 0.5, 1.0, 2.0][self.0.min(3) as usize];
        format!("hqdn3d={}:{}:{}:{}", 4.0 * k, 3.0 * k, 6.0 * k, 4.5 * k)
    }
}

/// What runs: models in order, a denoise pre-filter, a detail blend, and notes that explain
/// every choice the user did not make explicitly.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipe {
    /// The scale asked for, when known before loading (a custom model's may be inferred).
    pub scale: Option<u32>,
    /// Model names or `.param` paths, applied one after the other.
    pub passes: Vec<String>,
    pub prefilter: Option<Prefilter>,
    /// Share of a Lanczos upscale of the input mixed into the output (0 = none).
    pub detail_blend: f32,
    /// The stabiliser run after the models on video (`temporal`).
    pub temporal: crate::temporal::Temporal,
    pub notes: Vec<String>,
}

impl Settings {
    /// The recipe for these settings, or which field is wrong and why. `default_model` (the
    /// seed's `MODEL_PATH`) stands in when no model is named.
    pub fn recipe(
        &self,
        catalog: &Catalog,
        default_model: Option<&str>,
    ) -> Result<Recipe, SettingsError> {
        if let (None, Some(default)) = (&self.model, default_model) {
            let with_default = Settings {
                model: Some(default.to_string()),
                ..self.clone()
            };
            return with_default.recipe(catalog, None);
        }
        let bad = |field, reason: String| SettingsError { field, reason };
        if let Some(s) = self.scale.filter(|s| !SCALES.contains(s)) {
            return Err(bad("scale", format!("{s} is not one of 2, 3, 4, 8")));
        }
        let max_crf = if self.codec == Some(crate::video::encode::Codec::Av1) {
            63
        } else {
            51
        };
        if let Some(crf) = self.crf.filter(|&c| c > max_crf) {
            return Err(bad("crf", format!("{crf} is not 0 to {max_crf}")));
        }
        if self.denoise_level > 3 {
            return Err(bad(
                "denoiseLevel",
                format!("{} is not 0 to 3", self.denoise_level),
            ));
        }
        let mut notes = Vec::new();
        if let Some(g) = self.guide_scale {
            // Diffusion models' guidance scales run from 1 to about 20; anything far outside
            // is a client's mistake, not a setting to echo back in a note.
            if !(0.0..=MAX_GUIDE_SCALE).contains(&g) {
                return Err(bad(
                    "guideScale",
                    format!("must be a number from 0 to {MAX_GUIDE_SCALE}"),
                ));
            }
            notes.push(format!(
                "guideScale {g} is not applicable: it steers diffusion models, and these models are feed-forward"
            ));
        }
        let level = self.denoise_level;
        let mut recipe = Recipe {
            scale: self.scale,
            passes: Vec::new(),
            prefilter: None,
            detail_blend: 0.0,
            temporal: self.temporal_stability,
            notes,
        };

        if let Some(model) = &self.model {
            if self.scale == Some(8) {
                return Err(bad(
                    "model",
                    "scale 8 runs two passes of a preset's models; leave the model unset or ask for the model's own scale".into(),
                ));
            }
            // A folder in a reference tool's layout: the file for the scale and denoise level.
            let dir = std::path::Path::new(model);
            let pack = if dir.is_dir() {
                let choice =
                    crate::model_pack::choose(dir, self.scale, level, self.preserve_details)
                        .map_err(|reason| bad("model", reason))?;
                recipe.notes.push(format!(
                    "model pack {model}: {} for these settings",
                    choice.param.display()
                ));
                recipe.passes.push(choice.param.display().to_string());
                Some(choice)
            } else {
                recipe.passes.push(model.clone());
                None
            };
            recipe.notes.push(format!(
                "model {model} chosen explicitly; the quality preset does not apply"
            ));
            if level > 0 && !pack.as_ref().is_some_and(|c| c.denoises) {
                recipe.prefilter = Some(Prefilter(level));
                recipe.notes.push(format!(
                    "denoise level {level}: FFmpeg hqdn3d before the model"
                ));
            }
            if self.preserve_details && !pack.as_ref().is_some_and(|c| c.conservative) {
                recipe.detail_blend = DETAIL_BLEND;
                recipe.notes.push(blend_note());
            }
            return Ok(recipe);
        }

        let scale = self.scale.unwrap_or(DEFAULT_SCALE);
        recipe.scale = Some(scale);
        let pass_scales: &[u32] = if scale == 8 { &[2, 4] } else { &[scale] };
        if scale == 8 {
            recipe.notes.push("scale 8: two passes, 2x then 4x".into());
        }
        for (i, &s) in pass_scales.iter().enumerate() {
            let base = self.quality.base_model(s);
            // Denoise belongs to the first pass (the source's noise); later passes see clean frames.
            let wanted = if i == 0 { level } else { 0 };
            let denoised = format!("{base}-denoise{wanted}x");
            let conservative = format!("{base}-conservative");
            let model = if wanted > 0 && catalog.get(&denoised).is_some() {
                recipe.notes.push(format!(
                    "denoise level {wanted}: {denoised}, the model's own denoising variant"
                ));
                denoised
            } else {
                if wanted > 0 {
                    recipe.prefilter = Some(Prefilter(wanted));
                    recipe.notes.push(format!(
                        "denoise level {wanted}: {base} has no denoise{wanted}x variant, so FFmpeg hqdn3d runs before it"
                    ));
                }
                if self.preserve_details && catalog.get(&conservative).is_some() {
                    recipe.notes.push(format!("preserveDetails: {conservative}, the variant that keeps the source's texture"));
                    conservative
                } else {
                    base.to_string()
                }
            };
            recipe.passes.push(model);
        }
        let last = recipe.passes.last().expect("one pass at least");
        if self.preserve_details && !last.ends_with("-conservative") {
            recipe.detail_blend = DETAIL_BLEND;
            recipe.notes.push(blend_note());
        }
        Ok(recipe)
    }
}

fn blend_note() -> String {
    format!(
        "preserveDetails: {}% of a Lanczos upscale of the input blended into the result",
        (DETAIL_BLEND * 100.0).round()
    )
}

/// The preset table as Markdown, for docs/models.md and `vsr models list`.
pub fn preset_table() -> String {
    let mut out = String::from(
        "| preset | 2x | 3x | 4x | 8x (2x, then 4x) | what it is |\n|---|---|---|---|---|---|\n",
    );
    for p in Preset::ALL {
        out += &format!(
            "| {} | {} | {} | {} | {} + {} | {} |\n",
            p.name(),
            p.base_model(2),
            p.base_model(3),
            p.base_model(4),
            p.base_model(2),
            p.base_model(4),
            p.summary()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(json: &str) -> Result<Recipe, SettingsError> {
        let s: Settings = serde_json::from_str(json).unwrap();
        s.recipe(Catalog::builtin(), None)
    }

    #[test]
    fn every_preset_model_is_in_the_catalog() {
        let c = Catalog::builtin();
        for p in Preset::ALL {
            for s in [2, 3, 4] {
                let name = p.base_model(s);
                let m = c
                    .get(name)
                    .unwrap_or_else(|| panic!("{name} not in the catalog"));
                assert_eq!(m.scale as u32, s);
            }
        }
    }

    #[test]
    fn defaults_are_balanced_4x() {
        let r = recipe("{}").unwrap();
        assert_eq!(r.scale, Some(4));
        assert_eq!(r.passes, ["realcugan-se-up4x"]);
        assert_eq!((r.prefilter, r.detail_blend), (None, 0.0));
    }

    #[test]
    fn seed_example_maps_and_reports_guide_scale() {
        let r = recipe(r#"{"scale":4,"denoiseLevel":0,"preserveDetails":true,"quality":"balanced","guideScale":7.5}"#).unwrap();
        assert_eq!(r.passes, ["realcugan-se-up4x-conservative"]);
        assert_eq!(r.detail_blend, 0.0);
        assert!(r
            .notes
            .iter()
            .any(|n| n.contains("guideScale 7.5 is not applicable")));
        // A value no diffusion model would take is refused, not echoed back.
        for bad in ["-1e300", "101", "-0.5"] {
            let e = recipe(&format!(r#"{{"guideScale":{bad}}}"#)).unwrap_err();
            assert_eq!(e.field, "guideScale", "{bad}");
        }
    }

    #[test]
    fn denoise_uses_a_variant_when_there_is_one_else_a_prefilter() {
        let r = recipe(r#"{"scale":2,"denoiseLevel":2}"#).unwrap();
        assert_eq!(r.passes, ["realcugan-se-up2x-denoise2x"]);
        assert_eq!(r.prefilter, None);
        let r = recipe(r#"{"scale":4,"denoiseLevel":2}"#).unwrap();
        assert_eq!(r.passes, ["realcugan-se-up4x"]);
        assert_eq!(r.prefilter, Some(Prefilter(2)));
        assert_eq!(r.prefilter.unwrap().ffmpeg_filter(), "hqdn3d=4:3:6:4.5");
        let r = recipe(r#"{"scale":3,"quality":"fast","denoiseLevel":1,"preserveDetails":true}"#)
            .unwrap();
        assert_eq!(r.passes, ["realesr-animevideov3-x3"]);
        assert_eq!(r.prefilter, Some(Prefilter(1)));
        assert_eq!(r.detail_blend, DETAIL_BLEND);
    }

    #[test]
    fn scale_8_is_two_passes_denoising_first() {
        let r = recipe(r#"{"scale":8,"quality":"quality","denoiseLevel":3}"#).unwrap();
        assert_eq!(
            r.passes,
            ["realcugan-pro-up2x-denoise3x", "realesrgan-x4plus"]
        );
        let r = recipe(r#"{"scale":8,"quality":"fast"}"#).unwrap();
        assert_eq!(
            r.passes,
            ["realesr-animevideov3-x2", "realesr-animevideov3-x4"]
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (json, field) in [
            (r#"{"scale":5}"#, "scale"),
            (r#"{"denoiseLevel":4}"#, "denoiseLevel"),
            (r#"{"scale":8,"model":"realesr-animevideov3-x2"}"#, "model"),
        ] {
            assert_eq!(recipe(json).unwrap_err().field, field, "{json}");
        }
        assert!(serde_json::from_str::<Settings>(r#"{"quality":"best"}"#).is_err());
    }

    #[test]
    fn docs_show_the_current_table() {
        let docs = include_str!("../../../docs/models.md");
        assert!(
            docs.contains(&preset_table()),
            "docs/models.md is out of date; paste this table:\n{}",
            preset_table()
        );
    }
}
