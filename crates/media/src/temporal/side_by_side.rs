//! The stabiliser shown at work: a few consecutive frames through the models, each as drawn
//! and as stabilised, so that a user can see the shimmer it takes away before running a whole
//! video (the web page's preview).
//!
//! Only a window of each frame is upscaled: shimmer shows at full size, and a window keeps a
//! preview of several 1080p frames at 4x on the CPU to seconds. The window is upscaled with a
//! margin of source around it, cut off afterwards, so that the models see the same
//! neighbourhood as in the whole frame and the window's edges are not drawn as borders.
//!
//! How much each flickers is measured as the quality benchmark's flicker residual is, without
//! its optical flow: the change from the previous frame less the change the source shows.

use vsr_runtime::{RunError, Tensor};

use super::Stabiliser;
use crate::enhance::Enhancer;
use crate::resample::lanczos3;

/// Source pixels upscaled around the window on each side (where the frame has them).
const MARGIN: usize = 16;

/// A rectangle of the source frame, in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Window {
    /// The window centred in a `width x height` source whose upscale by `scale` fits in
    /// `max_out` output pixels (the whole frame when that fits).
    pub fn centred(width: usize, height: usize, scale: usize, max_out: (usize, usize)) -> Window {
        let scale = scale.max(1);
        let w = width.min((max_out.0 / scale).max(1));
        let h = height.min((max_out.1 / scale).max(1));
        Window {
            x: (width - w) / 2,
            y: (height - h) / 2,
            width: w,
            height: h,
        }
    }
}

/// One frame of the window, as the models drew it and as the stabiliser left it, and the
/// source's Lanczos upscale (what the source itself shows, to tell flicker from motion).
pub struct Pair {
    pub without: Tensor,
    pub with: Tensor,
    pub classic: Tensor,
}

/// Upscales `window` of each of `frames` (consecutive, in order) with `enhancer`, and
/// stabilises the upscales with `stabiliser` as the video pipeline would from the first of
/// them (which therefore comes out untouched: it has no history).
pub fn consecutive(
    enhancer: &Enhancer,
    mut stabiliser: Stabiliser,
    frames: &[Tensor],
    window: Window,
) -> Result<Vec<Pair>, RunError> {
    let scale = enhancer.scale();
    let mut pairs = Vec::with_capacity(frames.len());
    for frame in frames {
        let x0 = window.x.saturating_sub(MARGIN);
        let y0 = window.y.saturating_sub(MARGIN);
        let x1 = (window.x + window.width + MARGIN).min(frame.w);
        let y1 = (window.y + window.height + MARGIN).min(frame.h);
        let mut source = Tensor::zeros(y1 - y0, x1 - x0, frame.c);
        source.copy_region((0, 0), frame, (y0, x0), y1 - y0, x1 - x0);
        let drawn = enhancer.process(&source)?;
        let cut = |t: &Tensor| {
            let mut out = Tensor::zeros(window.height * scale, window.width * scale, t.c);
            let from = ((window.y - y0) * scale, (window.x - x0) * scale);
            out.copy_region((0, 0), t, from, out.h, out.w);
            out
        };
        let classic = cut(&lanczos3(&source, drawn.w, drawn.h));
        let without = cut(&drawn);
        let with = cut(&enhancer.install(|| stabiliser.apply(&source, drawn)));
        pairs.push(Pair {
            without,
            with,
            classic,
        });
    }
    Ok(pairs)
}

/// How much of the window changed from the previous frame in a way the source did not, in
/// levels of 255 (mean absolute difference of the two frames' changes, the source's from its
/// Lanczos upscale): flicker. `pick` chooses the frame of each pair, `without` or `with`.
pub fn flicker(previous: &Pair, current: &Pair, pick: impl Fn(&Pair) -> &Tensor) -> f64 {
    let (a, b) = (pick(previous), pick(current));
    let sum: f64 = a
        .data
        .iter()
        .zip(&b.data)
        .zip(previous.classic.data.iter().zip(&current.classic.data))
        .map(|((a, b), (ca, cb))| f64::from(((b - a) - (cb - ca)).abs()))
        .sum();
    255.0 * sum / a.data.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_centred_and_fits() {
        assert_eq!(
            Window::centred(1920, 1080, 4, (512, 288)),
            Window {
                x: 896,
                y: 504,
                width: 128,
                height: 72
            }
        );
        // A frame that fits is taken whole.
        assert_eq!(
            Window::centred(160, 90, 2, (512, 288)),
            Window {
                x: 0,
                y: 0,
                width: 160,
                height: 90
            }
        );
    }

    #[test]
    fn flicker_is_change_the_source_does_not_show() {
        let level = |v: f32| {
            let mut t = Tensor::zeros(2, 2, 3);
            t.data.fill(v / 255.0);
            t
        };
        let pair = |out: f32, source: f32| Pair {
            without: level(out),
            with: level(out),
            classic: level(source),
        };
        // The output brightens by 2 levels as the source does: no flicker.
        assert!(flicker(&pair(10.0, 10.0), &pair(12.0, 12.0), |p| &p.with) < 1e-4);
        // The output brightens by 2 levels over a still source: 2 levels of flicker.
        let f = flicker(&pair(10.0, 10.0), &pair(12.0, 10.0), |p| &p.without);
        assert!((f - 2.0).abs() < 1e-4, "{f}");
    }
}
