//! Model folders as the reference tools ship them, so `--model` can take the folder itself:
//! realcugan-ncnn-vulkan's `models-se/` and `models-pro/` (`up2x-conservative.param`,
//! `up3x-denoise3x.param`, ...), waifu2x-ncnn-vulkan's `models-cunet/` and
//! `models-upconv_7_*/` (`noise1_scale2.0x_model.param`, `scale2.0x_model.param`,
//! `noise2_model.param`), and Real-ESRGAN-ncnn-vulkan's `models/`
//! (`realesr-animevideov3-x2.param`, `realesrgan-x4plus.param`). The file for a scale and a
//! denoise level is chosen as those tools choose it; the conventions then come from the file
//! (recognised by content, or inferred).

use std::path::{Path, PathBuf};

/// What a folder's file names say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `upNx-VARIANT.param`
    RealCugan,
    /// `noiseN_scale2.0x_model.param`, `scale2.0x_model.param`, `noiseN_model.param`
    Waifu2x,
    /// `NAME-xN.param` and `realesrgan-x4plus*.param`
    RealEsrgan,
}

/// The file a pack holds for some settings, and which of them its choice already covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub param: PathBuf,
    /// The file is a denoising variant (Real-CUGAN, waifu2x): no pre-filter is needed.
    pub denoises: bool,
    /// The file is Real-CUGAN's conservative variant: no detail blend is needed.
    pub conservative: bool,
}

/// The file in pack `dir` for `scale` (the layout's default when `None`), `denoise` (0 to 3)
/// and `conservative` (keep detail: Real-CUGAN's conservative variant), or why there is none.
pub fn choose(
    dir: &Path,
    scale: Option<u32>,
    denoise: u8,
    conservative: bool,
) -> Result<Choice, String> {
    let names = param_stems(dir);
    let layout = layout_of(&names).ok_or_else(|| {
        format!(
            "{} holds no model files named as realcugan-, waifu2x- or realesrgan-ncnn-vulkan name them",
            dir.display()
        )
    })?;
    let wanted: Vec<String> = match layout {
        Layout::RealCugan => {
            let s = scale.unwrap_or(2);
            let variant = match (conservative, denoise) {
                (true, _) => "conservative".to_string(),
                (false, 0) => "no-denoise".to_string(),
                (false, n) => format!("denoise{n}x"),
            };
            vec![format!("up{s}x-{variant}")]
        }
        Layout::Waifu2x => match (scale.unwrap_or(2), denoise) {
            (1, n) => vec![format!("noise{n}_model")],
            // Denoise off: the plain model where the pack has one, else the lightest denoise.
            (2, 0) => vec!["scale2.0x_model".into(), "noise0_scale2.0x_model".into()],
            (2, n) => vec![format!("noise{n}_scale2.0x_model")],
            (s, _) => return Err(format!("waifu2x packs upscale 1x or 2x, not {s}x")),
        },
        Layout::RealEsrgan => {
            let s = scale.unwrap_or(4);
            let mut v = vec![format!("realesr-animevideov3-x{s}")];
            if s == 4 {
                v.push("realesrgan-x4plus".into());
            }
            v
        }
    };
    wanted
        .iter()
        .find(|w| names.contains(w))
        .map(|w| Choice {
            param: dir.join(format!("{w}.param")),
            denoises: layout != Layout::RealEsrgan,
            conservative: layout == Layout::RealCugan && conservative,
        })
        .ok_or_else(|| {
            format!(
                "{} has no {} for scale {} and denoise level {denoise} (it has: {})",
                dir.display(),
                wanted.join(" or "),
                scale.map_or("default".into(), |s| s.to_string()),
                names.join(", ")
            )
        })
}

/// Stems of the `.param` files in `dir` that have their `.bin` beside them, sorted.
pub(crate) fn param_stems(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".param")?.to_string();
            dir.join(format!("{stem}.bin")).is_file().then_some(stem)
        })
        .collect();
    names.sort();
    names
}

fn layout_of(names: &[String]) -> Option<Layout> {
    let any = |f: &dyn Fn(&str) -> bool| names.iter().any(|n| f(n));
    if any(&|n| n.starts_with("up") && n.contains("x-")) {
        Some(Layout::RealCugan)
    } else if any(&|n| n.ends_with("_model")) {
        Some(Layout::Waifu2x)
    } else if any(&|n| n.starts_with("realesr")) {
        Some(Layout::RealEsrgan)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for n in names {
            for ext in ["param", "bin"] {
                std::fs::write(dir.path().join(format!("{n}.{ext}")), b"x").unwrap();
            }
        }
        dir
    }

    fn chosen(dir: &Path, scale: Option<u32>, denoise: u8, conservative: bool) -> String {
        let c = choose(dir, scale, denoise, conservative).unwrap();
        c.param.file_stem().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn each_layout_picks_as_its_tool_does() {
        let cugan = pack(&[
            "up2x-conservative",
            "up2x-no-denoise",
            "up2x-denoise1x",
            "up2x-denoise2x",
            "up2x-denoise3x",
            "up3x-conservative",
            "up3x-no-denoise",
            "up3x-denoise3x",
            "up4x-conservative",
            "up4x-no-denoise",
            "up4x-denoise3x",
        ]);
        let d = cugan.path();
        assert_eq!(chosen(d, None, 0, false), "up2x-no-denoise");
        assert_eq!(chosen(d, Some(2), 0, true), "up2x-conservative");
        assert_eq!(chosen(d, Some(2), 2, false), "up2x-denoise2x");
        assert_eq!(chosen(d, Some(3), 3, false), "up3x-denoise3x");
        assert_eq!(chosen(d, Some(4), 0, false), "up4x-no-denoise");
        let err = choose(d, Some(3), 1, false).unwrap_err();
        assert!(
            err.contains("up3x-denoise1x") && err.contains("up3x-no-denoise"),
            "{err}"
        );

        let waifu = pack(&[
            "noise0_scale2.0x_model",
            "noise1_scale2.0x_model",
            "noise2_scale2.0x_model",
            "noise3_scale2.0x_model",
            "scale2.0x_model",
            "noise0_model",
            "noise3_model",
        ]);
        let d = waifu.path();
        assert_eq!(chosen(d, None, 0, false), "scale2.0x_model");
        assert_eq!(chosen(d, Some(2), 1, false), "noise1_scale2.0x_model");
        assert_eq!(chosen(d, Some(1), 3, false), "noise3_model");
        assert!(choose(d, Some(4), 0, false).is_err());
        let cunet = pack(&["noise0_scale2.0x_model", "noise2_scale2.0x_model"]);
        assert_eq!(
            chosen(cunet.path(), Some(2), 0, false),
            "noise0_scale2.0x_model"
        );

        let esrgan = pack(&[
            "realesr-animevideov3-x2",
            "realesr-animevideov3-x3",
            "realesr-animevideov3-x4",
            "realesrgan-x4plus",
            "realesrgan-x4plus-anime",
        ]);
        let d = esrgan.path();
        assert_eq!(chosen(d, None, 0, false), "realesr-animevideov3-x4");
        assert_eq!(chosen(d, Some(3), 0, false), "realesr-animevideov3-x3");
        let only_plus = pack(&["realesrgan-x4plus"]);
        assert_eq!(
            chosen(only_plus.path(), Some(4), 0, false),
            "realesrgan-x4plus"
        );

        let empty = pack(&["something-else"]);
        assert!(choose(empty.path(), Some(2), 0, false).is_err());
    }
}
